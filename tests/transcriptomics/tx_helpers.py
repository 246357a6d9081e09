"""Helpers of the transcriptomics tests (a module with a unique name, importable from test files).

Real files from ``../shared/data/transcriptomics`` are linked (not copied) into run folders made
under ``tmp_path``, next to an ``experiment.yaml`` written here.  Workflow runs are expensive
(a Python process per rule), so each scenario runs once per session and several tests read it.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from pipelines.metadata import load_experiment, write_experiment_json
from pipelines.staging import StagedDataset
from pipelines.workflow import run_workflow

BASE_EXPERIMENT = {
    "schema_version": 1,
    "request_id": "BINDS-2026-0105",
    "title": "Transcriptomics test run",
    "modality": "transcriptomics",
    "instrument": {"manufacturer": "10x Genomics", "model": "Chromium X"},
    "acquired": "2026-11-20",
    "access": {"level": "consortium"},
    "license": "CC-BY-4.0",
    "samples": [{"id": "S1", "organism": "NCBITaxon:9606"}],
}


def write_experiment(run_dir: Path, *, samples: list[dict] | None = None, block: dict | None = None,
                     **extra) -> Path:
    data = {**BASE_EXPERIMENT, **extra}
    if samples is not None:
        data["samples"] = samples
    if block is not None:
        data["transcriptomics"] = block
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return run_dir


def link_files(run_dir: Path, files: list[Path], *, into: str = "") -> None:
    """Symlink real files into a run folder: read in place, never copied into the repo."""
    dest = run_dir / into
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        os.symlink(f, dest / f.name)


def run(run_dir: Path, work: Path) -> StagedDataset:
    """Validate experiment.yaml and run the real Snakemake workflow into ``work/stage``."""
    exp = load_experiment(run_dir)
    stage = StagedDataset(work / "stage")
    write_experiment_json(exp, stage.meta_dir / "experiment.json")
    run_workflow(run_dir=run_dir, stage=stage, modality=exp.modality, cores=2)
    return stage


