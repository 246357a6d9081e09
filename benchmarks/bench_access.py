"""Reader API (pipelines.access) on a 10 GB dataset: open time and memory of a 1 % read.

The dataset is an 11.2 GB float32 map (1408^3 voxels, OME-Zarr layout, chunks 16 x 256 x 256,
uncompressed ``bytes`` codec) in a store with its catalog row and manifest.  Its chunk files
are *sparse* files (``truncate``: all zeros, no disk blocks), so it is made in seconds and uses
no disk, while every chunk is a real object the reader must find, open and decode.

The reads use ``access.open(..., chunks_in_flight=1)`` (zarr's
default, 10, holds ~10 decoded chunks besides the result: 1.28x measured here).

Goals (issue #13): ``access.open`` <= 1 s; reading 1 % (16 of 1408 z-planes, one chunk layer)
raises the process's peak RSS by at most 1.2x the slice's bytes.  Local folder, and S3 on
loopback (moto; there only the chunks of the slice are uploaded: moto keeps objects in memory,
and the absent chunks read as the fill value, which costs the same request as a present one
would not - so the open time is the S3 figure that matters).  Every measurement runs in a fresh
process (peak RSS is per process).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1408, 1408, 1408)
CHUNK = (16, 256, 256)
DATASET = "bench-10gb-cryoem"
SLAB = 16  # z-planes read: 1.14 % of the map


def _grid() -> list[int]:
    return [-(-s // c) for s, c in zip(SHAPE, CHUNK, strict=True)]


def make_store(root: Path, shape=SHAPE) -> dict:
    """The store with one version holding the sparse map; returns sizes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.access.catalog_schema import CATALOG_SCHEMA
    from pipelines.describe.catalog import catalog_row

    prefix = f"open/cryoem/{DATASET}/v1/"
    zroot = root / prefix / "data" / "map.ome.zarr"
    arr = zroot / "0"
    arr.mkdir(parents=True)
    chunk_bytes = 4 * CHUNK[0] * CHUNK[1] * CHUNK[2]
    (zroot / "zarr.json").write_text(
        json.dumps(
            {
                "zarr_format": 3,
                "node_type": "group",
                "attributes": {
                    "ome": {
                        "version": "0.5",
                        "multiscales": [
                            {
                                "name": "map",
                                "axes": [
                                    {"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"
                                ],
                                "datasets": [
                                    {
                                        "path": "0",
                                        "coordinateTransformations": [
                                            {"type": "scale", "scale": [1.0, 1.0, 1.0]}
                                        ],
                                    }
                                ],
                            }
                        ],
                    }
                },
            }
        )
    )
    (arr / "zarr.json").write_text(
        json.dumps(
            {
                "zarr_format": 3,
                "node_type": "array",
                "shape": list(shape),
                "data_type": "float32",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(CHUNK)}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": 0.0,
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                "dimension_names": ["z", "y", "x"],
                "attributes": {},
            }
        )
    )
    zero_sha = hashlib.sha256(bytes(chunk_bytes)).hexdigest()
    files = []
    gz, gy, gx = [-(-s // c) for s, c in zip(shape, CHUNK, strict=True)]
    for z in range(gz):
        for y in range(gy):
            d = arr / "c" / str(z) / str(y)
            d.mkdir(parents=True, exist_ok=True)
            for x in range(gx):
                with open(d / str(x), "wb") as f:
                    f.truncate(chunk_bytes)
                files.append(
                    {
                        "path": f"data/map.ome.zarr/0/c/{z}/{y}/{x}",
                        "size": chunk_bytes,
                        "sha256": zero_sha,
                    }
                )
    for meta in (zroot / "zarr.json", arr / "zarr.json"):
        raw = meta.read_bytes()
        files.append(
            {
                "path": meta.relative_to(root / prefix).as_posix(),
                "size": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
            }
        )
    total = sum(f["size"] for f in files)
    manifest = {
        "format": "binds-manifest",
        "format_version": 1,
        "dataset_id": DATASET,
        "version": 1,
        "access": "open",
        "modality": "cryoem",
        "request_id": "BINDS-BENCH",
        "title": "10 GB map",
        "created": "2026-12-01T00:00:00Z",
        "content_digest": "sha256:bench",
        "n_files": len(files),
        "bytes": total,
        "qc": {},
        "files": files,
    }
    mbytes = json.dumps(manifest).encode()
    (root / prefix / "manifest.json").write_bytes(mbytes)
    row = catalog_row(manifest, manifest_sha256=hashlib.sha256(mbytes).hexdigest())
    (root / "open" / "catalog").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([row], schema=CATALOG_SCHEMA),
        root / "open" / "catalog" / f"cryoem--{DATASET}--v1.parquet",
    )
    return {"bytes": total, "n_chunks": len(files) - 2}


PROBE = textwrap.dedent("""
    import json, os, sys, time
    def rss(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    import numpy, zarr, pyarrow, pandas, s3fs, anndata  # imports are not the open time
    from pipelines import access
    store, dataset, slab = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t = time.perf_counter()
    root = access.open(dataset, store=store, chunks_in_flight=int(sys.argv[4]))
    t_open = time.perf_counter() - t
    arr = root["0"]
    arr[0, 0, 0]   # one voxel: the client's one-time set-up (thread pool, HTTP buffers) is not the read's
    with open("/proc/self/clear_refs", "w") as f:   # reset the peak RSS (VmHWM) to now
        f.write("5")
    before = rss("VmRSS:")
    t = time.perf_counter()
    data = arr[:slab]
    t_read = time.perf_counter() - t
    peak = rss("VmHWM:")
    print(json.dumps({"open_s": t_open, "read_s": t_read, "slice_bytes": data.nbytes,
                      "peak_increase_bytes": peak - before, "nominal_bytes": arr.nbytes}))
""")


def _probe(store: str, env: dict | None = None, in_flight: int = 1) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, store, DATASET, str(SLAB), str(in_flight)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=900,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _s3_copy(local: Path) -> tuple[str, dict, object]:
    """Serve the store's metadata and the chunks of the slab from moto on loopback."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="bench")
    slab_chunks = -(-SLAB // CHUNK[0])
    for path in local.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(local).as_posix()
        parts = rel.split("/")
        if "c" in parts:  # a chunk: only those the slab reads
            if int(parts[parts.index("c") + 1]) >= slab_chunks:
                continue
        s3.upload_file(str(path), "bench", "store/" + rel)
    return "s3://bench/store", {**env, "AWS_ENDPOINT_URL": endpoint}, server


def main(quick: bool = False) -> list[dict]:
    global SHAPE
    if quick:
        SHAPE = (320, 320, 320)
    tmp = Path(tempfile.mkdtemp(prefix="binds-bench-access-"))
    rows = []
    server = None
    try:
        info = make_store(tmp / "store", SHAPE)
        for where in ("local", "s3"):
            if where == "local":
                store, env = str(tmp / "store"), None
            else:
                store, env, server = _s3_copy(tmp / "store")
            r = _probe(store, env, in_flight=1)
            ratio = r["peak_increase_bytes"] / r["slice_bytes"]
            extra = {
                "chunks_in_flight": 1,
                "nominal_GB": round(info["bytes"] / 1e9, 2),
                "chunks": info["n_chunks"],
                "slice_MB": round(r["slice_bytes"] / 1e6, 1),
                "read_s": round(r["read_s"], 3),
                "peak_rss_increase_MB": round(r["peak_increase_bytes"] / 1e6, 1),
                "memory_ratio": round(ratio, 3),
            }
            rows.append(
                {
                    "benchmark": f"access.open 10 GB map ({where})",
                    "ours": r["open_s"],
                    "baseline": "goal: 1 s",
                    "baseline_s": 1.0,
                    "ratio": r["open_s"] / 1.0,
                    "goal": "<= 1.0x; 1 % read holds <= 1.2x the slice",
                    "extra": extra,
                }
            )
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    for row in main(quick="--quick" in sys.argv):
        print(json.dumps(row))
