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

from pipelines.errors import BindsError
from pipelines.metadata import EXPERIMENT_FILE

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


def _load_state(inbox: Path) -> dict[str, Any]:
    path = inbox / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(inbox: Path, state: dict[str, Any]) -> None:
    tmp = inbox / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(inbox / STATE_FILE)


def pending(inbox: Path, *, settle_s: float, now: float | None = None) -> list[tuple[Path, Snapshot]]:
    """Run folders that are complete (settled) and not yet processed in their current state."""
    now = time.time() if now is None else now
    state = _load_state(inbox)
    ready = []
    for run_dir in sorted(p for p in inbox.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (run_dir / EXPERIMENT_FILE).is_file():
            continue
        snap = snapshot(run_dir)
        if now - snap.newest_mtime < settle_s:
            log.info("%s: still changing; waiting", run_dir.name)
            continue
        if state.get(run_dir.name, {}).get("fingerprint") == snap.fingerprint:
            continue
        ready.append((run_dir, snap))
    return ready


def process_inbox(inbox: str | Path, *, run: Callable[[Path], dict[str, Any]], settle_s: float = 60,
                  on_event: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Process every ready folder once with ``run(run_dir)``; return one record per folder."""
    inbox = Path(inbox)
    records = []
    for run_dir, snap in pending(inbox, settle_s=settle_s):
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if on_event:
            on_event(f"{run_dir.name}: processing")
        try:
            result = run(run_dir)
            rec = {"status": "published" if result.get("created") else "unchanged", "result": result}
        except BindsError as err:
            rec = {"status": "failed", "exit_code": err.exit_code, "error": str(err),
                   "details": list(getattr(err, "details", []))}
        rec |= {"fingerprint": snap.fingerprint, "started": started,
                "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        state = _load_state(inbox)
        state[run_dir.name] = rec
        _save_state(inbox, state)
        if on_event:
            on_event(f"{run_dir.name}: {rec['status']}" + (f": {rec['error']}" if rec["status"] == "failed" else ""))
        records.append({"run_dir": run_dir.name, **rec})
    return records
