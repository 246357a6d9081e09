"""Plain helpers of the cryo-EM tests (a module with a unique name: test folders share sys.path)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mrcfile
import numpy as np

from pipelines.metadata import load_experiment, write_experiment_json
from pipelines.staging import StagedDataset
from pipelines.workflow import run_workflow

MINIMAL_YAML = """\
schema_version: 1
request_id: BINDS-2026-0042
title: Cryo-EM test run
modality: cryoem
instrument: {{manufacturer: Thermo Fisher, model: Titan Krios G4}}
acquired: 2026-11-20
access: {{level: consortium}}
license: CC-BY-4.0
samples:
  - id: S1
    organism: NCBITaxon:9606
{block}"""


def write_mrc(
    path: Path,
    data: np.ndarray,
    *,
    voxel_size: float | tuple = 1.0,
    axis_order: tuple[int, int, int] = (1, 2, 3),
    start: tuple[int, int, int] = (0, 0, 0),
) -> Path:
    """A small MRC file; ``data`` is in file order (sections, rows, columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = axis_order
        mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = start
    return path


def run_stage(run_dir: Path, work: Path) -> StagedDataset:
    """The real workflow (Snakemake subprocess, local profile) from ``run_dir`` into ``work``."""
    exp = load_experiment(run_dir)
    stage = StagedDataset(work / "stage")
    write_experiment_json(exp, stage.meta_dir / "experiment.json")
    run_workflow(run_dir=run_dir, stage=stage, modality=exp.modality, cores=2)
    return stage


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and bytes of every file under ``root``."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()
