"""On the local profile each job runs under its mem_mb: a job over it stops at once with one
line naming the rule and its limit (exit 1), instead of taking the machine's memory.

On main the local executor did not enforce mem_mb at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.run.workflow import RunningWorkflow, snakemake_command
from pipelines.toolkit.stage import StagedDataset

SCRIPT = """
import sys, time
from types import SimpleNamespace
import numpy as np
from pipelines.toolkit.smk import run_step

stage, mem_mb, want_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
smk = SimpleNamespace(
    rule="hungry_rule", log=[stage + "/hungry.log"], input=[], output=[stage + "/out.bin"],
    config={"stage_dir": stage, "run_dir": stage, "enforce_mem_mb": True},
    resources=SimpleNamespace(mem_mb=mem_mb),
)

def eat():
    blocks = []
    for _ in range(want_mb // 16):
        blocks.append(np.ones(2**21))  # 16 MiB, touched
        time.sleep(0.005)
    return len(blocks)

run_step(smk, eat)
print("finished")
"""


def _run(tmp_path: Path, mem_mb: int, want_mb: int) -> subprocess.CompletedProcess:
    stage = tmp_path / "stage"
    stage.mkdir()
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(stage), str(mem_mb), str(want_mb)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_job_over_its_mem_mb_stops_with_one_line(tmp_path):
    t0 = time.monotonic()
    done = _run(tmp_path, mem_mb=300, want_mb=2000)
    assert done.returncode == 1 and "finished" not in done.stdout
    assert time.monotonic() - t0 < 60
    stage = tmp_path / "stage"
    (record,) = [json.loads(p.read_text()) for p in (stage / "_meta" / "errors").glob("*.json")]
    assert record["exception"] == "MemoryLimitExceeded"
    wf = RunningWorkflow.__new__(RunningWorkflow)
    wf.stage, wf.smk_log, wf.rule_logs = StagedDataset(stage), tmp_path / "smk.log", []
    err = wf._failure(1)
    assert str(err) == (
        "rule hungry_rule failed: MemoryLimitExceeded: went over its memory limit of 300 MB (mem_mb)"
    )


def test_a_job_within_its_mem_mb_finishes(tmp_path):
    done = _run(tmp_path, mem_mb=1500, want_mb=160)
    assert done.returncode == 0 and "finished" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize(("profile", "enforced"), [("local", True), ("slurm", False)])
def test_only_the_local_profile_asks_for_enforcement(tmp_path, profile, enforced):
    cmd = snakemake_command(
        run_dir=tmp_path,
        stage=StagedDataset(tmp_path / "stage"),
        modality="screening",
        profile=profile,
    )
    assert f"enforce_mem_mb={enforced}" in cmd


@pytest.mark.slow
def test_a_real_snakemake_job_over_its_mem_mb_fails_with_one_line(tmp_path):
    """The local profile, a real metabolomics run, the conversion given 60 MB: it stops, the
    run fails with one line naming the rule and its limit, and nothing is staged as data."""
    import os

    from binds_testing import minimal_yaml

    from pipelines.describe.metadata import load_experiment, write_experiment_json
    from pipelines.errors import RunError
    from pipelines.run.workflow import run_workflow
    from tests.conftest import shared_data

    run = tmp_path / "run"
    run.mkdir()
    os.symlink(shared_data("metabolomics") / "example.mzML", run / "QC_01.mzML")
    (run / "experiment.yaml").write_text(minimal_yaml("metabolomics"))
    stage = StagedDataset(tmp_path / "work" / "stage")
    write_experiment_json(load_experiment(run), stage.meta_dir / "experiment.json")
    with pytest.raises(RunError) as info:
        run_workflow(
            run_dir=run,
            stage=stage,
            modality="metabolomics",
            cores=1,
            extra_args=["--set-resources", "metabolomics_convert:mem_mb=60"],
        )
    assert str(info.value) == (
        "rule metabolomics_convert failed: MemoryLimitExceeded: "
        "went over its memory limit of 60 MB (mem_mb)"
    )
    assert not [p for p in (stage.root / "data").rglob("*") if p.is_file()]
