"""Fixity sweeps: re-read committed objects, log every check, repair from a verified copy.

``binds verify --sweep`` reads the objects of every committed version (all of them, or the
day's slice of a rotation, or those whose last recorded check is older than N days), compares
each with the sha256 its manifest records (and each manifest with the sha256 its ledger entry
records), and appends one event per check to the level's fixity log::

    <level>/_fixity/<YYYY-MM-DD>/<YYYYMMDDTHHMMSSZ>-<run id>-<part>.jsonl
    _embargo/<level>/_fixity/...            (versions held under embargo)

Each log object is written once (put-if-absent, a new name per sweep and part): a sweep never
rewrites what another sweep wrote.  One JSON line per event, PREMIS-like (docs/formats/store.md)::

    {"event": "fixity check", "object": "open/cryoem/ds1/v1/data/x", "algorithm": "sha256",
     "expected": "<hex>", "observed": "<hex>", "size_expected": 10, "size_observed": 10,
     "outcome": "pass", "time": "2026-12-04T00:10:00Z", "agent": "binds-pipelines 0.1.0 ...",
     "run": "<run id>"}

``--repair-from URL``: an object that is missing, truncated or damaged is restored from the copy
only after the copy's bytes match the sha256 the manifest (or, for a manifest, the ledger)
records; the primary is then read back. A copy that is wrong too is never used: the event says
so and the object stays damaged (exit 1).

Rotation (``sample``): versions fall in ``round(100 / sample)`` slices by the sha256 of their
key prefix; day *d* (days since 1970-01-01, UTC, or ``BINDS_NOW``) reads the manifest and the
objects of the versions of slice ``d mod slices``. Run daily, every object is read once per
``slices`` days (1.2 % -> 83 days), the same day always reads the same objects whichever
machine runs the sweep, and a day's requests are its slice's (no manifest of another slice is
read).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipelines.store import layout, ledger
from pipelines.store.base import Store, StoreError, sha256_of
from pipelines.store.identifiers import ACCESS_LEVELS
from pipelines.store.replicate import (
    TREES,
    CopyError,
    copy_verified,
    manifest_objects,
    version_prefix_of,
)

log = logging.getLogger(__name__)

FIXITY_DIR = "_fixity"
FIXITY_FORMAT = "binds-fixity"
#: events per log object: a sweep killed half-way keeps every part written before
EVENTS_PER_PART = 5000
PASS, FAIL, MISSING = "pass", "fail", "missing"


def agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("binds-pipelines")
    except PackageNotFoundError:
        v = "unknown"
    return f"binds-pipelines {v} (binds verify --sweep)"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def rotation_slices(sample_percent: float) -> int:
    """How many daily slices a ``sample_percent`` rotation has (the period in days)."""
    if not 0 < sample_percent <= 100:
        raise ValueError("sample must be in (0, 100]")
    return max(1, round(100 / sample_percent))


def in_todays_slice(key: str, slices: int, day: dt.date) -> bool:
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % slices
    return bucket == (day - dt.date(1970, 1, 1)).days % slices


@dataclass(slots=True)
class SweepReport:
    run: str
    checked: int = 0
    passed: int = 0
    bytes: int = 0
    damaged: list[str] = field(default_factory=list)  # "key: what" per failed check
    repaired: list[str] = field(default_factory=list)
    unrepaired: list[str] = field(default_factory=list)  # "key: why"
    log_keys: list[str] = field(default_factory=list)
    events: int = 0
    unreadable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unrepaired

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "run",
                "checked",
                "passed",
                "bytes",
                "damaged",
                "repaired",
                "unrepaired",
                "log_keys",
                "events",
                "unreadable",
            )
        }


class _Log:
    """The fixity log of one level, for one sweep: buffered, written in parts, never rewritten."""

    def __init__(self, store: Store, root: str, run: str, day: dt.date, report: SweepReport):
        self.store, self.report = store, report
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.base = f"{root}{FIXITY_DIR}/{day.isoformat()}/{stamp}-{run}"
        self.events: list[dict[str, Any]] = []
        self.part = 0
        self.lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(event)
            if len(self.events) >= EVENTS_PER_PART:
                self._flush()

    def close(self) -> None:
        with self.lock:
            if self.events:
                self._flush()

    def _flush(self) -> None:
        self.part += 1
        key = f"{self.base}-{self.part:04d}.jsonl"
        body = "".join(json.dumps(e, sort_keys=True) + "\n" for e in self.events).encode()
        if not self.store.put_if_absent(key, body):  # a name is never reused: a new run id
            raise StoreError(f"{key}: fixity log object exists already (not rewritten)")
        self.report.log_keys.append(key)
        self.report.events += len(self.events)
        self.events = []


def recently_passed(store: Store, root: str, *, days: int, today: dt.date) -> set[str]:
    """Keys whose check passed within the last ``days`` days (the log objects of those days)."""
    since = today - dt.timedelta(days=days)
    keys: set[str] = set()
    for name in store.list_dirs(f"{root}{FIXITY_DIR}/"):
        try:
            day = dt.date.fromisoformat(name)
        except ValueError:
            continue
        if day <= since:
            continue
        for info in store.list_prefix(f"{root}{FIXITY_DIR}/{name}/"):
            for line in store.get(info.key).splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("outcome") == PASS or (
                    event.get("event") == "repair" and event.get("outcome") == "success"
                ):
                    keys.add(str(event.get("object")))
    return keys


def read_log(store: Store, root: str) -> list[dict[str, Any]]:
    """Every event of a level's fixity log (``root`` is ``<level>/``), oldest log first."""
    events = []
    for info in store.list_prefix(f"{root}{FIXITY_DIR}/"):
        events += [json.loads(line) for line in store.get(info.key).splitlines() if line.strip()]
    return events


