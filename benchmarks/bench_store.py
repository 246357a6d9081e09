"""Publish a 1 GiB many-chunk Zarr to a loopback S3 vs one boto3 ``upload_file`` of a 1 GiB file;
and opening an S3 store (the data service, the CLI and a publish open several) vs a client from
a new boto3 session each time, which re-parses botocore's S3 model (issue 20).

Both go to the same moto server (a separate process, like a real endpoint) in one run.
The figure is throughput relative to the baseline: ``upload_file time / publish time``
(issue #2 goal: >= 0.8x).  The publish time includes everything the protocol does: hashing
(sha256 + the S3 ETag), claiming, uploading ~1,000 objects, verifying, metadata, commit, catalog.

    .venv/bin/python benchmarks/run.py store            # 1 GiB
    .venv/bin/python benchmarks/run.py store --quick    # 128 MiB smoke run
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import numpy as np

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def _make_stage(root: Path, total_bytes: int):
    import zarr

    sys.path.insert(0, str(HERE.parent / "tests" / "store"))
    from conftest import build_stage  # the same staged-dataset shape the tests use

    stage = build_stage(root, n_chunks=1, chunk_bytes=10)
    side = 64
    n_z = total_bytes // (512 * 512 * 4)
    arr = zarr.create_array(
        stage.data_dir / "volume.zarr",
        shape=(n_z, 512, 512),
        chunks=(side, side, side),
        dtype="float32",
        compressors=None,
        zarr_format=3,
    )
    rng = np.random.default_rng(0)
    for z in range(0, n_z, side):
        arr[z : z + side] = rng.random((min(side, n_z - z), 512, 512), dtype=np.float32)
    return stage


def _opens(endpoint: str, n: int = 50) -> dict:
    """``n`` stores opened and asked for one object: ours (one parsed copy of the models for
    every client) against a client from a new boto3 session each time (what S3Store did)."""
    from pipelines.store import open_store

    open_store("s3://curated/binds").exists("k")  # both sides start with botocore imported
    t = time.perf_counter()
    for _ in range(n):
        open_store("s3://curated/binds").exists("k")
    ours = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(n):
        client = boto3.session.Session().client("s3", endpoint_url=endpoint)
        try:
            client.head_object(Bucket="curated", Key="binds/k")
        except client.exceptions.ClientError:
            pass
    baseline = time.perf_counter() - t
    return {
        "benchmark": f"open an S3 store and HEAD one key, {n} times",
        "ours": ours,
        "baseline": "a client from a new boto3 Session each time",
        "baseline_s": baseline,
        "ratio": baseline / ours,
        "goal": "(issue 20: the store tests' time)",
        "extra": {"ours_ms_per_open": round(ours / n * 1000, 1)},
    }


def main(quick: bool = False) -> list[dict]:
    from pipelines.run.publishing import publish
    from pipelines.store import open_store

    total = (128 << 20) if quick else (1 << 30)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    work = Path(tempfile.mkdtemp(prefix="binds-bench-store-"))
    proc, endpoint = _start_moto()
    try:
        stage = _make_stage(work / "stage", total)
        n_objects = sum(1 for _ in stage.published_files())
        single = work / "single.bin"
        with open(single, "wb") as f:
            rng = np.random.default_rng(1)
            for _ in range(total // (64 << 20)):
                f.write(rng.bytes(64 << 20))
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="baseline")
        client.create_bucket(Bucket="curated")
        t = time.perf_counter()
        client.upload_file(str(single), "baseline", "one-file.bin")
        baseline = time.perf_counter() - t
        os.environ["BINDS_S3_ENDPOINT_URL"] = endpoint
        store = open_store("s3://curated/binds")
        t = time.perf_counter()
        result = publish(stage, store)
        ours = time.perf_counter() - t
        assert result.created and result.n_files == n_objects
        opens = _opens(endpoint)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    mib = total / (1 << 20)
    return [
        opens,
        {
            "benchmark": f"publish {mib:.0f} MiB Zarr ({n_objects} objects) -> S3",
            "ours": ours,
            "baseline": f"boto3 upload_file {mib:.0f} MiB",
            "baseline_s": baseline,
            "ratio": baseline / ours,
            "goal": "throughput >= 0.8x upload_file",
            "extra": {
                "ours_MiB_s": round(mib / ours, 1),
                "baseline_MiB_s": round(mib / baseline, 1),
            },
        },
    ]


if __name__ == "__main__":
    for row in main(quick="--quick" in sys.argv):
        print(row)
