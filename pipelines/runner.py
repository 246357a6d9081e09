"""The three steps of ``binds run``, as plain functions (the Prefect flow only orders them).

``prepare`` validates everything that can be checked before compute (metadata, raw files)
and writes ``_meta/``; ``stage`` runs the Snakemake workflow; ``publish_stage`` publishes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipelines import modalities
from pipelines.errors import InputError, Problem
from pipelines.metadata import EXPERIMENT_FILE, Experiment, load_experiment, write_experiment_json
from pipelines.resources import project_root
from pipelines.staging import StagedDataset
from pipelines.store import open_store
from pipelines.store.hashing import sha256_file
from pipelines.store.publish import PublishResult, publish
from pipelines.workflow import run_workflow

log = logging.getLogger(__name__)

#: Set by the CLI to show progress (a terminal spinner); called with a short status line.
#: A module-level hook rather than a flow parameter: Prefect records parameters as JSON.
progress_hook: Callable[[str], None] | None = None


def _say(text: str) -> None:
    if progress_hook:
        progress_hook(text)


def default_work_dir(dataset_id: str) -> Path:
    """``$BINDS_WORK_DIR/<dataset_id>``, else ``./.binds-work/<dataset_id>``: on the same
    (shared) filesystem as the current directory, as Slurm jobs need."""
    base = Path(os.environ.get("BINDS_WORK_DIR", ".binds-work"))
    return (base / dataset_id).resolve()


def check_run_dir(run_dir: str | Path) -> tuple[Experiment, list[Path]]:
    """Validate experiment.yaml and the raw files; every problem at once. Nothing is written."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(Problem("no such run folder", file=str(run_dir),
                                 hint="give the folder holding the raw files and experiment.yaml"))
    exp = load_experiment(run_dir)
    module = modalities.get(exp.modality)
    raw = modalities.find_raw_files(run_dir, exp.modality)
    problems: list[Problem] = []
    if not raw:
        problems.append(Problem(
            f"no {exp.modality} raw files found", file=str(run_dir),
            hint=f"expected files matching {', '.join(module.RAW_PATTERNS)}"))
    else:
        problems += module.preflight(run_dir, exp.data)
    if problems:
        raise InputError(problems)
    return exp, raw


def _git_describe() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(project_root()), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def prepare(run_dir: str | Path, *, work_dir: str | Path | None = None) -> tuple[Experiment, StagedDataset]:
    """Validate the run folder and write ``<work>/stage/_meta/{experiment,run}.json``."""
    run_dir = Path(run_dir).resolve()
    _say(f"validating {run_dir.name}")
    exp, raw = check_run_dir(run_dir)
    work = Path(work_dir).resolve() if work_dir else default_work_dir(exp.dataset_id)
    stage = StagedDataset(work / "stage")
    write_experiment_json(exp, stage.meta_dir / "experiment.json")
    with ThreadPoolExecutor(max_workers=4) as pool:
        hashes = list(pool.map(sha256_file, raw))
    from importlib.metadata import version

    stage.write_meta("run.json", {
        "run_dir": str(run_dir),
        "modality": exp.modality,
        "dataset_id": exp.dataset_id,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "workflow": f"binds-pipelines {version('binds-pipelines')}"
                    + (f" ({g})" if (g := _git_describe()) else ""),
        "inputs": [{"name": p.relative_to(run_dir).as_posix(), "size": p.stat().st_size, "sha256": h}
                   for p, h in zip(raw, hashes)] + [
            {"name": EXPERIMENT_FILE, "size": exp.path.stat().st_size, "sha256": sha256_file(exp.path)}],
    })
    return exp, stage


def stage(run_dir: str | Path, stage: StagedDataset, *, modality: str, profile: str = "local",
          cores: int | None = None, on_progress: Callable[[int, int], None] | None = None) -> StagedDataset:
    """Run the modality's Snakemake workflow into ``stage``."""
    def steps(done: int, total: int) -> None:
        _say(f"snakemake: {done} of {total} steps done")
        if on_progress:
            on_progress(done, total)

    _say("snakemake: starting the workflow")
    run_workflow(run_dir=run_dir, stage=stage, modality=modality, profile=profile, cores=cores,
                 on_progress=steps)
    info = stage.run_info
    info["staged"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stage.write_meta("run.json", info)
    return stage


def publish_stage(stage_dir: str | Path, store_url: str | None, *,
                  progress: Callable[[int, int], None] | None = None) -> PublishResult:
    def uploaded(done: int, total: int) -> None:
        _say(f"publishing: {done / 2**20:,.1f} of {total / 2**20:,.1f} MiB uploaded")
        if progress:
            progress(done, total)

    _say("publishing: hashing the staged files")
    return publish(StagedDataset(Path(stage_dir)), open_store(store_url), progress=uploaded)
