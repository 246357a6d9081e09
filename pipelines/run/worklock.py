"""One ``binds`` process per work folder: an OS-level lock held for the whole run.

``binds run`` (and ``binds publish``) hold ``<work>/.binds-run.lock`` with ``flock`` from
validation to the end of publishing.  The kernel releases it when the holder dies, however it
dies (SIGKILL, an SSH drop), so a lock can never be stale; Snakemake's own lock folder
(``<work>/.snakemake/locks``), which a killed Snakemake leaves behind, is cleared only while this
lock is held, i.e. when no other ``binds`` process can be using the folder.

The Snakemake subprocess inherits the lock's file descriptor: if ``binds`` is killed while its
workflow is still shutting down, the folder stays locked until that workflow has exited too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pipelines.errors import RunError

log = logging.getLogger(__name__)

LOCK_FILE = ".binds-run.lock"
#: How long a new run waits for the workflow of a killed run to stop (Snakemake gets SIGINT
#: when its parent dies, then stops its jobs; that takes seconds).
ORPHAN_WAIT_S = 120.0

# work folder -> file descriptor of the lock this process holds (so the workflow runner can
# hand it to Snakemake)
_held: dict[Path, int] = {}


def held_fd(work: str | Path) -> int | None:
    """The descriptor of the lock this process holds on ``work``, if any."""
    return _held.get(Path(work).resolve())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True


def _holder_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def hold(
    work: str | Path, *, wait_s: float = ORPHAN_WAIT_S, on_wait: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold the lock of ``work`` (created if missing) for the ``with`` block.

    Raises
    ------
    RunError
        Another live ``binds`` process holds it ("another binds run (pid N) is processing ..."),
        or the workflow of a killed run did not stop within ``wait_s``.
    """
    work = Path(work).resolve()
    if work in _held:  # re-entered in the same process (e.g. publish inside run)
        yield work
        return
    work.mkdir(parents=True, exist_ok=True)
    fd = os.open(work / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    deadline = time.monotonic() + wait_s
    said = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pid = _holder_pid(fd)
                if pid is not None and pid != os.getpid() and _pid_alive(pid):
                    raise RunError(
                        f"another binds run (pid {pid}) is processing {work}",
                        details=[
                            "wait for it to finish (or stop it), then run the same command "
                            "again: it resumes where that run stopped"
                        ],
                    ) from None
                if time.monotonic() > deadline:
                    raise RunError(
                        f"{work} is still locked by the workflow of an earlier run (pid {pid}, "
                        f"which has exited)",
                        details=[
                            "find it with `fuser -v " + str(work / LOCK_FILE) + "` and stop it, "
                            "then run the same command again"
                        ],
                    ) from None
                if not said and on_wait:
                    on_wait(f"waiting for the workflow of an earlier run (pid {pid}) to stop")
                    said = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        stop_orphaned_jobs(work)
        clear_stale_snakemake_locks(work)
        _held[work] = fd
        try:
            yield work
        finally:
            _held.pop(work, None)
    finally:
        os.close(fd)


def _orphaned_jobs(work: Path) -> list[int]:
    """Snakemake processes still working in ``work`` (cwd inside it), other than this one.

    Only possible when a run's binds *and* Snakemake were killed together: Snakemake's jobs
    then live on, writing outputs nobody will record.
    """
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (cwd == work or cwd.is_relative_to(work)) and b"snakemake" in cmdline:
            found.append(int(entry.name))
    return found


def stop_orphaned_jobs(work: Path, *, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, the jobs a killed workflow left running in ``work`` (call only
    while holding :func:`hold`: no live run owns them then).  Their outputs are incomplete and
    rerun by Snakemake (``rerun-incomplete``)."""
    if not Path("/proc").is_dir():
        return
    pids = _orphaned_jobs(work)
    if not pids:
        return
    log.warning("stopping %d job process(es) left running by a killed run in %s", len(pids), work)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while (pids := [p for p in pids if _pid_alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pids:
            return


def clear_stale_snakemake_locks(work: Path) -> None:
    """Remove Snakemake's lock files of ``work``: call only while holding :func:`hold`."""
    locks = work / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        log.info("removing stale Snakemake locks of %s (left by a killed run)", work)
        shutil.rmtree(locks, ignore_errors=True)
