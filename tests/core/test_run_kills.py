"""Kill-safety of the whole `binds run` (issue 9): SIGKILL or SIGHUP at any point (validation,
any rule, publishing), then the same command, gives the same version as an uninterrupted run;
no partial version is ever visible; Snakemake's stale locks never block; a second run of the
same folder while one is active is refused.

The runs are real `binds run` processes (Prefect + Snakemake + a local store).  They talk to the
session's `prefect server start` on loopback (fixture ``prefect_api``, which also marks them
slow), so that each process does not pay for a temporary server.  The kill times come from the
recorded timeline of one uninterrupted run: one per phase, seeded and printed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.modalities import get as get_modality
from pipelines.store import open_store
from pipelines.store.verify import verify

BINDS = [sys.executable, "-m", "pipelines.cli"]


def _env(prefect_api: str, tmp: Path) -> dict[str, str]:
    return dict(
        os.environ,
        PREFECT_API_URL=prefect_api,
        PREFECT_HOME=str(tmp / "prefect-client"),
        PREFECT_LOGGING_LEVEL="CRITICAL",
    )


def start_run(run_dir: Path, store: Path, work: Path, env: dict[str, str]) -> subprocess.Popen:
    """`binds run` in its own session (so the test can signal its whole process group)."""
    return subprocess.Popen(
        [
            *BINDS,
            "run",
            str(run_dir),
            "--store",
            str(store),
            "--work-dir",
            str(work),
            "--cores",
            "2",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def committed_digests(store: Path) -> list[str]:
    """Content digests of every committed version; asserts none is partial or damaged."""
    st = open_store(store, read_only=True)
    report = verify(st)
    damage = [p for p in report.problems if "catalog row missing" not in p]
    assert not damage, damage  # a commit without its catalog row is repaired by the next run
    return [
        json.loads(m.read_text())["content_digest"]
        for m in sorted(store.glob("*/*/*/v*/manifest.json"))
    ]


def kill_seed() -> int:
    """The seed of this session's kill points: BINDS_KILL_SEED to repeat a failure, else a
    new one each session (so the suite samples new points over time); printed by each test."""
    if seed := os.environ.get("BINDS_KILL_SEED"):
        return int(seed)
    return random.SystemRandom().randrange(2**32)


def recorded_timeline(
    run_dir: Path, tmp: Path, env: dict[str, str]
) -> tuple[str, list[tuple[str, float, float]]]:
    """One uninterrupted run: its content digest and its phases as (name, start, end) in seconds
    after the command started: start-up and validation (until Snakemake's first event), every
    job (started .. finished, from the events the logger plugin records) and publishing (from
    Snakemake's last event until the command returned)."""
    t0 = time.time()
    code, out, err = finish(start_run(run_dir, tmp / "ref-store", tmp / "ref-work", env))
    end = time.time() - t0
    assert code == 0, err
    events_file = tmp / "ref-work" / "stage" / "_meta" / "snakemake-events.jsonl"
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line]
    rules = {e["jobid"]: e["rule"] for e in events if e.get("event") == "job_info"}
    started = {j: e["t"] - t0 for e in events if e.get("event") == "job_started" for j in e["jobs"]}
    finished = {e["jobid"]: e["t"] - t0 for e in events if e.get("event") == "job_finished"}
    first, last = events[0]["t"] - t0, events[-1]["t"] - t0
    jobs = [  # the target rule `all` runs nothing
        (f"job {rules.get(j, j)}", started[j], finished.get(j, last))
        for j in sorted(started, key=started.__getitem__)
        if rules.get(j) != "all"
    ]
    phases = [("start-up and validation", 0.2, first), *jobs, ("publishing", last, end)]
    return json.loads(out)["content_digest"], phases


def kill_points(
    phases: list[tuple[str, float, float]], rng: random.Random, n_jobs: int = 4
) -> list[tuple[str, float]]:
    """A kill time in start-up, in publishing and in ``n_jobs`` of the jobs (seeded choice):
    every phase a kill can land in is hit, with fewer runs than uniform random times need."""
    startup, *jobs, publishing = phases
    chosen = [startup, *sorted(rng.sample(jobs, min(n_jobs, len(jobs))), key=lambda p: p[1])]
    chosen.append(publishing)
    return [(name, rng.uniform(a, max(a, b))) for name, a, b in chosen]


@pytest.mark.timeout(2400)  # 6 killed runs and 6 reruns (~1 min per round on a loaded machine)
@pytest.mark.parametrize("modality", ["cryoem", "screening"])
def test_sigkills_in_every_phase_then_rerun_give_the_uninterrupted_version(
    modality, prefect_api, tmp_path
):
    """A SIGKILL in each phase of a recorded uninterrupted run (start-up and validation, 4 of
    its jobs, publishing), alternately to the whole process group and to one process of the
    run (binds, Snakemake, a job); each followed by the same command.  The times are drawn
    from the seed printed (BINDS_KILL_SEED repeats them)."""
    env = _env(prefect_api, tmp_path)
    run_dir = tmp_path / "run"
    get_modality(modality).make_demo_run(run_dir)
    digest, phases = recorded_timeline(run_dir, tmp_path, env)
    seed = kill_seed()
    rng = random.Random(f"{modality}-{seed}")
    points = kill_points(phases, rng)
    print(f"kill seed {seed} (BINDS_KILL_SEED={seed} repeats); timeline {phases}", flush=True)
    assert len(points) >= 3 and points[0][0].startswith("start-up")
    assert points[-1][0] == "publishing"
    for i, (phase, at) in enumerate(points):
        # a fresh store and work folder each round: the kill lands in a whole run
        store, work = tmp_path / f"store-{i}", tmp_path / f"work-{i}"
        proc = start_run(run_dir, store, work, env)
        whole_group = i % 2 == 0
        try:  # not at all if the run ends first (its timing varies with the machine's load)
            proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            if whole_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                victim = rng.choice(descendants(proc.pid))
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        code, _, err = finish(proc)  # returned: killed, or failed after a child was killed
        print(
            f"round {i}: {'group' if whole_group else 'one process'} kill at {at:.1f} s "
            f"({phase}) -> exit {code}; {err.strip().splitlines()[-1] if err.strip() else ''}",
            file=sys.stderr,
            flush=True,
        )
        assert set(committed_digests(store)) <= {digest}, "never a version of other content"
        code, out, err = finish(start_run(run_dir, store, work, env))
        assert code == 0, f"rerun {i} after {'group' if whole_group else 'one-process'} kill: {err}"
        assert json.loads(out)["content_digest"] == digest
        assert committed_digests(store) == [digest], "one version, the uninterrupted run's"
        assert not list((work / ".snakemake" / "locks").glob("*")), "no stale Snakemake lock left"


def test_sighup_like_an_ssh_drop_then_rerun(prefect_api, tmp_path):
    env = _env(prefect_api, tmp_path)
    run_dir = get_modality("cryoem").make_demo_run(tmp_path / "run", seed=7)
    store, work = tmp_path / "store", tmp_path / "work"
    proc = start_run(run_dir, store, work, env)
    deadline = time.monotonic() + 120
    while (
        not (work / ".snakemake").exists() and proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGHUP)
    code, _, _ = finish(proc)
    assert code != 0
    code, out, err = finish(start_run(run_dir, store, work, env))
    assert code == 0, err
    assert json.loads(out)["created"] is True


def test_second_run_of_a_busy_folder_is_refused_with_the_pid(prefect_api, tmp_path):
    env = _env(prefect_api, tmp_path)
    run_dir = get_modality("cryoem").make_demo_run(tmp_path / "run", seed=8)
    store, work = tmp_path / "store", tmp_path / "work"
    first = start_run(run_dir, store, work, env)
    lock = work / ".binds-run.lock"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if lock.exists() and lock.read_text().strip() == str(first.pid):
            break
        time.sleep(0.05)
    second = subprocess.run(
        [*BINDS, "run", str(run_dir), "--store", str(store), "--work-dir", str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.poll() is None, f"the first run ended before the second asked: {finish(first)}"
    assert second.returncode == 1, second.stderr
    assert f"another binds run (pid {first.pid}) is processing" in second.stderr
    code, _, err = finish(first)
    assert code == 0, err


def test_stale_snakemake_lock_of_a_killed_run_is_cleared(tmp_path, prefect_api):
    """Symptom: after SIGKILL every rerun failed with Snakemake's LockException."""
    env = _env(prefect_api, tmp_path)
    run_dir = get_modality("cryoem").make_demo_run(tmp_path / "run", seed=9)
    store, work = tmp_path / "store", tmp_path / "work"
    proc = start_run(run_dir, store, work, env)
    locks = work / ".snakemake" / "locks"
    deadline = time.monotonic() + 120
    while (
        not (locks.is_dir() and any(locks.iterdir()))
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert proc.poll() is None, "Snakemake took its lock while the run was going"
    snakemake = [
        p for p in descendants(proc.pid) if b"snakemake" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    for pid in [proc.pid, *snakemake]:  # the whole tree dies without cleaning up
        os.kill(pid, signal.SIGKILL)
    finish(proc)
    code, out, err = finish(start_run(run_dir, store, work, env))
    assert code == 0, err
    assert json.loads(out)["created"] is True
