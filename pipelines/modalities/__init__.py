"""One module per modality: plain, typed processing functions (no Snakemake, Prefect or boto3).

Each ``pipelines.modalities.<name>`` module provides, besides its processing functions:

``DESCRIPTION: str``
    One line for ``binds init`` and the docs.
``RAW_PATTERNS: tuple[str, ...]``
    Glob patterns (relative to the run folder, ``**`` allowed) that find its raw files, so a
    run folder with only the required metadata still processes.
``preflight(run_dir: Path, experiment: dict) -> list[Problem]``
    Cheap checks of the raw files (headers, sizes, file lists) run by ``binds validate`` and
    before any compute in ``binds run``.  Returns every problem found; raises nothing.
``make_demo_run(run_dir: Path, *, seed: int = 0) -> Path``
    Writes a realistic synthetic run folder (raw files + experiment.yaml) for ``binds demo``.

Its Snakemake rules live in ``workflows/<name>/main.smk`` and end in ``<stage>/qc/metrics.json``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from pipelines.errors import InputError, Problem

# Defined here, not in pipelines.metadata: every Snakemake job imports this package, and the
# metadata module pulls in jsonschema and yaml (~0.3 s of CPU per job).
MODALITIES = ("cryoem", "metabolomics", "transcriptomics", "screening")


def get(name: str) -> ModuleType:
    """The module of modality ``name``."""
    if name not in MODALITIES:
        raise InputError(Problem(f"unknown modality {name!r}", where="modality",
                                 hint=f"one of {', '.join(MODALITIES)}"))
    return importlib.import_module(f"pipelines.modalities.{name}")


def find_raw_files(run_dir: str | Path, modality: str) -> list[Path]:
    """Raw instrument files of ``modality`` in ``run_dir``, sorted, without hidden folders."""
    run_dir = Path(run_dir)
    found: set[Path] = set()
    for pattern in get(modality).RAW_PATTERNS:
        for p in run_dir.glob(pattern):
            rel = p.relative_to(run_dir)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                found.add(p)
    return sorted(found)
