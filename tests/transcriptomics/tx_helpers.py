"""Helpers of the transcriptomics tests (a module with a unique name, importable from test files).

Real files from ``../shared/data/transcriptomics`` are linked (not copied) into run folders made
under ``tmp_path``, next to an ``experiment.yaml`` written here.  Workflow runs are expensive
(a Python process per rule), so each scenario runs once per session and several tests read it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from binds_testing import link_files  # noqa: F401 - re-exported for the transcriptomics tests
from binds_testing import run_stage as run  # noqa: F401

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


def write_experiment(
    run_dir: Path, *, samples: list[dict] | None = None, block: dict | None = None, **extra
) -> Path:
    data = {**BASE_EXPERIMENT, **extra}
    if samples is not None:
        data["samples"] = samples
    if block is not None:
        data["transcriptomics"] = block
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return run_dir
