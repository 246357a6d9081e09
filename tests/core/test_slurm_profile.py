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
from pipelines.resources import profiles_dir


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and any(
        s.strip() in ("idle", "mix", "alloc") for s in out.stdout.split()
    )


@pytest.fixture(scope="module")
def slurm():
    if not _slurm_up():
        msg = "no Slurm cluster answers sinfo (start one: WITH_DBD=0 bash ../shared/tools/slurm/ci_slurm_up.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def _accounting_up() -> bool:
    if not shutil.which("sacct"):
        return False
    try:
        out = subprocess.run(
            ["sacct", "-n", "-X", "--starttime", "now"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "disabled" not in (out.stdout + out.stderr).lower()


@pytest.fixture(scope="module")
def slurm_accounting(slurm):
    if not _accounting_up():
        msg = (
            "Slurm answers but sacct does not (start it with accounting: "
            "WITH_DBD=1 bash ../shared/tools/slurm/ci_slurm_up.sh)"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def slurm_run(slurm_accounting, cryoem_version, tmp_path_factory):
    """One `binds run --profile <the committed Slurm profile>` of the cryo-EM demo run folder
    (the same folder as the local ``cryoem_version``), shared by the tests below: a Slurm run
    is mostly waiting for the executor's status checks (~1 min), so it is made once."""
    tmp = tmp_path_factory.mktemp("slurm-run")
    profile = yaml.safe_load((profiles_dir() / "slurm" / "config.yaml").read_text())
    # the test cluster has accounting (sacct, the plugin's default status command) but no
    # accounts; a quick first status check
    profile.update(
        {"slurm-no-account": True, "slurm-init-seconds-before-status-checks": 1, "latency-wait": 5}
    )
    (tmp / "profile").mkdir()
    (tmp / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    from pipelines.modalities.cryoem import make_demo_run

    run_dir = make_demo_run(tmp / "run", seed=0)  # the same run folder as the local one
    work = tmp / "work"
    out = CliRunner().invoke(
        app,
        [
            "run",
            str(run_dir),
            "--profile",
            str(tmp / "profile"),
            "--store",
            str(tmp / "store"),
            "--work-dir",
            str(work),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout), tmp / "store", work


def test_slurm_profile_runs_every_rule_as_a_slurm_job(slurm_run):
    result, _store, work = slurm_run
    assert result["created"] and result["version"] == 1
    log = (work / "stage" / "_meta" / "snakemake.log").read_text()
    submitted = [ln for ln in log.splitlines() if "submitted with SLURM jobid" in ln]
    assert len(submitted) >= 3, log[-2000:]
    # every Slurm job id reached the monitoring (the Prefect task run of its rule carries it)
    events = [
        json.loads(ln)
        for ln in (work / "stage" / "_meta" / "snakemake-events.jsonl").read_text().splitlines()
    ]
    ids = {e["jobid"]: e["external_jobid"] for e in events if e["event"] == "external_jobid"}
    rules = {e["jobid"]: e["rule"] for e in events if e["event"] == "job_info"}
    assert len(ids) == len(submitted) and all(j in rules for j in ids)
    # squeue/sacct tell rules apart: the job comment names the rule (while slurmctld knows the job)
    jobid, slurm_id = next(iter(ids.items()))
    shown = subprocess.run(
        ["scontrol", "show", "job", slurm_id], capture_output=True, text=True, timeout=20
    )
    if shown.returncode == 0:
        assert f"Comment=rule_{rules[jobid]}" in shown.stdout, shown.stdout
        assert "JobName=binds_" in shown.stdout


def _sacct_figures(job_id: str) -> tuple[float, float]:
    """(CPUTimeRAW, TotalCPU seconds) of the allocation, read here independently of binds
    (without -X: with it sacct leaves out the steps, and TotalCPU reads 0)."""
    from pipelines.describe.usage import parse_duration_s

    out = subprocess.run(
        ["sacct", "-n", "-P", "-j", job_id, "--format=JobID,CPUTimeRAW,TotalCPU"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    row = next(ln.split("|") for ln in out.splitlines() if ln.split("|")[0] == job_id)
    return float(row[1]), parse_duration_s(row[2])


def test_slurm_usage_record_agrees_with_sacct_and_content_with_the_local_run(
    slurm_run, cryoem_version
):
    from pipelines.describe.usage import USAGE_PATH

    result, store, _work = slurm_run
    _local_version, local_manifest, *_ = cryoem_version
    assert result["content_digest"] == local_manifest["content_digest"]
    usage = json.loads(
        (store / result["prefix"] / f"v{result['version']}" / USAGE_PATH).read_text()
    )
    assert usage["executor"] == "slurm" and usage["notes"] == []
    assert len(usage["jobs"]) == 5
    for job in usage["jobs"]:
        assert job["source"] == "sacct" and len(job["slurm"]) == 1, job
        cpu_time_raw, total_cpu = _sacct_figures(job["slurm"][0]["job_id"])
        assert job["core_s"] == pytest.approx(cpu_time_raw, rel=0.02)
        assert job["cpu_s"] == pytest.approx(total_cpu, rel=0.02, abs=0.01)
        assert job["slurm"][0]["alloc_cpus"] == job["threads"]
        # the rule's own processes are part of the job (Snakemake's start-up in the job is not in them)
        assert job["benchmark"]["wall_s"] <= job["wall_s"] + 1
    assert usage["totals"]["core_hours"] == pytest.approx(
        sum(_sacct_figures(j["slurm"][0]["job_id"])[0] for j in usage["jobs"]) / 3600, rel=0.02
    )
