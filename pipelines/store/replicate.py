"""Preservation copies: ``binds replicate --to URL`` keeps a second store in step with this one.

What is copied, in this order (so the copy is a valid store at every moment):

1. every **committed** version (its ``manifest.json`` exists) of every level, and of the held
   tree ``_embargo/<level>/``; an upload in progress (no manifest) is never copied. Each object
   is read from the source and its sha256 checked against the source manifest *before* it is
   written (a damaged source is reported, never propagated); then the copy is made sure to hold
   those bytes (:meth:`Store.put_checked`): on S3 the PUT carries the bytes' MD5
   (``Content-MD5``) and sha256 (``x-amz-checksum-sha256``), which the server checks against
   what it received (a body altered on the way is refused: BadDigest), and its answer is
   checked (the ETag is the MD5 of what it stored; a sha256 checksum it returns is the
   manifest's); in a folder the bytes hashed are the bytes written.  Objects over
   ``IN_MEMORY_MAX``, and every object with ``read_back``, are read back from the copy.  A
   write refused or got wrong is sent again (``PUT_ATTEMPTS``), then reported.  The copy's
   ``manifest.json`` is written last, with an exclusive put, only once every object of the
   version has been verified: the same commit rule as a publish;
2. the ledger of each level (``<level>/_ledger/``: entries, index, head hint);
3. the catalog of each level (``<level>/catalog/``) and the registry (``_registry/``).

The ledger and the catalog are listed *before* the versions: a ledger entry or catalog row is
only ever written after its version's commit, so everything they name is in the listing that
follows, and the copy never holds an entry for a version it has not got.

Idempotent and resumable: a version whose manifest is in the copy is skipped with no read
(size and, where both sides report it, the MD5 ETag compared); an object of an unfinished
version already in the copy with the manifest's size is read back and kept when its sha256
matches: a resumed copy re-sends nothing already there.  Nothing is ever deleted from the copy.
Not copied: scratch (``_claims/``, ``_leases/``, probes) and ``_fixity/`` (each store keeps the
log of its own checks: a sweep of the copy writes into the copy).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.store import layout
from pipelines.store.base import (
    IntegrityError,
    ObjectInfo,
    Store,
    StoreError,
    UploadItem,
    sha256_of,
)
from pipelines.store.identifiers import ACCESS_LEVELS

log = logging.getLogger(__name__)

#: the trees that hold versions: the levels themselves, and the versions held under embargo
TREES = ("", "_embargo/")
REGISTRY_PREFIX = "_registry/"
#: objects up to this size are copied through memory; larger ones through a temporary file
#: (memory stays bounded by workers x this, whatever the object sizes)
IN_MEMORY_MAX = 64 << 20
#: a write the copy's store refused (BadDigest) or got wrong is sent this many times at most
PUT_ATTEMPTS = 3
_WRITE_ONCE = re.compile(r"/_ledger/(\d{12}\.json|index/[0-9a-f]{64}-v\d+\.json)$")


@dataclass(frozen=True, slots=True)
class VersionRef:
    """One committed version of the source: its key prefix (ends with ``/``) and manifest info."""

    prefix: str
    manifest: ObjectInfo


@dataclass(slots=True)
class ReplicateReport:
    versions: int = 0  # committed versions in the source
    versions_copied: int = 0  # committed in the copy by this run
    versions_present: int = 0  # already committed in the copy
    objects_copied: int = 0
    bytes_copied: int = 0
    objects_kept: int = 0  # already in the copy (read back, sha256 matched)
    objects_resent: int = 0  # writes the copy's store refused or got wrong, sent again
    other_copied: int = 0  # ledger entries, catalog rows, registry entries written
    problems: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "versions",
                "versions_copied",
                "versions_present",
                "objects_copied",
                "bytes_copied",
                "objects_kept",
                "objects_resent",
                "other_copied",
                "problems",
                "unreadable",
            )
        }


def version_prefix_of(key: str, base: str) -> str | None:
    """The version prefix when ``key`` is ``<base><level>/<modality>/<id>/v<N>/manifest.json``."""
    parts = key[len(base) :].split("/")
    if (
        len(parts) == 5
        and parts[4] == layout.MANIFEST
        and parts[0] in ACCESS_LEVELS
        and not parts[1].startswith("_")
        and parts[1] != layout.CATALOG_DIR
        and not parts[2].startswith("_")
        and layout.parse_version(parts[3]) is not None
    ):
        return key[: -len(layout.MANIFEST)]
    return None


@dataclass(slots=True)
class _Tree:
    """One listing of a level (under a tree): its committed versions and loose objects."""

    objects: dict[str, ObjectInfo] = field(default_factory=dict)
    versions: list[VersionRef] = field(default_factory=list)
    ledger: list[ObjectInfo] = field(default_factory=list)
    catalog: list[ObjectInfo] = field(default_factory=list)


def _scan(store: Store, base: str, level: str) -> _Tree:
    """Ledger and catalog first, then the versions (see the module docstring for why)."""
    tree = _Tree()
    root = f"{base}{level}/"
    tree.catalog = list(store.list_prefix(f"{root}{layout.CATALOG_DIR}/"))
    tree.ledger = list(store.list_prefix(f"{root}_ledger/"))
    for info in store.list_prefix(root):
        tree.objects[info.key] = info
        vprefix = version_prefix_of(info.key, base)
        if vprefix is not None:
            tree.versions.append(VersionRef(vprefix, info))
    return tree


def committed_versions(
    store: Store, *, levels: Iterable[str] = ACCESS_LEVELS
) -> tuple[list[VersionRef], list[str]]:
    """Every committed version of ``store`` (both trees), and the levels it may not list."""
    found: list[VersionRef] = []
    denied: list[str] = []
    for base in TREES:
        for level in levels:
            try:
                found += [
                    VersionRef(p, i)
                    for i in store.list_prefix(f"{base}{level}/")
                    if (p := version_prefix_of(i.key, base)) is not None
                ]
            except StoreError as err:
                if not err.denied:
                    raise
                denied.append(base + level)
    return found, denied


def manifest_objects(manifest: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(path inside the version, size, sha256) of every object a manifest lists."""
    listed = [*(manifest.get("files") or []), *(manifest.get("documents") or [])]
    if manifest.get("metadata"):
        listed.append(manifest["metadata"])
    return [(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in listed]


class CopyError(Exception):
    """One object could not be copied faithfully (the message names it and why)."""


def copy_verified(
    source: Store,
    dest: Store,
    key: str,
    size: int,
    sha256: str,
    *,
    dest_key: str | None = None,
    read_back: bool = False,
    on_resend: Callable[[], None] | None = None,
) -> int:
    """Copy ``key`` when the source's bytes match (size, sha256), and make sure the copy holds
    them: :meth:`Store.put_checked` (S3: the server checks the PUT's Content-MD5 and sha256
    checksum, and its answer is checked; a folder: the hashed bytes are written); objects over
    ``IN_MEMORY_MAX`` and ``read_back``: the copy is read back.  A write the copy's store
    refused or got wrong (:class:`IntegrityError`) is sent again, up to ``PUT_ATTEMPTS`` times.

    Returns the bytes written. Raises :class:`CopyError` when the source is missing or damaged
    (nothing written) or the copy does not hold the manifest's bytes.
    """
    dest_key = dest_key or key
    if size > IN_MEMORY_MAX:
        _copy_large(source, dest, key, size, sha256, dest_key)
        if sha256_of(dest, dest_key) != (size, sha256):
            raise CopyError(f"{dest_key}: the copy does not read back as written (sha256 differs)")
        return size
    try:
        data = source.get(key)
    except KeyError:
        raise CopyError(f"{key}: missing in the source (not copied)") from None
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise CopyError(
            f"{key}: the source's bytes do not match its manifest (damaged; not copied: "
            "run `binds verify --sweep`)"
        )
    for attempt in range(1, PUT_ATTEMPTS + 1):
        try:
            dest.put_checked(dest_key, data, sha256=sha256, read_back=read_back)
            return size
        except IntegrityError as err:
            log.warning("%s (attempt %d of %d)", err, attempt, PUT_ATTEMPTS)
            if attempt == PUT_ATTEMPTS:
                raise CopyError(
                    f"{dest_key}: the copy did not receive the bytes sent, {PUT_ATTEMPTS} "
                    f"times ({err}); not committed"
                ) from None
            if on_resend:
                on_resend()
    raise AssertionError("unreachable")  # pragma: no cover


def _copy_large(
    source: Store, dest: Store, key: str, size: int, sha256: str, dest_key: str
) -> None:
    fd, name = tempfile.mkstemp(prefix=".binds-replicate-")
    path = Path(name)
    try:
        h = hashlib.sha256()
        n = 0
        with os.fdopen(fd, "wb") as f:
            try:
                for chunk in source.open_read(key):
                    h.update(chunk)
                    n += len(chunk)
                    f.write(chunk)
            except KeyError:
                raise CopyError(f"{key}: missing in the source (not copied)") from None
        if n != size or h.hexdigest() != sha256:
            raise CopyError(
                f"{key}: the source's bytes do not match its manifest (damaged; not copied: "
                "run `binds verify --sweep`)"
            )
        dest.upload_files([UploadItem(key=dest_key, path=path, size=size, sha256=sha256)])
    finally:
        path.unlink(missing_ok=True)


def _same_small_object(source: Store, dest: Store, src: ObjectInfo, dst: ObjectInfo | None) -> bool:
    """Whether the copy already holds ``src``'s bytes (loose objects: ledger, catalog, registry)."""
    if dst is None or dst.size != src.size:
        return False
    if _WRITE_ONCE.search(src.key):
        return True  # ledger entries and their index are written once: same size, same entry
    if src.etag and dst.etag and "-" not in src.etag and "-" not in dst.etag:
        return src.etag == dst.etag  # both S3: the servers' MD5s of what they hold
    try:
        return source.get(src.key) == dest.get(dst.key)
    except KeyError:
        return False


def replicate(
    source: Store,
    dest: Store,
    *,
    levels: Iterable[str] = ACCESS_LEVELS,
    workers: int = 16,
    on_bytes: Callable[[int], None] | None = None,
    read_back: bool = False,
) -> ReplicateReport:
    """Bring ``dest`` in step with ``source`` (see the module docstring); never deletes anything.

    ``read_back``: read every object copied back from the copy as well (see
    :func:`copy_verified`).

    ``workers`` bounds the objects in flight (S3 requests, and memory: each in-flight object of
    up to 64 MiB is held once).  Problems (a damaged source object, a copy that differs) are
    reported, and that version is not committed in the copy; everything else goes on.
    """
    dest._check_writable()
    report = ReplicateReport()
    levels = list(levels)
    loose: list[ObjectInfo] = list(_list_or_empty(source, REGISTRY_PREFIX))
    pending: deque[tuple[VersionRef, bytes, list[Future[int | None]]]] = deque()
    in_flight, max_queued = 0, 64 * max(1, workers)
    lock = threading.Lock()

    def resent() -> None:
        with lock:
            report.objects_resent += 1

    def copy_object(key: str, size: int, sha: str, present: ObjectInfo | None) -> int | None:
        if present is not None and present.size == size and sha256_of(dest, key) == (size, sha):
            with lock:
                report.objects_kept += 1
            return None
        n = copy_verified(source, dest, key, size, sha, read_back=read_back, on_resend=resent)
        with lock:
            report.objects_copied += 1
            report.bytes_copied += n
        if on_bytes:
            on_bytes(n)
        return n

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for base in TREES:
            for level in levels:
                try:
                    src = _scan(source, base, level)
                except StoreError as err:
                    if not err.denied:
                        raise
                    report.unreadable.append(base + level)
                    continue
                dst = {i.key: i for i in _list_or_empty(dest, f"{base}{level}/")}
                loose += src.ledger + src.catalog
                for ref in src.versions:
                    report.versions += 1
                    there = dst.get(ref.manifest.key)
                    if there is not None:
                        report.versions_present += 1
                        _check_same_manifest(source, dest, ref, there, report)
                        continue
                    raw = source.get(ref.manifest.key)
                    try:
                        objects = manifest_objects(json.loads(raw))
                    except (ValueError, KeyError, TypeError):
                        report.problems.append(
                            f"{ref.manifest.key}: not a readable manifest (version not copied)"
                        )
                        continue
                    dest.remove_stale_temporaries(ref.prefix)  # what a killed copy left
                    futures = [
                        pool.submit(
                            copy_object, ref.prefix + path, size, sha, dst.get(ref.prefix + path)
                        )
                        for path, size, sha in objects
                    ]
                    pending.append((ref, raw, futures))
                    in_flight += len(futures)
                    # memory and the queue stay bounded whatever the store's size: commit the
                    # oldest versions (in order) before queueing more
                    while in_flight > max_queued and pending:
                        in_flight -= _commit_copy(dest, *pending.popleft(), report)
        while pending:
            _commit_copy(dest, *pending.popleft(), report)
    _copy_loose(source, dest, loose, report)
    report.problems.sort()
    return report


def _commit_copy(
    dest: Store,
    ref: VersionRef,
    raw: bytes,
    futures: list[Future[int | None]],
    report: ReplicateReport,
) -> int:
    """Wait for a version's objects; commit its manifest in the copy when all were verified.

    Returns how many objects it waited for."""
    failed = _collect(futures, report)
    if failed:
        report.problems.append(
            f"{ref.prefix}: not committed in the copy ({failed} object(s) failed)"
        )
        return len(futures)
    # the commit of the copy: last, exclusive, and only after every object was verified
    if dest.put_if_absent(ref.manifest.key, raw) or dest.get(ref.manifest.key) == raw:
        report.versions_copied += 1
    else:
        report.problems.append(f"{ref.prefix}: the copy holds another manifest for this version")
    return len(futures)


def _collect(futures: list[Future[int | None]], report: ReplicateReport) -> int:
    failed = 0
    for fut in futures:
        try:
            fut.result()
        except CopyError as err:
            failed += 1
            report.problems.append(str(err))
    return failed


def _check_same_manifest(
    source: Store, dest: Store, ref: VersionRef, there: ObjectInfo, report: ReplicateReport
) -> None:
    if there.size == ref.manifest.size and (
        not (there.etag and ref.manifest.etag) or there.etag == ref.manifest.etag
    ):
        return
    if source.get(ref.manifest.key) != dest.get(there.key):
        report.problems.append(
            f"{ref.prefix}: the copy holds another manifest for this version "
            "(a version replaced in one of the stores: compare with `binds verify` on both)"
        )


def _copy_loose(
    source: Store, dest: Store, loose: list[ObjectInfo], report: ReplicateReport
) -> None:
    """Ledger entries, catalog rows, registry entries: written when the copy differs."""
    dst: dict[str, ObjectInfo] = {}
    for prefix in sorted({i.key.rsplit("/", 1)[0] + "/" for i in loose}):
        dst.update(
            {
                i.key: i
                for i in _list_or_empty(dest, prefix)
                if i.key.count("/") == prefix.count("/")
            }
        )
    for info in loose:
        if _same_small_object(source, dest, info, dst.get(info.key)):
            continue
        try:
            data = source.get(info.key)
        except KeyError:
            continue  # removed since the listing (a catalog row replaced by a compaction)
        if _WRITE_ONCE.search(info.key):
            if not dest.put_if_absent(info.key, data) and dest.get(info.key) != data:
                report.problems.append(
                    f"{info.key}: the copy holds another ledger entry at this position"
                )
                continue
        else:
            dest.put(info.key, data)
        report.other_copied += 1


def _list_or_empty(store: Store, prefix: str) -> Iterable[ObjectInfo]:
    try:
        return list(store.list_prefix(prefix))
    except StoreError as err:
        if err.denied:
            return []
        raise


@dataclass(frozen=True, slots=True)
class Lag:
    """Committed versions of the source that the copy has not got (yet)."""

    versions: list[str]  # version prefixes
    oldest_created: str | None  # ISO time of the oldest one's commit, when readable

    @property
    def count(self) -> int:
        return len(self.versions)


def lag(source: Store, copy: Store, *, levels: Iterable[str] = ACCESS_LEVELS) -> Lag:
    """The replication lag: which committed versions of ``source`` have no manifest in ``copy``.

    One listing of each side; reads only the manifests of the lagging versions (their dates).
    """
    levels = list(levels)
    ours, _ = committed_versions(source, levels=levels)
    theirs, _ = committed_versions(copy, levels=levels)
    have = {v.manifest.key for v in theirs}
    missing = sorted(v.prefix for v in ours if v.manifest.key not in have)
    created = []
    for prefix in missing:
        try:
            created.append(str(json.loads(source.get(prefix + layout.MANIFEST)).get("created")))
        except (KeyError, ValueError):
            continue
    return Lag(missing, min(created) if created else None)


def watch(
    source: Store,
    dest: Store,
    *,
    interval_s: float,
    rounds: int | None = None,
    on_round: Callable[[ReplicateReport], None] | None = None,
    **kwargs: Any,
) -> None:
    """Replicate, sleep ``interval_s``, again (``rounds`` times, or until interrupted)."""
    done = 0
    while rounds is None or done < rounds:
        report = replicate(source, dest, **kwargs)
        if on_round:
            on_round(report)
        done += 1
        if rounds is None or done < rounds:
            time.sleep(interval_s)


__all__ = [
    "CopyError",
    "Lag",
    "ReplicateReport",
    "VersionRef",
    "committed_versions",
    "copy_verified",
    "lag",
    "manifest_objects",
    "replicate",
    "version_prefix_of",
    "watch",
]
