"""The inbox: support staff drop a run folder (raw files + experiment.yaml) into one folder,
and ``binds watch INBOX`` processes and publishes it.

A folder is taken once it holds ``experiment.yaml`` and none of its files changed for
``settle_s`` seconds (an instrument PC may still be copying).  What happened to each folder
is kept in ``INBOX/.binds-inbox.json`` (the folders themselves are never written to: they
may sit on a read-only instrument share), keyed by a fingerprint of names, sizes and mtimes:
a folder is processed again only when its files change.  A failed folder is retried when it
changes (fixed metadata), not in a loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.describe.metadata import EXPERIMENT_FILE
from pipelines.errors import BindsError, InputError, RunError
from pipelines.store.filemodes import file_mode

log = logging.getLogger(__name__)
STATE_FILE = ".binds-inbox.json"


@dataclass(frozen=True, slots=True)
class Snapshot:
    fingerprint: str
    newest_mtime: float


def snapshot(run_dir: Path) -> Snapshot:
    h = hashlib.sha256()
    newest = 0.0
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        st = p.stat()
        newest = max(newest, st.st_mtime)
        h.update(f"{rel.as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return Snapshot(h.hexdigest(), newest)


def load_state(inbox: Path) -> dict[str, Any]:
    path = inbox / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(inbox: Path, state: dict[str, Any]) -> None:
    tmp = inbox / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.chmod(file_mode())  # the reasons name run folders: not for other users of the host
    tmp.replace(inbox / STATE_FILE)


@dataclass(frozen=True, slots=True)
class Entry:
    """One folder of the inbox at one scan: ``ready`` to process, or skipped with ``reason``.

    ``kind`` names the reason without its numbers (``settling``, ``no-metadata``, ``done``,
    ``failed``, ``empty``): a watcher reports a skip once per kind, not at every scan.
    """

    run_dir: Path
    ready: bool
    kind: str
    reason: str
    snapshot: Snapshot | None = None


def scan(inbox: Path, *, settle_s: float, now: float | None = None) -> list[Entry]:
    """Every folder of the inbox with what to do about it (sorted by name)."""
    now = time.time() if now is None else now
    state = load_state(inbox)
    entries = []
    for run_dir in sorted(p for p in inbox.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (run_dir / EXPERIMENT_FILE).is_file():
            entries.append(
                Entry(
                    run_dir,
                    False,
                    "no-metadata",
                    f"no {EXPERIMENT_FILE} yet (write it with: binds init {run_dir})",
                )
            )
            continue
        snap = snapshot(run_dir)
        age = now - snap.newest_mtime
        if age < settle_s:
            entries.append(
                Entry(
                    run_dir,
                    False,
                    "settling",
                    f"settling for {settle_s - age:.0f} s (a file changed {age:.0f} s ago)",
                    snap,
                )
            )
            continue
        done = state.get(run_dir.name, {})
        if done.get("status") == "submitted":  # binds serve: a flow run is on its way
            entries.append(
                Entry(
                    run_dir,
                    False,
                    "in-flight",
                    f"in flight as flow run {done.get('flow_run_id')}",
                    snap,
                )
            )
            continue
        if done.get("fingerprint") == snap.fingerprint and done.get("status"):
            if done["status"] in ("failed", "invalid"):
                lines = str(done.get("error") or "").splitlines() or [""]
                more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
                entries.append(
                    Entry(
                        run_dir,
                        False,
                        "failed",
                        f"{done['status']} at {done.get('finished')}: {lines[0]}{more}; "
                        "it is taken again when its files change",
                        snap,
                    )
                )
            else:
                entries.append(
                    Entry(
                        run_dir,
                        False,
                        "done",
                        f"{done['status']} at {done.get('finished')}; unchanged since",
                        snap,
                    )
                )
            continue
        entries.append(Entry(run_dir, True, "ready", "ready", snap))
    return entries


def pending(
    inbox: Path, *, settle_s: float, now: float | None = None
) -> list[tuple[Path, Snapshot]]:
    """Run folders that are complete (settled) and not yet processed in their current state."""
    entries = scan(inbox, settle_s=settle_s, now=now)
    # a ready folder always has its snapshot (it is what "settled" was judged on)
    return [(e.run_dir, e.snapshot) for e in entries if e.ready and e.snapshot is not None]


class SkipReporter:
    """Says why a folder is skipped once per reason (not at every scan of a long-running watch)."""

    def __init__(self, say: Callable[[str], None] | None) -> None:
        self.say = say
        self._last: dict[str, str] = {}

    def __call__(self, entry: Entry) -> None:
        if self.say and self._last.get(entry.run_dir.name) != entry.kind:
            self.say(f"{entry.run_dir.name}: skipped: {entry.reason}")
        self._last[entry.run_dir.name] = entry.kind

    def forget(self, name: str) -> None:
        self._last.pop(name, None)

    def seen(self, name: str, kind: str) -> None:
        """``kind`` was just reported some other way (e.g. the failure itself)."""
        self._last[name] = kind


def record(inbox: Path, name: str, rec: dict[str, Any]) -> None:
    """Write one folder's outcome into the inbox state file (atomically)."""
    state = load_state(inbox)
    state[name] = rec
    save_state(inbox, state)


