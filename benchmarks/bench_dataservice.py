"""The data service (issue #24) on loopback: DRS round trips, concurrent Range readers against
direct reads of the same store, and the service's memory while it streams a large file.

* resolve + access round trip: ``GET /objects/{id}`` then ``GET /objects/{id}/access/https``
  with a bearer token carrying a consortium visa (signature and visa checked each time, one
  audit line each), median of many on one keep-alive connection; goal <= 20 ms;
* 50 concurrent clients each reading random 1 MiB ranges of one file through its signed link
  (``Range: bytes=...``, one audit line per read), against 50 threads ``pread``-ing the same
  ranges from the store folder: aggregate throughput ratio (goal >= 0.5x) and p95 latency;
* reading 1 % of a 10 GB OME-Zarr map (bench_access's sparse store) with
  ``access.open("drs://...")`` through the service vs ``access.open`` on the store folder
  (goal <= 2x the time);
* streaming the whole large file (2 GiB; ``--quick`` 256 MiB) through the link, before the
  concurrent readers: the peak RSS of the service's workers (goal < 200 MB: memory does not
  grow with the file), and their peak before it (after the round trips) for comparison.

The store is made by the real publish path; the large file is sparse in the stage (no disk
blocks to write).  ``binds serve-data --workers 2`` runs in its own process group.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "dataservice"))
MIB = 1 << 20


def _vmhwm_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of one process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _workers(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    kids = [int(p) for p in out.split()]
    return kids + [k for kid in kids for k in _workers(kid)]


def _make_store(base: Path, big_bytes: int) -> Path:
    from drs_testing import build_stage  # the tests' synthetic stage (real Zarr, Parquet, AnnData)

    from pipelines.run.publishing import publish
    from pipelines.store import open_store

    stage = build_stage(base / "stage", "bench-consortium", {"level": "consortium"}, seed=1)
    with open(stage.data_dir / "large.bin", "wb") as f:
        f.truncate(big_bytes)
    publish(stage, open_store(base / "store"))
    return base / "store"


def _start_service(store: Path, auth: Path) -> tuple[subprocess.Popen, str]:
    """`binds serve-data --workers 2` on a free loopback port, once /health answers; stop it
    with ``os.killpg(proc.pid, SIGTERM)``."""
    import httpx

    from pipelines.orchestrate.monitoring import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            Path(sys.executable).parent / "binds",
            "serve-data",
            "--store",
            str(store),
            "--auth",
            str(auth),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    return proc, url


def main(quick: bool = False) -> list[dict]:
    import httpx
    import yaml

    from pipelines.access.ids import drs_id
    from pipelines.dataservice.issuer import LocalIssuer

    big = (256 if quick else 2048) * MIB
    tmp = Path(tempfile.mkdtemp(prefix="bench-drs-"))
    store = _make_store(tmp, big)
    issuer = LocalIssuer.create("https://login.bench")
    issuer.write_jwks(tmp / "keys.json")
    (tmp / "auth.yaml").write_text(
        yaml.safe_dump(
            {
                "issuers": [{"iss": issuer.iss, "jwks": "keys.json"}],
                "audience": "binds-data",
                "consortium_visa": "https://binds.example/consortium",
                "dataset_visa_prefix": "https://binds.example/datasets/",
                "link_seconds": 600,
                "audit": "audit",
            }
        )
    )
    token = issuer.token(
        "bench",
        audience="binds-data",
        visas=[issuer.visa("https://binds.example/consortium", subject="bench")],
    )
    proc, url = _start_service(store, tmp / "auth.yaml")
    try:
        auth = {"Authorization": f"Bearer {token}"}
        oid = drs_id("bench-consortium", 1, "data/large.bin")
        with httpx.Client(headers=auth) as c:
            times = []
            for _ in range(30 if quick else 200):
                t0 = time.perf_counter()
                c.get(f"{url}/ga4gh/drs/v1/objects/{oid}").raise_for_status()
                link = c.get(f"{url}/ga4gh/drs/v1/objects/{oid}/access/https").json()["url"]
                times.append(time.perf_counter() - t0)
        rt = statistics.median(times)

        rss_idle = max(_vmhwm_mb(p) for p in _workers(proc.pid))
        t0 = time.perf_counter()
        got = 0
        with httpx.stream("GET", link, timeout=600) as r:
            for chunk in r.iter_bytes(MIB):
                got += len(chunk)
        stream_s = time.perf_counter() - t0
        assert got == big
        rss_stream = max(_vmhwm_mb(p) for p in _workers(proc.pid))
        n_clients, per_client = 50, (4 if quick else 10)
        path = store / "consortium/screening/bench-consortium/v1/data/large.bin"
        results = concurrent_ranges(link, path, big, n_clients, per_client, tmp)
        rss_range = max(_vmhwm_mb(p) for p in _workers(proc.pid))

    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    (svc_tp, svc_p95), (dir_tp, dir_p95) = results["service"], results["direct"]
    (raw_tp, raw_p95), (ceil_tp, _) = results["service_stdlib"], results["ceiling_stdlib"]
    ceil_httpx_tp = results["ceiling_httpx"][0]
    zarr_row = zarr_through_service(quick)
    return [
        zarr_row,
        {
            "benchmark": "DRS resolve + access round trip (median)",
            "ours": rt,
            "baseline": "goal",
            "baseline_s": 0.020,
            "ratio": rt / 0.020,
            "goal": "<= 20 ms",
            "extra": {"ms": round(rt * 1000, 1)},
        },
        {
            "benchmark": "50 clients x 1 MiB Range reads: service vs pread",
            "ours": n_clients * per_client * MIB / svc_tp / 1e6,
            "baseline": "direct pread, 50 threads",
            "baseline_s": n_clients * per_client * MIB / dir_tp / 1e6,
            "ratio": svc_tp / dir_tp,
            "goal": "throughput >= 0.5x",
            "extra": {
                "MB_s": round(svc_tp),
                "direct_MB_s": round(dir_tp),
                "p95_ms": round(svc_p95 * 1000, 1),
                "direct_p95_ms": round(dir_p95 * 1000, 1),
                "worker_peak_rss_MB": round(rss_range),
            },
        },
        {
            "benchmark": "50 clients x 1 MiB Range reads, stdlib http.client clients: service vs pread",
            "ours": n_clients * per_client * MIB / raw_tp / 1e6,
            "baseline": "direct pread, 50 threads",
            "baseline_s": n_clients * per_client * MIB / dir_tp / 1e6,
            "ratio": raw_tp / dir_tp,
            "goal": "throughput >= 0.5x",
            "extra": {
                "MB_s": round(raw_tp),
                "p95_ms": round(raw_p95 * 1000, 1),
                # what no service can beat here: an ASGI app answering 1 MiB from memory
                "ceiling_MB_s_stdlib": round(ceil_tp),
                "ceiling_x_stdlib": round(ceil_tp / dir_tp, 3),
                "ceiling_MB_s_httpx": round(ceil_httpx_tp),
            },
        },
        {
            "benchmark": f"stream {big // MIB} MiB through a link: worker peak RSS",
            "ours": stream_s,
            "baseline": "goal (MB)",
            "baseline_s": 200.0,
            "ratio": rss_stream / 200.0,
            "goal": "< 200 MB RSS",
            "extra": {
                "peak_rss_MB": round(rss_stream),
                "before_MB": round(rss_idle),
                "MB_s": round(big / stream_s / 1e6),
            },
        },
    ]


CEILING_APP = """
BODY = b"x" * (1 << 20)


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 206,
                    "headers": [(b"content-length", b"1048576")]})
        await send({"type": "http.response.body", "body": BODY})
