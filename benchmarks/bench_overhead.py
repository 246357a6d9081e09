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

The same for a **small run** (one 33 kB map, ``small_run``: Snakemake's start-up and binds'
fixed costs dominate), baseline and server only: goal (issue 25) <= 1.5x the hand run.

Publishing is left out of all three (it is the same function with or without Prefect; see
bench_store).  Goal (issue 11): server <= baseline + 1.5 s.  Run: ``python benchmarks/run.py
overhead`` (``--quick``: one repeat).

Besides wall time, each run's CPU seconds (the process and its children: Snakemake and its
jobs) and the running server's CPU seconds during the run are recorded: on a shared 2-core
machine they tell binds' own cost apart from the load of the moment.  The ``binds run`` runs
write their step times (``BINDS_TRACE``); ``steps`` gives them relative to the process start,
with the first and last Snakemake job, for the median server run.
"""

from __future__ import annotations

import json
import os
import resource
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _session_cpu(sid: int) -> float:
    """CPU seconds so far of every process in session ``sid`` (the running server)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # session id
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _timed(cmd: list[str], env: dict[str, str], server_sid: int) -> dict[str, float]:
    cpu0, server0 = _children_cpu(), _session_cpu(server_sid)
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t1 = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {proc.stderr[-2000:]}")
    return {
        "t0": t0,
        "wall_s": round(t1 - t0, 3),
        "cpu_s": round(_children_cpu() - cpu0, 2),
        "server_cpu_s": round(_session_cpu(server_sid) - server0, 2),
    }


def _steps(trace: Path, events: Path, t0: float, t_end: float) -> dict[str, float]:
    """Seconds from the process start to each traced step and to the first/last job."""
    steps = {}
    for line in trace.read_text().splitlines():
        t, step = line.split(" ", 1)
        steps[step] = round(float(t) - t0, 2)
    evs = [json.loads(ln) for ln in events.read_text().splitlines() if ln.strip()]
    starts = [e["t"] for e in evs if e["event"] == "job_info"]
    ends = [e["t"] for e in evs if e["event"] == "job_finished"]
    steps["snakemake: first event"] = round(evs[0]["t"] - t0, 2)
    steps["first job started"] = round(min(starts) - t0, 2)
    steps["last job ended"] = round(max(ends) - t0, 2)
    steps["exit"] = round(t_end - t0, 2)
    return dict(sorted(steps.items(), key=lambda kv: kv[1]))


def _hand_steps(events: Path, t0: float, t_end: float) -> dict[str, float]:
    evs = [json.loads(ln) for ln in events.read_text().splitlines() if ln.strip()]
    return {
        "snakemake: first event": round(evs[0]["t"] - t0, 2),
        "first job started": round(min(e["t"] for e in evs if e["event"] == "job_info") - t0, 2),
        "last job ended": round(max(e["t"] for e in evs if e["event"] == "job_finished") - t0, 2),
        "exit": round(t_end - t0, 2),
    }


def _server(home: Path) -> tuple[subprocess.Popen, str]:
    from pipelines.orchestrate.monitoring import api_problem, free_port

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
    from pipelines.modalities import get

    repeats = 1 if quick else REPEATS
    tmp = Path(tempfile.mkdtemp(prefix="binds-bench-overhead-"))
    server = None
    try:
        run_dir = tmp / "krios-demo"
        get("cryoem").make_demo_run(run_dir)
        small = small_run(tmp / "krios-small")
        home = tmp / "prefect-home"
        home.mkdir()
        env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        env.pop("PREFECT_API_URL", None)
        server, url = _server(tmp / "server-home")
        sid = server.pid  # started with start_new_session: its pid is the session id
        # one untimed run each: the database migration of a fresh PREFECT_HOME, numba caches
        _timed(
            [*BINDS, "run", str(run_dir), "--no-publish", "--work-dir", str(tmp / "warm")],
            env,
            sid,
        )
        kinds = {"server": env | {"PREFECT_API_URL": url}, "ephemeral": env}
        runs = _measure(run_dir, tmp / "demo", env, kinds, sid=sid, repeats=repeats)
        small_runs = _measure(
            small, tmp / "small", env, {"server": kinds["server"]}, sid=sid, repeats=repeats
        )
        return [
            _row(runs, "server", "running server"),
            _row(runs, "ephemeral", "ephemeral"),
            _row(small_runs, "server", "running server, 33 kB map")
            | {"goal": "<= 1.5x the same Snakemake command by hand"},
        ]
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def small_run(run_dir: Path) -> Path:
    """A cryo-EM run folder with one 20^3 float32 map (33 kB): Snakemake's own start-up and
    ``binds run``'s fixed costs dominate, the jobs take little (issue 25's small-run ratio)."""
    import mrcfile
    import numpy as np

    run_dir.mkdir(parents=True)
    with mrcfile.new(run_dir / "map.mrc") as mrc:
        mrc.set_data(np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32))
        mrc.voxel_size = 1.0
    (run_dir / "experiment.yaml").write_text(SMALL_EXPERIMENT)
    return run_dir


