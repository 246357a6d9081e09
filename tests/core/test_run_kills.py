"""Kill-safety of the whole `binds run` (issue 9): SIGKILL or SIGHUP at any point (validation,
any rule, publishing), then the same command, gives the same version as an uninterrupted run;
no partial version is ever visible; Snakemake's stale locks never block; a second run of the
same folder while one is active is refused.

The runs are real `binds run` processes (Prefect + Snakemake + a local store).  They talk to one
`prefect server start` on loopback, so that each process does not pay for a temporary server.
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

pytestmark = pytest.mark.slow
BINDS = [sys.executable, "-m", "pipelines.cli"]


@pytest.fixture
def prefect_api(prefect_server):
    """The session's `prefect server start` on loopback (tests/core/conftest.py)."""
    return prefect_server


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


def uninterrupted_digest(run_dir: Path, tmp: Path, env: dict[str, str]) -> tuple[str, float]:
    t0 = time.monotonic()
    code, out, err = finish(start_run(run_dir, tmp / "ref-store", tmp / "ref-work", env))
    assert code == 0, err
    return json.loads(out)["content_digest"], time.monotonic() - t0


@pytest.mark.timeout(2400)  # 10 killed runs and 10 reruns (~1 min per round on a loaded machine)
@pytest.mark.parametrize("modality", ["cryoem", "screening"])
def test_random_sigkills_then_rerun_give_the_uninterrupted_version(modality, prefect_api, tmp_path):
    """>= 10 random SIGKILLs per modality (20 across the two), half to the whole process group,
    half to one process of the run (binds, Snakemake, a job); each followed by the same command."""
    env = _env(prefect_api, tmp_path)
    run_dir = tmp_path / "run"
    get_modality(modality).make_demo_run(run_dir)
    digest, duration = uninterrupted_digest(run_dir, tmp_path, env)
    rng = random.Random(f"{modality}-kills")
    kills = 10
    for i in range(kills):
        # a fresh store and work folder each round: every kill lands in a whole run (start-up,
        # validation, a rule, publishing), at a random time
        store, work = tmp_path / f"store-{i}", tmp_path / f"work-{i}"
        proc = start_run(run_dir, store, work, env)
        whole_group = i % 2 == 0
        try:  # the kill lands at a random time of the run, or not at all if it ends first
            proc.wait(timeout=rng.uniform(0.2, duration))
        except subprocess.TimeoutExpired:
            if whole_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                victim = rng.choice(descendants(proc.pid))
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        code, _, err = finish(
            proc
        )  # the command returned (killed, or failed after a child was killed)
        print(
            f"round {i}: {'group' if whole_group else 'one process'} kill -> exit {code}; "
            f"{err.strip().splitlines()[-1] if err.strip() else ''}",
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