def failure_record(exc: BaseException) -> dict[str, Any]:
    """The state record of a failed folder: the message, never a traceback."""
    if isinstance(exc, BindsError):
        return {
            "status": "invalid" if exc.exit_code == 2 else "failed",
            "exit_code": exc.exit_code,
            "error": str(exc),
            "details": list(getattr(exc, "details", [])),
        }
    return {
        "status": "failed",
        "exit_code": 1,
        "error": f"{type(exc).__name__}: {exc}",
        "details": [],
    }


def process_inbox(
    inbox: str | Path,
    *,
    run: Callable[[Path], dict[str, Any]],
    settle_s: float = 60,
    on_event: Callable[[str], None] | None = None,
    skips: SkipReporter | None = None,
) -> list[dict[str, Any]]:
    """Process every ready folder once with ``run(run_dir)``; return one record per folder run.

    A folder's failure (bad input or anything else) is recorded and reported; the other
    folders are processed all the same.
    """
    inbox = Path(inbox)
    skips = skips or SkipReporter(on_event)
    records = []
    for entry in scan(inbox, settle_s=settle_s):
        if not entry.ready:
            skips(entry)
            continue
        run_dir, snap = entry.run_dir, entry.snapshot
        assert snap is not None  # a ready folder always has its snapshot
        skips.forget(run_dir.name)
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if on_event:
            on_event(f"{run_dir.name}: processing")
        try:
            result = run(run_dir)
            rec = {
                "status": "published" if result.get("created") else "unchanged",
                "result": result,
            }
        except Exception as err:
            log.debug("%s failed", run_dir.name, exc_info=True)
            rec = failure_record(err)
        rec |= {
            "fingerprint": snap.fingerprint,
            "started": started,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        record(inbox, run_dir.name, rec)
        skips.seen(run_dir.name, "failed" if rec["status"] in ("failed", "invalid") else "done")
        if on_event:
            on_event(
                f"{run_dir.name}: {rec['status']}"
                + (f": {rec['error']}" if rec["status"] in ("failed", "invalid") else "")
            )
        records.append({"run_dir": run_dir.name, **rec})
    return records


def watch(
    inbox: Path,
    *,
    run: Callable[[Path], dict[str, Any]],
    settle_s: float,
    interval_s: float,
    once: bool,
    on_event: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Process the inbox every ``interval_s`` seconds (``once``: one scan) with ``run``.

    Each reason a folder is skipped is said once, not at every scan (:class:`SkipReporter`).

    Raises
    ------
    RunError
        After ``once``: some folder failed (its reason is in the state file).
    """
    skips = SkipReporter(on_event)
    failed = 0
    while True:
        records = process_inbox(inbox, run=run, settle_s=settle_s, on_event=on_event, skips=skips)
        failed += sum(r["status"] in ("failed", "invalid") for r in records)
        if once:
            break
        sleep(interval_s)
    if failed:
        raise RunError(f"{failed} run folder(s) failed; see {inbox / STATE_FILE}")


def flow_runner(
    *, store_url: str, profile: str, cores: int | None
) -> Callable[[Path], dict[str, Any]]:
    """``run`` for :func:`watch`: one run folder as a ``binds run`` Prefect flow run (tagged
    like one), published to ``store_url``; bad input is recorded without a flow run."""

    def run_one(run_dir: Path) -> dict[str, Any]:
        from prefect import tags

        from pipelines.orchestrate.flows import binds_run, run_flow
        from pipelines.orchestrate.monitoring import run_tags
        from pipelines.run.runner import check_run_dir

        try:
            exp, _ = check_run_dir(run_dir)
        except InputError as err:  # bad input: a failed flow run says so in the UI
            from pipelines.orchestrate.flows import record_rejection

            record_rejection(run_dir.name, [str(p) for p in err.problems])
            raise
        with tags(*run_tags(exp.data)):
            return run_flow(
                binds_run, str(run_dir.resolve()), store_url=store_url, profile=profile, cores=cores
            )

    return run_one