SMALL_EXPERIMENT = """\
schema_version: 1
request_id: BINDS-BENCH-SMALL
title: Small cryo-EM map (benchmark)
modality: cryoem
instrument: {manufacturer: Thermo Fisher, model: Titan Krios G4}
acquired: 2026-11-20
access: {level: open}
personal_data: false
license: CC0-1.0
samples:
  - id: S1
    organism: NCBITaxon:9606
"""


def _measure(
    run_dir: Path, tmp: Path, env: dict[str, str], kinds: dict[str, dict[str, str]], **how: int
) -> dict[str, list[dict]]:
    """``repeats`` times, one after the other: Snakemake by hand (in ``env``), then ``binds run
    --no-publish`` in each environment of ``kinds``; each into a fresh work folder."""
    from pipelines.run import runner
    from pipelines.run.workflow import snakemake_command
    from pipelines.toolkit.stage import StagedDataset

    sid, repeats = how["sid"], how["repeats"]
    exp, template = runner.prepare(run_dir, work_dir=tmp / "template")
    runs: dict[str, list[dict]] = {"baseline": [], **{kind: [] for kind in kinds}}
    for i in range(repeats):
        work = tmp / f"hand-{i}"
        shutil.copytree(template.meta_dir, work / "stage" / "_meta")
        # with the logger plugin, as binds run starts it (its events give the job times)
        cmd = snakemake_command(
            run_dir=run_dir, stage=StagedDataset(work / "stage"), modality=exp.modality, events=True
        )
        events = work / "events.jsonl"
        hand = _timed(cmd, env | {"BINDS_SNAKEMAKE_EVENTS": str(events)}, sid)
        hand["steps"] = _hand_steps(events, hand["t0"], hand["t0"] + hand["wall_s"])
        runs["baseline"].append(hand)
        for kind, kind_env in kinds.items():
            out = tmp / f"{kind}-{i}"
            trace = tmp / f"{kind}-{i}.trace"
            run = _timed(
                [*BINDS, "run", str(run_dir), "--no-publish", "--work-dir", str(out)],
                kind_env | {"BINDS_TRACE": str(trace)},
                sid,
            )
            run["steps"] = _steps(
                trace,
                out / "stage" / "_meta" / "snakemake-events.jsonl",
                run["t0"],
                run["t0"] + run["wall_s"],
            )
            runs[kind].append(run)
    return runs


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]


def _row(runs: dict[str, list[dict]], kind: str, label: str) -> dict:
    base = statistics.median(r["wall_s"] for r in runs["baseline"])
    ours = statistics.median(r["wall_s"] for r in runs[kind])
    diffs = [r["wall_s"] - b["wall_s"] for r, b in zip(runs[kind], runs["baseline"], strict=True)]
    cpu = [r["cpu_s"] - b["cpu_s"] for r, b in zip(runs[kind], runs["baseline"], strict=True)]
    return {
        "benchmark": f"overhead: binds run ({label})",
        "ours": ours,
        "baseline": "same snakemake command by hand",
        "baseline_s": base,
        "ratio": ours / base,
        "goal": "<= baseline + 1.5 s" if kind == "server" else "measured (was +20.2 s)",
        "extra": {
            "overhead_s": round(ours - base, 2),
            "pairwise_overhead_s": [round(d, 2) for d in diffs],
            "extra_cpu_s": [round(c, 2) for c in cpu],
            "server_cpu_s": [r["server_cpu_s"] for r in runs[kind]],
            "baseline_server_cpu_s": [r["server_cpu_s"] for r in runs["baseline"]],
            "runs_s": [r["wall_s"] for r in runs[kind]],
            "baseline_runs_s": [r["wall_s"] for r in runs["baseline"]],
            "steps": _median_run(runs[kind])["steps"],
            "baseline_steps": _median_run(runs["baseline"])["steps"],
        },
    }


if __name__ == "__main__":
    for row in main(quick="--quick" in sys.argv):
        print(row)
