"""Overhead of ``binds run`` (validation + Prefect flow + task runs per job) over Snakemake.

The cryo-EM demo run folder, processed three ways, each into a fresh work folder (every rule
runs) and measured as whole processes (wall time, median of ``REPEATS``):

- **baseline**: the same Snakemake command ``binds run`` starts (``snakemake_command``), by
  hand, after the stage's ``_meta/`` was written once (what an operator runs after
  ``binds validate``);
- **server**: ``binds run --no-publish`` with ``PREFECT_API_URL`` pointing at a running
  ``prefect server start`` on loopback (started by this benchmark, not timed);
- **ephemeral**: ``binds run --no-publish`` with no server configured (binds starts its
  temporary server while it validates).

Publishing is left out of all three (it is the same function with or without Prefect; see
bench_store).  Goal (issue 11): server <= baseline + 1.5 s.  Run: ``python benchmarks/run.py
overhead`` (``--quick``: one repeat).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REPEATS = 3
BINDS = [sys.executable, "-m", "pipelines.cli"]


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {proc.stderr[-2000:]}")
    return seconds


def _server(home: Path) -> tuple[subprocess.Popen, str]:
    from pipelines.monitoring import api_problem, free_port

    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while api_problem(url, timeout_s=1):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("prefect server did not start")
        time.sleep(0.5)
    return proc, url


def main(quick: bool = False) -> list[dict]:
    from pipelines import runner
    from pipelines.modalities import get
    from pipelines.staging import StagedDataset
    from pipelines.workflow import snakemake_command

    repeats = 1 if quick else REPEATS
    tmp = Path(tempfile.mkdtemp(prefix="binds-bench-overhead-"))
    server = None
    try:
        run_dir = tmp / "krios-demo"
        get("cryoem").make_demo_run(run_dir)
        home = tmp / "prefect-home"
        home.mkdir()
        env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        env.pop("PREFECT_API_URL", None)
        exp, template = runner.prepare(run_dir, work_dir=tmp / "template")
        server, url = _server(tmp / "server-home")
        # one untimed run each: the database migration of a fresh PREFECT_HOME, numba caches
        _timed([*BINDS, "run", str(run_dir), "--no-publish", "--work-dir", str(tmp / "warm")], env)
        times: dict[str, list[float]] = {"baseline": [], "server": [], "ephemeral": []}
        for i in range(repeats):
            work = tmp / f"hand-{i}"
            shutil.copytree(template.meta_dir, work / "stage" / "_meta")
            cmd = snakemake_command(
                run_dir=run_dir, stage=StagedDataset(work / "stage"), modality=exp.modality
            )
            times["baseline"].append(_timed(cmd, env))
            times["server"].append(
                _timed(
                    [
                        *BINDS,
                        "run",
                        str(run_dir),
                        "--no-publish",
                        "--work-dir",
                        str(tmp / f"server-{i}"),
                    ],
                    env | {"PREFECT_API_URL": url},
                )
            )
            times["ephemeral"].append(
                _timed(
                    [
                        *BINDS,
                        "run",
                        str(run_dir),
                        "--no-publish",
                        "--work-dir",
                        str(tmp / f"eph-{i}"),
                    ],
                    env,
                )
            )
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["baseline"]
        return [
            {
                "benchmark": "overhead: binds run (running server)",
                "ours": med["server"],
                "baseline": "same snakemake command by hand",
                "baseline_s": base,
                "ratio": med["server"] / base,
                "goal": "<= baseline + 1.5 s",
                "extra": {"overhead_s": round(med["server"] - base, 2), "runs": times["server"]},
            },
            {
                "benchmark": "overhead: binds run (ephemeral)",
                "ours": med["ephemeral"],
                "baseline": "same snakemake command by hand",
                "baseline_s": base,
                "ratio": med["ephemeral"] / base,
                "goal": "measured (was +7.5 s)",
                "extra": {
                    "overhead_s": round(med["ephemeral"] - base, 2),
                    "runs": times["ephemeral"],
                },
            },
        ]
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    for row in main(quick="--quick" in sys.argv):
        print(row)