"""


def _httpx_reader(url: str):
    import httpx

    def read(starts: list[int]) -> list[float]:
        lat = []
        with httpx.Client() as c:
            for s in starts:
                t0 = time.perf_counter()
                r = c.get(url, headers={"Range": f"bytes={s}-{s + MIB - 1}"})
                assert r.status_code == 206 and len(r.content) == MIB
                lat.append(time.perf_counter() - t0)
        return lat

    return read


def _stdlib_reader(url: str):
    """The same reads with ``http.client`` (no HTTP parsing in Python per body chunk: httpx's
    h11 parser is what 50 client threads wait on)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    target = u.path + (f"?{u.query}" if u.query else "")

    def read(starts: list[int]) -> list[float]:
        lat = []
        c = http.client.HTTPConnection(u.hostname, u.port)
        try:
            for s in starts:
                t0 = time.perf_counter()
                c.request("GET", target, headers={"Range": f"bytes={s}-{s + MIB - 1}"})
                r = c.getresponse()
                assert r.status == 206 and len(r.read()) == MIB
                lat.append(time.perf_counter() - t0)
        finally:
            c.close()
        return lat

    return read


def _pread_reader(path: Path):
    def read(starts: list[int]) -> list[float]:
        lat = []
        fd = os.open(path, os.O_RDONLY)
        try:
            for s in starts:
                t0 = time.perf_counter()
                assert len(os.pread(fd, MIB, s)) == MIB
                lat.append(time.perf_counter() - t0)
        finally:
            os.close(fd)
        return lat

    return read


