"""Helpers shared by the tests of every modality (importable: tests/ is on sys.path)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pipelines.describe.metadata import load_experiment, write_experiment_json
from pipelines.run.workflow import run_workflow
from pipelines.toolkit.stage import StagedDataset


def minimal_yaml(
    modality: str,
    *,
    title: str = "Test run",
    manufacturer: str = "Test",
    model: str = "Test instrument",
    request_id: str = "BINDS-2026-0042",
    block: str = "",
) -> str:
    """The minimal experiment.yaml of DESIGN.md for ``modality``, plus an optional YAML block."""
    return (
        "schema_version: 1\n"
        f"request_id: {request_id}\n"
        f"title: {title}\n"
        f"modality: {modality}\n"
        f"instrument: {{manufacturer: {manufacturer}, model: {model}}}\n"
        "acquired: 2026-11-20\n"
        "access: {level: consortium}\n"
        "license: CC-BY-4.0\n"
        "samples:\n"
        "  - id: S1\n"
        "    organism: NCBITaxon:9606\n" + block
    )


def link_files(run_dir: Path, files: Iterable[Path], *, into: str = "") -> None:
    """Symlink real files into a run folder: read in place, never copied into the repository."""
    dest = run_dir / into
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        os.symlink(f, dest / f.name)


def run_stage(run_dir: Path, work: Path, *, cores: int = 2) -> StagedDataset:
    """Validate experiment.yaml and run the real workflow (Snakemake, local profile) into ``work/stage``."""
    exp = load_experiment(run_dir)
    stage = StagedDataset(work / "stage")
    write_experiment_json(exp, stage.meta_dir / "experiment.json")
    run_workflow(run_dir=run_dir, stage=stage, modality=exp.modality, cores=cores)
    return stage


def kill_when(
    proc: subprocess.Popen,
    ready: Callable[[], bool],
    *,
    timeout_s: float = 120,
    poll_s: float = 0.005,
    group: bool = False,
) -> bool:
    """SIGKILL ``proc`` (its whole process group with ``group``: started with
    ``start_new_session``) as soon as ``ready()`` holds; False if it exited first or
    ``timeout_s`` passed (then it is killed all the same).  Tests that call it kill real
    processes in a loop (a minute or more): tests/conftest.py marks them ``kills``, outside
    ``make test-fast``."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(poll_s)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return False