def _recorded(entries: list[ledger.Entry]) -> dict[tuple[str, str, int], str]:
    """(modality, id, version) -> the manifest sha256 the ledger records, for versions held now."""
    held: dict[tuple[str, str, int], str] = {}
    for e in entries:
        b = e.body
        try:
            key = (str(b["modality"]), str(b["dataset_id"]), int(b["version"]))
        except (KeyError, TypeError, ValueError):
            continue
        if b.get("kind") in ledger.ARRIVALS and b.get("manifest_sha256"):
            held[key] = str(b["manifest_sha256"])
        elif b.get("kind") == "move-out":
            held.pop(key, None)
    return held


def sweep(
    store: Store,
    *,
    sample_percent: float | None = None,
    older_than_days: int | None = None,
    repair_from: Store | None = None,
    levels: Iterable[str] = ACCESS_LEVELS,
    workers: int = 8,
    today: dt.date | None = None,
    on_object: Callable[[str], None] | None = None,
) -> SweepReport:
    """Check, log and (with ``repair_from``) repair; see the module docstring.

    ``today`` (default: the UTC date) picks the rotation slice and the log's date folder; the
    CLI passes ``BINDS_NOW`` when set.
    """
    sweeper = _Sweeper(
        store,
        repair_from=repair_from,
        day=today or dt.datetime.now(dt.UTC).date(),
        slices=rotation_slices(sample_percent) if sample_percent is not None else None,
        on_object=on_object,
    )
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for base in TREES:
            for level in levels:
                sweeper.level(pool, base, level, older_than_days=older_than_days)
    sweeper.report.damaged.sort()
    sweeper.report.unrepaired.sort()
    return sweeper.report


