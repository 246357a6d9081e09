"""`binds replicate` between two loopback S3 servers vs a plain boto3 copy of the same objects.

Two moto servers (separate processes: two sites). The source holds one committed version of
N objects (published through the real publish path).  Baseline: boto3 with the same
16 threads, each object ``get_object`` from the source and ``put_object`` to the copy (a
server-side CopyObject cannot cross endpoints). Ours: ``replicate`` (sha256 of the source bytes
checked against the manifest before the put; the put carries Content-MD5 and the sha256
checksum, and its answer's ETag is checked; the manifest last, then ledger, catalog and
registry), and, in the same run, ``replicate(read_back=True)`` (``--read-back``: each copied
object also read back from the copy and its sha256 checked: what every copy did before
2026-12-04).  Then the resume: ``binds replicate`` in its own process,
SIGKILLed after about half the objects, and run again: how many objects the second run sent.

    .venv/bin/python benchmarks/run.py replicate            # 125 MiB in 1,000 objects
    .venv/bin/python benchmarks/run.py replicate --quick    # 25 MiB in 200 objects
    BINDS_BENCH_REPLICATE_MIB=1000 .venv/bin/python benchmarks/run.py replicate   # 1 GiB, ~4 min

The default is 1,000 objects of 128 KiB (the issue's 1 GiB in 1,000 objects takes over the
2 minutes a benchmark may run on these 2 shared cores; the object count is the issue's).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_store import _start_moto  # noqa: E402  (the same separate-process moto server)

WORKERS = 16


def _client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            max_pool_connections=2 * WORKERS,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _baseline(src_ep: str, dst_ep: str, bucket: str, keys: list[str], dest_bucket: str) -> float:
    src, dst = _client(src_ep), _client(dst_ep)
    dst.create_bucket(Bucket=dest_bucket)

    def one(key: str) -> None:
        buf = io.BytesIO()
        src.download_fileobj(bucket, key, buf)
        buf.seek(0)
        dst.upload_fileobj(buf, dest_bucket, key)

    t = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, keys))
    return time.perf_counter() - t


def main(quick: bool = False) -> list[dict]:
    sys.path.insert(0, str(HERE.parent / "tests" / "store"))
    from conftest import build_stage  # the staged-dataset shape the tests use

    from pipelines.run.publishing import publish
    from pipelines.store import open_store
    from pipelines.store.replicate import replicate
    from pipelines.store.s3 import S3Store

    n = 200 if quick else 1000
    chunk = int(float(os.environ.get("BINDS_BENCH_REPLICATE_MIB", "125")) * (1 << 20) / 1000)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    work = Path(tempfile.mkdtemp(prefix="binds-bench-replicate-"))
    (p_src, src_ep), (p_dst, dst_ep) = _start_moto(), _start_moto()
    try:
        _client(src_ep).create_bucket(Bucket="curated")
        os.environ["BINDS_S3_ENDPOINT_URL"] = src_ep
        stage = build_stage(work / "stage", n_chunks=n, chunk_bytes=chunk)
        source = open_store("s3://curated/binds")
        publish(stage, source)
        shutil.rmtree(work / "stage")
        keys = [f"binds/{i.key}" for i in source.list_prefix("consortium/screening/")]
        total = sum(i.size for i in source.list_prefix("consortium/screening/"))

        baseline = _baseline(src_ep, dst_ep, "curated", keys, "baseline")
        _client(dst_ep).create_bucket(Bucket="copy")
        dest = S3Store("s3://copy/binds", endpoint_url=dst_ep)
        t = time.perf_counter()
        report = replicate(source, dest, workers=WORKERS)
        ours = time.perf_counter() - t
        assert report.ok and report.versions_copied == 1, report
        _client(dst_ep).create_bucket(Bucket="copy-read-back")
        dest_rb = S3Store("s3://copy-read-back/binds", endpoint_url=dst_ep)
        t = time.perf_counter()
        report = replicate(source, dest_rb, workers=WORKERS, read_back=True)
        ours_read_back = time.perf_counter() - t
        assert report.ok and report.versions_copied == 1, report

        # resume after a kill: a separate `binds replicate` process, SIGKILLed mid-copy
        _client(dst_ep).create_bucket(Bucket="resume")
        env = dict(os.environ, BINDS_COPY_S3_ENDPOINT_URL=dst_ep)
        cmd = [
            str(Path(sys.executable).parent / "binds"),
            "replicate",
            "--from",
            "s3://curated/binds",
            "--to",
            "s3://resume/binds",
            "--json",
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, start_new_session=True)
        resume_dst = _client(dst_ep)
        while proc.poll() is None:
            listed = resume_dst.list_objects_v2(Bucket="resume", Prefix="binds/consortium/")
            if listed.get("KeyCount", 0) >= n // 2:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait()
        t = time.perf_counter()
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        resumed = time.perf_counter() - t
        second = json.loads(again.stdout.strip().splitlines()[-1])
    finally:
        for p in (p_src, p_dst):
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    mib = total / (1 << 20)
    return [
        {
            "benchmark": f"replicate {mib:.0f} MiB ({len(keys)} objects) S3 -> S3",
            "ours": ours,
            "baseline": f"boto3 get+put, {WORKERS} threads",
            "baseline_s": baseline,
            "ratio": baseline / ours,
            "goal": "throughput >= 0.8x boto3",
            "extra": {
                "ours_MiB_s": round(mib / ours, 1),
                "baseline_MiB_s": round(mib / baseline, 1),
                "read_back_s": round(ours_read_back, 2),
                "read_back_ratio": round(baseline / ours_read_back, 3),
                "resume_after_kill_s": round(resumed, 2),
                "resume_sent_objects": second["objects_copied"],
                "resume_kept_objects": second["objects_kept"],
            },
        }
    ]


if __name__ == "__main__":
    for row in main(quick="--quick" in sys.argv):
        print(row)