def concurrent_ranges(
    link: str, path: Path, size: int, n_clients: int, per_client: int, tmp: Path
) -> dict[str, tuple[float, float]]:
    """(MB/s, p95 s) of 50 clients' random 1 MiB ranges: pread of the store file, the service's
    link (httpx and http.client clients), and the ceiling of this machine and stack: a
    two-worker uvicorn app that answers every request with 1 MiB from memory (no store, no
    checks, no audit)."""
    from pipelines.orchestrate.monitoring import free_port

    rng = random.Random(0)
    ranges = [[rng.randrange(0, size - MIB) for _ in range(per_client)] for _ in range(n_clients)]
    (tmp / "ceiling_app.py").write_text(CEILING_APP)
    port = free_port()
    ceiling = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(tmp),
            "ceiling_app:app",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        start_new_session=True,
    )
    ceiling_url = f"http://127.0.0.1:{port}/"
    readers = {
        "direct": _pread_reader(path),
        "service": _httpx_reader(link),
        "service_stdlib": _stdlib_reader(link),
        "ceiling_httpx": _httpx_reader(ceiling_url),
        "ceiling_stdlib": _stdlib_reader(ceiling_url),
    }
    try:
        if not _wait_http(ceiling_url):
            raise RuntimeError("the ceiling app did not answer")
        results = {}
        for name, fn in readers.items():
            t0 = time.perf_counter()
            with cf.ThreadPoolExecutor(n_clients) as pool:
                lat = [x for lst in pool.map(fn, ranges) for x in lst]
            wall = time.perf_counter() - t0
            results[name] = (
                n_clients * per_client * MIB / wall / 1e6,
                statistics.quantiles(lat, n=20)[18],
            )
        return results
    finally:
        os.killpg(ceiling.pid, signal.SIGTERM)
        ceiling.wait(timeout=30)


def _wait_http(url: str) -> bool:
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    for _ in range(300):
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=1)
            c.request("GET", "/")
            c.getresponse().read()
            c.close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def zarr_through_service(quick: bool = False) -> dict:
    """1 % of bench_access's 10 GB map (``--quick``: a 704^3 one), direct vs through DRS."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_access", ROOT / "benchmarks" / "bench_access.py"
    )
    ba = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ba)
    tmp = Path(tempfile.mkdtemp(prefix="bench-drs-zarr-"))
    ba.make_store(tmp / "store", shape=(704, 704, 704) if quick else ba.SHAPE)
    (tmp / "auth.yaml").write_text(
        "issuers: [{iss: https://x, jwks: keys.json}]\naudience: a\nconsortium_visa: c\n"
        "dataset_visa_prefix: d/\naudit: audit\n"
    )
    from pipelines.dataservice.issuer import LocalIssuer

    LocalIssuer.create("https://x").write_jwks(tmp / "keys.json")
    proc, url = _start_service(tmp / "store", tmp / "auth.yaml")
    try:
        direct = ba._probe(str(tmp / "store"), in_flight=4)
        served = ba._probe(url, in_flight=4)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "benchmark": "1 % of a 10 GB OME-Zarr: open('drs://') vs the store",
        "ours": served["open_s"] + served["read_s"],
        "baseline": "access.open on the folder",
        "baseline_s": direct["open_s"] + direct["read_s"],
        "ratio": (served["open_s"] + served["read_s"]) / (direct["open_s"] + direct["read_s"]),
        "goal": "<= 2x time",
        "extra": {
            "open_s": round(served["open_s"], 2),
            "read_s": round(served["read_s"], 2),
            "MB": round(served["slice_bytes"] / 1e6),
            "peak_increase_x": round(served["peak_increase_bytes"] / served["slice_bytes"], 2),
        },
    }


if __name__ == "__main__":
    for row in main(quick="--quick" in sys.argv):
        print(row)
