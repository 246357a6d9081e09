"""The audit trail: every decision of the service, one line of a hash-chained JSON-lines log.

Each line is a JSON object with ``seq``, ``time``, ``subject``, ``issuer``, ``action``
(resolve, access, bytes, catalog), ``object`` (DRS id), ``dataset``, ``version``,
``outcome`` (allow / deny), ``status``, ``reason``, ``prev`` (the ``hash`` of the line
before; 64 zeros for the first) and ``hash``: the sha256 of the line's canonical JSON
without ``hash``.  Changing, removing or inserting a line breaks the chain from there on;
:func:`verify` reports the first break and repairs nothing.

Appends from several workers are serialised by an exclusive ``flock`` on the log file. Each
decision (resolve, access, catalog, every refusal) is fsynced before the answer goes out;
the lines of bytes served under an already granted link are handed to the operating system
without an fsync (a crash of the host may lose the last of them, never a grant or a refusal),
which keeps concurrent chunk reads from queueing behind one fsync each.  With a store URL
(``s3://bucket/audit``) each line is one object ``<seq, 12 digits>.jsonl`` written with
put-if-absent, so two workers can never both write line N: the loser reads the winner's line
and chains after it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG_NAME = "audit.jsonl"
GENESIS = "0" * 64
FIELDS = (
    "seq",
    "time",
    "subject",
    "issuer",
    "action",
    "object",
    "dataset",
    "version",
    "outcome",
    "status",
    "reason",
)


def _digest(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def is_store_url(audit: str) -> bool:
    return "://" in audit and not audit.startswith("file://")


def log_path(audit: str) -> Path:
    """The log file of an ``audit:`` folder."""
    return Path(audit.removeprefix("file://")) / LOG_NAME


def open_log(audit: str) -> AuditLog | StoreAuditLog:
    """The audit log of the ``audit:`` setting: a folder, or a store URL."""
    return StoreAuditLog(audit) if is_store_url(audit) else AuditLog(audit)


def _entry(record: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {k: record.get(k) for k in FIELDS}
    entry["seq"] = (prev["seq"] + 1) if prev else 1
    entry["time"] = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    entry["prev"] = prev["hash"] if prev else GENESIS
    entry["hash"] = _digest(entry)
    return entry


def _line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _last_line(f) -> bytes | None:
    f.seek(0, os.SEEK_END)
    end = f.tell()
    if end == 0:
        return None
    pos = end
    block = b""
    while pos > 0:
        step = min(4096, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step) + block
        lines = block.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or pos == 0:
            return lines[-1]
    return None


class AuditLog:
    """Appends decisions to ``<audit folder>/audit.jsonl``."""

    def __init__(self, audit: str) -> None:
        self.path = log_path(audit)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def append(self, *, durable: bool = True, **record: Any) -> dict[str, Any]:
        """Chain one line; ``durable``: fsync it before returning (decisions), else only hand
        it to the operating system (it survives a crash of the service, not of the host)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                last = _last_line(f)
                entry = _entry(record, json.loads(last) if last else None)
                f.seek(0, os.SEEK_END)
                f.write(_line(entry))
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return entry


class StoreAuditLog:
    """Appends decisions as objects ``<seq>.jsonl`` under a store URL (put-if-absent)."""

    def __init__(self, audit: str) -> None:
        from pipelines.store import open_store

        self.store = open_store(audit)
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None
        self._scanned = False

    def append(self, *, durable: bool = True, **record: Any) -> dict[str, Any]:
        with self._lock:  # a put is durable once S3 answers: ``durable`` changes nothing
            if not self._scanned:  # once per process: where the chain ends now
                keys = [i.key for i in self.store.list_prefix("") if i.key.endswith(".jsonl")]
                self._last = json.loads(self.store.get(max(keys))) if keys else None
                self._scanned = True
            while True:
                entry = _entry(record, self._last)
                if self.store.put_if_absent(f"{entry['seq']:012d}.jsonl", _line(entry)):
                    self._last = entry
                    return entry
                # another worker wrote this line first: chain after it
                self._last = json.loads(self.store.get(f"{entry['seq']:012d}.jsonl"))


def _raw_lines(audit: str) -> Iterator[bytes]:
    if is_store_url(audit):
        from pipelines.store import open_store

        store = open_store(audit, read_only=True)
        for info in store.list_prefix(""):
            if info.key.endswith(".jsonl"):
                yield store.get(info.key)
        return
    path = log_path(audit)
    if path.exists():
        with path.open("rb") as f:
            yield from f


@dataclass(frozen=True)
class ChainReport:
    lines: int
    ok: bool
    broken_at: int | None = None  # 1-based line number of the first break
    problem: str = ""


def read_entries(audit: str) -> Iterator[dict[str, Any]]:
    for line in _raw_lines(audit):
        if line.strip():
            yield json.loads(line)


def verify(audit: str) -> ChainReport:
    """Walk the chain: each line's hash over its content, each ``prev`` the hash before."""
    prev, n = GENESIS, 0
    for n, line in enumerate(_raw_lines(audit), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            return ChainReport(n, False, n, "not a JSON line")
        if entry.get("prev") != prev:
            return ChainReport(n, False, n, "does not follow the line before (prev differs)")
        if entry.get("hash") != _digest(entry):
            return ChainReport(n, False, n, "content changed (hash differs)")
        if entry.get("seq") != n:
            return ChainReport(n, False, n, f"seq {entry.get('seq')} where {n} was expected")
        prev = entry["hash"]
    return ChainReport(n, True)
