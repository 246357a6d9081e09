"""Staged datasets made on the fly for the store tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.toolkit.stage import StagedDataset, write_json

EXPERIMENT = {
    "schema_version": 1,
    "request_id": "BINDS-2026-0042",
    "title": "Store test run",
    "modality": "screening",
    "instrument": {"model": "EnVision"},
    "acquired": "2026-11-20",
    "access": {"level": "consortium"},
    "license": "CC-BY-4.0",
    "samples": [{"id": "S1", "organism": "NCBITaxon:9606"}],
}


def build_stage(
    root: Path,
    *,
    seed: int = 0,
    n_chunks: int = 40,
    chunk_bytes: int = 50_000,
    big_bytes: int = 0,
    access: str = "consortium",
    dataset_id: str | None = None,
) -> StagedDataset:
    """A staged dataset shaped like a real one: a chunked Zarr-like folder, a Parquet table, QC."""
    stage = StagedDataset(root)
    rng = np.random.default_rng(seed)
    zarr = stage.data_dir / "image.ome.zarr"
    (zarr / "0" / "c").mkdir(parents=True, exist_ok=True)
    (zarr / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    for i in range(n_chunks):
        (zarr / "0" / "c" / str(i)).write_bytes(rng.bytes(chunk_bytes))
    if big_bytes:
        (stage.data_dir / "big.bin").write_bytes(rng.bytes(big_bytes))
    pq.write_table(
        pa.table({"well": [f"A{i:02d}" for i in range(1, 13)], "value": rng.normal(size=12)}),
        stage.data_dir / "wells.parquet",
    )
    write_json(stage.qc_dir / "metrics.json", {"z_prime": 0.71, "n_wells": 12, "seed": seed})
    exp = dict(EXPERIMENT, access={"level": access})
    if dataset_id:
        exp["dataset_id"] = dataset_id
    stage.write_meta("experiment.json", exp)
    stage.write_meta(
        "run.json",
        {"run_dir": "/runs/x", "inputs": [{"name": "plate1.csv", "size": 1, "sha256": "0" * 64}]},
    )
    return stage


@pytest.fixture
def make_stage(tmp_path):
    def make(name: str = "stage", **kw) -> StagedDataset:
        return build_stage(tmp_path / name, **kw)

    return make
