"""The committed Slurm profile runs a real workflow through a real (single-node) Slurm.

Under CI, `make test` starts Slurm with ../shared/tools/slurm/ci_slurm_up.sh (root, Debian);
elsewhere the test skips unless a Slurm cluster answers ``sinfo``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.modalities import get as get_modality
from pipelines.resources import profiles_dir


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and any(s.strip() in ("idle", "mix", "alloc") for s in out.stdout.split())


@pytest.fixture(scope="module")
def slurm():
    if not _slurm_up():
        msg = "no Slurm cluster answers sinfo (start one: WITH_DBD=0 bash ../shared/tools/slurm/ci_slurm_up.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def test_slurm_profile_runs_every_rule_as_a_slurm_job(slurm, tmp_path):
    profile = yaml.safe_load((profiles_dir() / "slurm" / "config.yaml").read_text())
    # test cluster only: no accounting daemon (squeue instead of sacct), no accounts, quick first check
    profile.update({"slurm-status-command": "squeue", "slurm-no-account": True,
                    "slurm-init-seconds-before-status-checks": 1, "latency-wait": 5})
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    run_dir = tmp_path / "run"
    get_modality("screening").make_demo_run(run_dir)
    work = tmp_path / "work"
    out = CliRunner().invoke(app, ["run", str(run_dir), "--profile", str(tmp_path / "profile"),
                                   "--store", str(tmp_path / "store"), "--work-dir", str(work), "--json"],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["created"] and result["version"] == 1
    log = (work / "stage" / "_meta" / "snakemake.log").read_text()
    submitted = [ln for ln in log.splitlines() if "submitted with SLURM jobid" in ln]
    assert len(submitted) >= 3, log[-2000:]
    # every Slurm job id reached the monitoring (the Prefect task run of its rule carries it)
    events = [json.loads(ln) for ln in (work / "stage" / "_meta" / "snakemake-events.jsonl").read_text().splitlines()]
    ids = {e["jobid"]: e["external_jobid"] for e in events if e["event"] == "external_jobid"}
    rules = {e["jobid"]: e["rule"] for e in events if e["event"] == "job_info"}
    assert len(ids) == len(submitted) and all(j in rules for j in ids)
    # squeue/sacct tell rules apart: the job comment names the rule (while slurmctld knows the job)
    jobid, slurm_id = next(iter(ids.items()))
    shown = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True, timeout=20)
    if shown.returncode == 0:
        assert f"Comment=rule_{rules[jobid]}" in shown.stdout, shown.stdout
        assert "JobName=binds_" in shown.stdout
