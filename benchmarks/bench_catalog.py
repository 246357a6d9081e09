"""Catalog read at 10,000 and 100,000 versions (issue #26), local folder and loopback S3.

The rows are synthetic (one screening dataset per version, every selection column filled the
way ``catalog_row`` fills it) and go through the catalog's real log write path
(``pipelines.describe.catalog.append_rows``, entries of 1,000 rows: writing 100,000 entries one by one
would take most of an hour of fsyncs here), the last 10 one by one with ``write_catalog_row``,
then ``compact`` writes the level's snapshot.  (Each log entry written since the newest
snapshot adds one GET and a small Parquet decode to a read: at most
``BINDS_CATALOG_COMPACT_EVERY`` = 100 of them, read 16 at a time.)  Measured, each in the same process one after the other:

* ``select_versions`` (what ``binds catalog --json`` reads through the Store) and
  ``pipelines.access.catalog`` (the AI teams' reader, through fsspec / pyarrow S3);
* baseline: ``pyarrow.parquet.read_table`` of one Parquet file holding the same rows, then
  ``to_pandas`` (both of ours return a DataFrame).

Goal: <= 3x the baseline; <= 2 s local, <= 5 s S3 at 100,000.  The command line
(``binds catalog --json``, a fresh process: imports plus JSON of every row) is timed too, as
``extra``.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def synthetic_row(i: int, level: str = "open") -> dict:
    did = f"bench-{i:07d}-screening"
    prefix = f"{level}/screening/{did}/v1/"
    return {
        "dataset_id": did,
        "version": 1,
        "modality": "screening",
        "access": level,
        "request_id": f"REQ-{i // 10:06d}",
        "title": f"Compound screen plate batch {i}",
        "created": T0 + dt.timedelta(minutes=i),
        "n_files": 12,
        "bytes": 1_000_000 + i,
        "data_bytes": 900_000 + i,
        "content_digest": f"sha256:{i:064x}",
        "manifest_sha256": f"{i:064x}",
        "path": prefix,
        "metadata_path": prefix + "metadata.jsonld",
        "report_path": prefix + "qc/report.html",
        "data_paths": ["data/wells.parquet"],
        "organisms": ["NCBITaxon:9606"],
        "tissues": ["UBERON:0002107"],
        "cell_types": [],
        "compounds": [f"CHEBI:{15000 + i % 500}"],
        "sample_ids": [f"S{i}-1", f"S{i}-2"],
        "samples": [
            {"sample_id": f"S{i}-1", "organism": "NCBITaxon:9606", "tissue": None},
            {"sample_id": f"S{i}-2", "organism": "NCBITaxon:9606", "tissue": None},
        ],
        "licence": "CC-BY-4.0",
        "acquired": dt.date(2024, 1, 1) + dt.timedelta(days=i % 700),
        "instrument_model": "EnVision 2105",
        "support_unit": "Screening unit",
        "qc_json": '{"z_prime_median": 0.71, "plates": 4}',
        "data_use": ["DUO:0000042"],
    }


def fill(store, n: int) -> None:
    from pipelines.describe.catalog import append_rows, compact, write_catalog_row

    base = "open/catalog/"
    bulk = n - 10
    for start in range(0, bulk, 1000):
        append_rows(store, base, [synthetic_row(i) for i in range(start, min(bulk, start + 1000))])
    for i in range(bulk, n):
        write_catalog_row(store, synthetic_row(i), compact_now=False)
    compact(store, base)


def _records_via_to_json(frame) -> list[dict]:
    """What `binds catalog --json` did before 2026-12-04 (the baseline of its records)."""
    import orjson

    rows = orjson.loads(frame.to_json(orient="records", date_format="iso"))
    for r in rows:
        r["qc"] = orjson.loads(r.pop("qc_json") or "{}")
    return rows


class _Discard(io.RawIOBase):
    def write(self, b) -> int:
        return len(b)


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(url: str, n: int, env: dict) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines import access
    from pipelines.access.catalog_json import write_records_json
    from pipelines.access.catalog_schema import CATALOG_SCHEMA
    from pipelines.describe.catalog import read_catalog, select_versions, version_records
    from pipelines.store import open_store

    store = open_store(url)
    t = time.perf_counter()
    fill(store, n)
    fill_s = time.perf_counter() - t
    where = "S3" if url.startswith("s3://") else "local"
    ro = open_store(url, read_only=True)
    assert read_catalog(ro).num_rows == n
    one = pa.Table.from_pylist([synthetic_row(i) for i in range(n)], schema=CATALOG_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(one, buf, compression="zstd")
    ro_one = store
    ro_one.put("bench/one.parquet", buf.getvalue())

    def baseline() -> None:
        pq.read_table(io.BytesIO(ro_one.get("bench/one.parquet"))).to_pandas()

    base_s = _time(baseline)
    ours = _time(lambda: select_versions(ro))
    reader = _time(lambda: access.catalog(url))
    cli = time.perf_counter()
    out = subprocess.run(
        [str(ROOT / ".venv/bin/binds"), "catalog", "--json", "--store", url],
        capture_output=True,
        env={**os.environ, **env},
        check=False,
    )
    cli_s = time.perf_counter() - cli
    if out.returncode:
        raise RuntimeError(out.stderr.decode()[-2000:])
    goal = "<= 3x, <= 2 s" if where == "local" else "<= 3x, <= 5 s"
    common = {"baseline": "read one Parquet file", "baseline_s": base_s, "goal": goal}
    frame = select_versions(ro)
    to_json_s = _time(lambda: _records_via_to_json(frame), repeat=1)
    table = read_catalog(ro)
    records_s = _time(lambda: version_records(table), repeat=1)
    text_s = _time(lambda: write_records_json(table, _Discard()), repeat=1)
    return [
        {
            "benchmark": f"catalog --json records {n:,} versions {where} (version_records)",
            "ours": records_s,
            "ratio": records_s / to_json_s,
            "baseline": "main until 2026-12-04: DataFrame.to_json (floats rounded) + orjson.loads",
            "baseline_s": to_json_s,
            "goal": "exact values; faster",
            "extra": {"json_text_s": round(text_s, 3)},  # what binds catalog --json writes
        },
        {
            "benchmark": f"catalog read {n:,} versions {where} (binds catalog)",
            "ours": ours,
            "ratio": ours / base_s,
            **common,
            "extra": {"fill_s": round(fill_s, 1), "cli_json_s": round(cli_s, 2)},
        },
        {
            "benchmark": f"catalog read {n:,} versions {where} (access.catalog)",
            "ours": reader,
            "ratio": reader / base_s,
            **common,
        },
    ]


def _moto() -> tuple[str, dict, object]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
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
    env |= {"AWS_ENDPOINT_URL": endpoint, "BINDS_S3_ENDPOINT_URL": endpoint}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    return "s3://bench", env, server


def main(
    quick: bool = False, sizes: tuple[int, ...] | None = None, where=("local", "s3")
) -> list[dict]:
    sizes = sizes or ((1000,) if quick else (10_000, 100_000))
    rows: list[dict] = []
    for n in sizes:
        if "local" in where:
            with tempfile.TemporaryDirectory(prefix="binds-bench-catalog-") as tmp:
                rows += measure(str(Path(tmp) / "store"), n, {})
        if "s3" in where:
            url, env, server = _moto()
            try:
                rows += measure(f"{url}/c{n}", n, env)
            finally:
                server.stop()
    return rows


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:] if a.isdigit()]
    places = tuple(a for a in sys.argv[1:] if a in ("local", "s3")) or ("local", "s3")
    for r in main(sizes=tuple(args) or None, where=places):
        print(r, flush=True)
