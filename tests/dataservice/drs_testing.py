"""Helpers of the data-service tests (a uniquely named module: ``conftest`` is taken by every
test folder): the synthetic stage, the test issuers' names, and ``serving``, which runs
``binds serve-data`` on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.orchestrate.monitoring import free_port
from pipelines.toolkit.stage import StagedDataset, write_json

BINDS = str(Path(sys.executable).parent / "binds")
ISS = "https://login.binds.example"
ISS_ES = "https://passports.binds.example"
AUD = "binds-data"
CONSORTIUM = "https://binds.example/consortium"
DATASET_PREFIX = "https://binds.example/datasets/"
DATASETS = {  # level -> (dataset id, access block)
    "open": ("ds-open", {"level": "open"}),
    "consortium": (
        "ds-consortium",
        {"level": "consortium", "data_use": ["DUO:0000042", "DUO:0000019"]},
    ),
    "restricted": ("ds-restricted", {"level": "restricted"}),
    "embargoed": ("ds-embargoed", {"level": "consortium", "embargo_until": "2099-12-31"}),
}


def build_stage(root: Path, dataset_id: str, access: dict, seed: int) -> StagedDataset:
    """A staged screening dataset: a real Zarr array, a Parquet table, an AnnData, QC."""
    import anndata as ad
    import zarr

    stage = StagedDataset(root)
    rng = np.random.default_rng(seed)
    stage.data_dir.mkdir(parents=True, exist_ok=True)
    g = zarr.open_group(stage.data_dir / "image.ome.zarr", mode="w")
    arr = g.create_array("0", shape=(8, 64, 64), chunks=(2, 32, 32), dtype="uint16")
    arr[:] = rng.integers(0, 60000, size=(8, 64, 64), dtype="uint16")
    pq.write_table(
        pa.table({"well": [f"A{i:02d}" for i in range(1, 97)], "value": rng.normal(size=96)}),
        stage.data_dir / "wells.parquet",
        row_group_size=16,
    )
    adata = ad.AnnData(X=rng.poisson(1.0, size=(20, 5)).astype("float32"))
    adata.obs_names = [f"c{i}" for i in range(20)]
    adata.var_names = [f"g{i}" for i in range(5)]
    adata.write_zarr(stage.data_dir / "adata.zarr")
    (stage.data_dir / "big.bin").write_bytes(rng.bytes(3 << 20))  # streamed in 1 MiB pieces
    write_json(stage.qc_dir / "metrics.json", {"z_prime": 0.7, "n_wells": 96})
    stage.write_meta(
        "experiment.json",
        {
            "schema_version": 1,
            "request_id": f"BINDS-2026-{seed:04d}",
            "dataset_id": dataset_id,
            "title": f"Secret title of {dataset_id}",
            "modality": "screening",
            "instrument": {"model": "EnVision"},
            "acquired": "2026-11-20",
            "access": access,
            "license": "CC-BY-4.0",
            "samples": [{"id": "S1", "organism": "NCBITaxon:9606"}],
        },
    )
    stage.write_meta(
        "run.json",
        {"run_dir": "/runs/x", "inputs": [{"name": "p.csv", "size": 1, "sha256": "0" * 64}]},
    )
    return stage


@contextlib.contextmanager
def serving(store: str, auth_file: Path, log_dir: Path, *, workers: int = 2, extra: tuple = ()):
    """``binds serve-data`` on a free loopback port (a real uvicorn process); its base URL."""
    port = free_port()
    log = open(log_dir / "serve.log", "wb")
    proc = subprocess.Popen(
        [
            BINDS,
            "serve-data",
            "--store",
            store,
            "--auth",
            str(auth_file),
            "--port",
            str(port),
            "--workers",
            str(workers),
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"serve-data did not start: {Path(log.name).read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