class _Sweeper:
    """One sweep: its run id, its report, and the steps (check, repair, manifests, a level)."""

    def __init__(
        self,
        store: Store,
        *,
        repair_from: Store | None,
        day: dt.date,
        slices: int | None,
        on_object: Callable[[str], None] | None,
    ) -> None:
        self.store, self.repair_from, self.day, self.slices = store, repair_from, day, slices
        self.on_object = on_object
        # sortable: milliseconds since the epoch, then randomness (two sweeps never share a name)
        self.run = f"{time.time_ns() // 1_000_000:012x}{uuid.uuid4().hex[:8]}"
        self.report = SweepReport(run=self.run)
        self.agent = agent()
        self.lock = threading.Lock()

    def event(
        self,
        kind: str,
        key: str,
        expected: tuple[int | None, str],
        got: tuple[int, str] | None,
        outcome: str,
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "format": FIXITY_FORMAT,
            "event": kind,
            "object": key,
            "algorithm": "sha256",
            "expected": expected[1],
            "size_expected": expected[0],
            "observed": got[1] if got else None,
            "size_observed": got[0] if got else None,
            "outcome": outcome,
            "time": _now(),
            "agent": self.agent,
            "run": self.run,
            **extra,
        }

    def _count(self, *, damaged: str | None = None, unrepaired: str | None = None) -> None:
        with self.lock:
            if damaged:
                self.report.damaged.append(damaged)
            if unrepaired:
                self.report.unrepaired.append(unrepaired)

    # -- objects ----------------------------------------------------------------------------
    def check(self, key: str, size: int, sha: str, flog: _Log) -> None:
        got = sha256_of(self.store, key)
        if self.on_object:
            self.on_object(key)
        outcome = PASS if got == (size, sha) else (MISSING if got is None else FAIL)
        flog.add(self.event("fixity check", key, (size, sha), got, outcome))
        with self.lock:
            self.report.checked += 1
            self.report.bytes += got[0] if got else 0
            if outcome == PASS:
                self.report.passed += 1
                return
        if got is None:
            what = "missing"
        elif got[0] != size:
            what = f"truncated or grown: {got[0]} bytes, manifest says {size}"
        else:
            what = "sha256 differs from the manifest (corrupted)"
        self._count(damaged=f"{key}: {what}")
        if self.repair_from is None:
            self._count(unrepaired=f"{key}: {what} (no copy given: --repair-from URL)")
            return
        self.repair(key, size, sha, flog)

    def repair(self, key: str, size: int, sha: str, flog: _Log) -> None:
        """Restore ``key`` from the copy, only when the copy's bytes are the manifest's."""
        assert self.repair_from is not None
        source = self.repair_from.url
        try:
            copy_got = sha256_of(self.repair_from, key)
        except StoreError as err:  # the copy unreachable: this object stays as it is, logged
            flog.add(self.event("repair", key, (size, sha), None, "failure", detail=str(err)))
            self._count(unrepaired=f"{key}: not repaired: the copy could not be read ({err})")
            return
        if copy_got != (size, sha):
            why = "missing in the copy too" if copy_got is None else "the copy is damaged too"
            flog.add(
                self.event(
                    "repair",
                    key,
                    (size, sha),
                    copy_got,
                    "failure",
                    source=source,
                    detail=f"not repaired: {why}",
                )
            )
            self._count(unrepaired=f"{key}: not repaired: {why}")
            return
        try:
            copy_verified(self.repair_from, self.store, key, size, sha, read_back=True)
        except CopyError as err:
            flog.add(
                self.event(
                    "repair", key, (size, sha), None, "failure", source=source, detail=str(err)
                )
            )
            self._count(unrepaired=f"{key}: not repaired: {err}")
            return
        flog.add(self.event("repair", key, (size, sha), (size, sha), "success", source=source))
        with self.lock:
            self.report.repaired.append(key)

    # -- manifests --------------------------------------------------------------------------
    def manifest(
        self, vprefix: str, expected: str | None, flog: _Log
    ) -> tuple[dict[str, Any] | None, bytes | None]:
        """The version's manifest (the copy's when ours is damaged and the copy's matches the
        ledger), and the bytes to restore once its files are whole (the manifest goes last)."""
        key = vprefix + layout.MANIFEST
        raw = _get_or_none(self.store, key)
        if expected is None:  # not recorded in the ledger: `binds verify` reports that
            return (_parse(raw) if raw is not None else None), None
        got = (len(raw), hashlib.sha256(raw).hexdigest()) if raw is not None else None
        outcome = PASS if got and got[1] == expected else (MISSING if got is None else FAIL)
        flog.add(
            self.event("fixity check", key, (None, expected), got, outcome, reference="ledger")
        )
        with self.lock:
            self.report.checked += 1
            if outcome == PASS and raw is not None:
                self.report.passed += 1
                return _parse(raw), None
        what = "missing" if got is None else "sha256 differs from the ledger's (altered)"
        self._count(damaged=f"{key}: {what}")
        if self.repair_from is None:
            self._count(unrepaired=f"{key}: {what} (no copy given: --repair-from URL)")
            return None, None
        theirs = _get_or_none(self.repair_from, key)
        if theirs is None or hashlib.sha256(theirs).hexdigest() != expected:
            why = "missing in the copy too" if theirs is None else "the copy is damaged too"
            copy_got = (len(theirs), hashlib.sha256(theirs).hexdigest()) if theirs else None
            flog.add(
                self.event(
                    "repair",
                    key,
                    (None, expected),
                    copy_got,
                    "failure",
                    source=self.repair_from.url,
                    detail=f"not repaired: {why}",
                )
            )
            self._count(unrepaired=f"{key}: not repaired: {why}")
            return None, None
        return _parse(theirs), theirs

    def restore_manifest(self, vprefix: str, data: bytes, flog: _Log) -> None:
        key = vprefix + layout.MANIFEST
        expected = (len(data), hashlib.sha256(data).hexdigest())
        if any(u.startswith(vprefix) for u in self.report.unrepaired):
            detail = "not restored: files of this version are still damaged"
            flog.add(self.event("repair", key, expected, None, "failure", detail=detail))
            self._count(unrepaired=f"{key}: not restored (files of the version still damaged)")
            return
        self.store.put(key, data)
        got = sha256_of(self.store, key)
        ok = got == expected
        source = self.repair_from.url if self.repair_from else None
        flog.add(
            self.event("repair", key, expected, got, "success" if ok else "failure", source=source)
        )
        if ok:
            self.report.repaired.append(key)
        else:
            self._count(unrepaired=f"{key}: does not read back as written")

    # -- a level ----------------------------------------------------------------------------
    def level(
        self, pool: ThreadPoolExecutor, base: str, level: str, *, older_than_days: int | None
    ) -> None:
        """Check every committed (or ledger-recorded) version of one level; one log per level."""
        root = f"{base}{level}/"
        try:
            listing = [i.key for i in self.store.list_prefix(root)]
        except StoreError as err:
            if not err.denied:
                raise
            self.report.unreadable.append(base + level)
            return
        if not listing:
            return
        recorded = _recorded(ledger.read(self.store, f"{base}{level}"))
        vprefixes = {p for k in listing if (p := version_prefix_of(k, base)) is not None}
        vprefixes |= {f"{root}{m}/{d}/v{n}/" for (m, d, n) in recorded}
        skip = (
            recently_passed(self.store, root, days=older_than_days, today=self.day)
            if older_than_days is not None
            else set()
        )
        flog = _Log(self.store, root, self.run, self.day, self.report)
        futures = []
        restore: list[tuple[str, bytes]] = []
        for vprefix in sorted(vprefixes):
            if not self.in_rotation(vprefix):
                continue  # another day's slice: its manifest is not even read today
            parts = vprefix[len(root) :].split("/")
            expected = recorded.get((parts[0], parts[1], int(parts[2][1:])))
            manifest, pending = self.manifest(vprefix, expected, flog)
            if pending is not None:
                restore.append((vprefix, pending))
            for path, size, sha in manifest_objects(manifest) if manifest else []:
                key = vprefix + path
                # a manifest to restore: every file of its version is checked first
                if pending is not None or key not in skip:
                    futures.append(pool.submit(self.check, key, size, sha, flog))
        for fut in futures:
            fut.result()
        for vprefix, data in restore:
            self.restore_manifest(vprefix, data, flog)
        flog.close()

    def in_rotation(self, key: str) -> bool:
        return self.slices is None or in_todays_slice(key, self.slices, self.day)


def _get_or_none(store: Store, key: str) -> bytes | None:
    try:
        return store.get(key)
    except KeyError:
        return None


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


__all__ = ["FIXITY_DIR", "SweepReport", "read_log", "rotation_slices", "sweep"]
