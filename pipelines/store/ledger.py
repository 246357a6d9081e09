"""The ledger of each access level: a hash-chained, append-only record of commits and curator actions.

``<level>/_ledger/<seq, 12 digits>.json`` holds one entry, written once with put-if-absent
(so two appenders can never both write entry *n*; the loser re-reads and appends after it)::

    {"format": "binds-ledger", "seq": 7, "kind": "commit", "dataset_id": "...", "version": 3,
     "level": "consortium", "modality": "cryoem", "manifest_sha256": "...",
     "content_digest": "sha256:...", "request_id": "...", "time": "2026-...Z",
     "prev": "<sha256 of the bytes of entry 6>"}

The first entry's ``prev`` is 64 zeros.  Changing, removing or inserting any entry breaks the
chain at that point (``sha256sum`` of entry *n* must equal entry *n+1*'s ``prev``).

Beside the entries, two kinds of helper objects that are *not* part of the chain (a tampered
helper is caught by the chain check, never trusted):

* ``_ledger/head.json``: where the chain ends (a hint, so appending reads two objects, not the
  whole ledger);
* ``_ledger/index/<sha256 of the lower-cased dataset id>-v<N>.json``: the entry that records a
  committed version (lets a publish find in one request whether its commit was recorded);
  written as a pending marker before the entry and completed after it (``record_arrival``).

The operator may mirror every entry's hash outside the store (``BINDS_LEDGER_MIRROR``: a file
that gets one ``<level> <seq> <sha256>`` line per entry, or a second store URL that gets a copy
of every entry), so that one store admin cannot rewrite the chain and its witness.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from pipelines.store.base import Store, StoreError
from pipelines.store.lease import dataset_hash

log = logging.getLogger(__name__)

LEDGER_DIR = "_ledger"
LEDGER_FORMAT = "binds-ledger"
GENESIS = "0" * 64
_ENTRY = re.compile(r"^(\d{12})\.json$")
MIRROR_ENV = "BINDS_LEDGER_MIRROR"
#: entry kinds that bring a version to the level: a publish, a curator move, an embargo release,
#: a curator adopting a version published before the ledger (pipelines.store.adopt)
ARRIVALS = ("commit", "move-in", "release", "adopt")


def entry_key(level: str, seq: int) -> str:
    return f"{level}/{LEDGER_DIR}/{seq:012d}.json"


def head_key(level: str) -> str:
    return f"{level}/{LEDGER_DIR}/head.json"


def index_key(level: str, dataset_id: str, version: int) -> str:
    return f"{level}/{LEDGER_DIR}/index/{dataset_hash(dataset_id)}-v{version}.json"


def encode(entry: dict[str, Any]) -> bytes:
    """The canonical bytes of an entry: sorted keys, no spaces, one line."""
    return (
        json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
    ).encode()


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    raw: bytes
    body: dict[str, Any]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _get_entry(store: Store, level: str, seq: int) -> Entry | None:
    try:
        raw = store.get(entry_key(level, seq))
    except KeyError:
        return None
    return Entry(seq, raw, json.loads(raw))


def append(store: Store, level: str, record: dict[str, Any]) -> Entry:
    """Append ``record`` (kind, dataset_id, version, ...) to ``level``'s ledger; return the entry.

    Reads the head hint and the entry it names, then put-if-absent of the next number; a
    concurrent appender that got there first is read and followed.
    """
    seq, prev = 0, GENESIS
    try:
        hint = json.loads(store.get(head_key(level)))
        last = _get_entry(store, level, int(hint["seq"]))
        if last is not None:
            seq, prev = last.seq, last.sha256
    except (KeyError, ValueError, TypeError):
        pass  # no hint (first entry, or lost): walk from the start
    while True:
        body = {
            "format": LEDGER_FORMAT,
            "seq": seq + 1,
            "level": level,
            "time": _now(),
            **record,
            "prev": prev,
        }
        raw = encode(body)
        if store.put_if_absent(entry_key(level, seq + 1), raw):
            entry = Entry(seq + 1, raw, body)
            break
        taken = _get_entry(store, level, seq + 1)
        if taken is None:
            continue  # vanished between the put and the read: try the same number again
        seq, prev = taken.seq, taken.sha256
    try:
        store.put(head_key(level), encode({"seq": entry.seq, "sha256": entry.sha256}))
    except StoreError as err:  # a hint only: the chain itself is complete
        log.warning("could not update the ledger head hint of %s: %s", level, err)
    _mirror(level, entry)
    return entry


def record_arrival(store: Store, level: str, record: dict[str, Any]) -> Entry | None:
    """Append the arrival ``record`` (kind in ``ARRIVALS``, dataset_id, version, ...) unless
    the level's ledger already records this version; return the new entry (``None``: it was
    recorded before).  Callers hold the dataset's lease.

    A kill between any two writes is safe: the version's index object is written *before* the
    entry, as a pending marker naming where the chain ended, so a re-run that finds the marker
    reads the few entries appended since and completes the index instead of recording the
    version a second time (a ledger with two entries for one commit).
    """
    did, version = str(record["dataset_id"]), int(record["version"])
    key = index_key(level, did, version)
    marker = _read_marker(store, key)
    if marker is None:
        marker = {"pending": True, "after": _head_seq(store, level)}
        if not store.put_if_absent(key, encode(marker)):
            marker = _read_marker(store, key) or marker
    if not marker.get("pending"):
        return None
    entry = _find_arrival(store, level, did, version, after=int(marker.get("after", 0)))
    new = entry is None
    if entry is None:
        entry = append(store, level, record)
    try:
        store.put(key, encode({"seq": entry.seq, "sha256": entry.sha256}))
    except StoreError as err:  # the marker stays pending: the next recorder finds the entry
        log.warning("could not complete the ledger index of %s v%d: %s", level, version, err)
    return entry if new else None


def _read_marker(store: Store, key: str) -> dict[str, Any] | None:
    try:
        body = json.loads(store.get(key))
    except KeyError:
        return None
    except ValueError:  # a damaged index object: treat as pending from the start
        return {"pending": True, "after": 0}
    return body if isinstance(body, dict) else {"pending": True, "after": 0}


def _head_seq(store: Store, level: str) -> int:
    """Where the head hint says the chain ends (0: no hint); never past the real end."""
    try:
        return int(json.loads(store.get(head_key(level)))["seq"])
    except (KeyError, ValueError, TypeError):
        return 0


def _find_arrival(store: Store, level: str, did: str, version: int, *, after: int) -> Entry | None:
    """The arrival entry of ``did`` v``version`` among the entries after ``after`` (the chain
    is contiguous: read forward until the first number not written)."""
    seq = after + 1
    while (entry := _get_entry(store, level, seq)) is not None:
        b = entry.body
        if (
            b.get("kind") in ARRIVALS
            and str(b.get("dataset_id", "")).lower() == did.lower()
            and b.get("version") == version
        ):
            return entry
        seq += 1
    return None


def recorded(store: Store, level: str, dataset_id: str, version: int) -> bool:
    """Whether a ledger entry records the arrival of this version (one request, via the index;
    a pending marker of a recorder killed mid-way counts as not recorded)."""
    marker = _read_marker(store, index_key(level, dataset_id, version))
    return marker is not None and not marker.get("pending")


def read(store: Store, level: str) -> list[Entry]:
    """Every entry of ``level``'s ledger, by sequence number (one listing, one read each, as
    many at once as the store transfers: 16 on S3)."""
    from pipelines.store.base import read_many

    entries = []
    prefix = f"{level}/{LEDGER_DIR}/"
    keys = [i.key for i in store.list_prefix(prefix) if _ENTRY.match(i.key[len(prefix) :])]
    blobs = read_many(store, keys)
    for key in keys:
        m = _ENTRY.match(key[len(prefix) :])
        raw = blobs.get(key)
        if m is None or raw is None:
            continue
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        entries.append(Entry(int(m.group(1)), raw, body if isinstance(body, dict) else {}))
    return sorted(entries, key=lambda e: e.seq)


def chain_problems(level: str, entries: list[Entry]) -> list[str]:
    """What is wrong with the chain: gaps, unreadable entries, broken links (one line each)."""
    problems = []
    prev, expected = GENESIS, 1
    for e in entries:
        where = f"{entry_key(level, e.seq)}"
        if e.seq != expected:
            problems.append(
                f"{where}: ledger entries {expected}..{e.seq - 1} are missing (removed from the chain)"
            )
        if not e.body or e.body.get("format") != LEDGER_FORMAT or e.body.get("seq") != e.seq:
            problems.append(f"{where}: not a ledger entry of this position (altered or replaced)")
        elif e.body.get("prev") != prev:
            problems.append(
                f"{where}: chain broken: its 'prev' is not the sha256 of the entry before it "
                "(an earlier entry was altered, removed or replaced)"
            )
        elif e.body.get("level") != level:
            problems.append(f"{where}: entry names another level (copied from another ledger)")
        prev, expected = e.sha256, e.seq + 1
    return problems


# -------------------------------------------------------------------------------- mirror
def _mirror(level: str, entry: Entry) -> None:
    target = os.environ.get(MIRROR_ENV)
    if not target:
        return
    try:
        if "://" in target:
            from pipelines.store import open_store

            open_store(target).put_if_absent(entry_key(level, entry.seq), entry.raw)
        else:
            with open(target, "a", encoding="ascii") as f:
                f.write(f"{level} {entry.seq} {entry.sha256}\n")
    except (OSError, StoreError) as err:
        # the commit stands; the witness is behind, which `binds verify --mirror` reports
        log.warning("could not mirror ledger entry %s %d: %s", level, entry.seq, err)


def mirror_problems(target: str, chains: dict[str, list[Entry]]) -> list[str]:
    """Compare the ledgers with a mirror (a file of ``level seq sha256`` lines, or a store URL)."""
    problems = []
    witnessed: dict[tuple[str, int], str] = {}
    if "://" in target:
        from pipelines.store import open_store

        mirror = open_store(target, read_only=True)
        for level in chains:
            for e in read(mirror, level):
                witnessed[(level, e.seq)] = e.sha256
    else:
        try:
            lines = open(target, encoding="ascii").read().split("\n")
        except OSError as err:
            return [f"{target}: ledger mirror not readable ({err.strerror or err})"]
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                witnessed[(parts[0], int(parts[1]))] = parts[2]
    for (level, seq), sha in sorted(witnessed.items()):
        if level not in chains:
            continue
        ours = {e.seq: e for e in chains[level]}
        if seq not in ours:
            problems.append(f"{entry_key(level, seq)}: in the mirror but missing from the store")
        elif ours[seq].sha256 != sha:
            problems.append(f"{entry_key(level, seq)}: differs from the mirror's copy (rewritten)")
    return problems
