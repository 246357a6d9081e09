"""``binds verify``: check that every committed version is what its level's ledger recorded.

Bytes and meaning:

* every file (and metadata.jsonld, the documents) against the manifest's size and sha256, and
  nothing added to a committed version;
* the manifest's sha256 against the ledger entry of its commit and the catalog row; the
  content digest recomputed from the listed files; the manifest's dataset id, version, level
  and modality against its key path;
* every ledger entry has its version, every version its entry and its catalog row, every
  catalog row its version; the ledger chain unbroken (and, with a mirror, equal to it);
* in a bucket with Object Lock, every committed object under retention.

Each level is listed once and each object read once (S3 requests grow with the objects, not
with the number of checks).  Findings name the version (its key prefix) and what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipelines.store import layout, ledger
from pipelines.store.base import ObjectInfo, Store, StoreError, read_many, sha256_of
from pipelines.store.identifiers import ACCESS_LEVELS

_CATALOG_ROW = re.compile(r"^([a-z][a-z0-9_]*)--(.+)--v([1-9][0-9]*)\.parquet$")


@dataclass(slots=True)
class VerifyReport:
    versions: int = 0
    files: int = 0
    bytes: int = 0
    ledger_entries: int = 0
    problems: list[str] = field(default_factory=list)
    #: levels these credentials may not list (a reader checks the levels it may read)
    unreadable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def recomputed_digest(manifest: dict[str, Any]) -> str:
    """The content digest of a manifest's files and experiment hash (as the publish made it)."""
    h = hashlib.sha256()
    for f in sorted(manifest.get("files") or [], key=lambda f: f["path"]):
        h.update(f"{f['path']}\t{f['size']}\t{f['sha256']}\n".encode())
    if manifest.get("experiment_sha256"):
        h.update(f"experiment\t{manifest['experiment_sha256']}\n".encode())
    return "sha256:" + h.hexdigest()


@dataclass(slots=True)
class _Level:
    """What one listing of a level shows: version folders, catalog rows, ledger entries."""

    name: str
    objects: dict[str, ObjectInfo] = field(default_factory=dict)
    # (modality, dataset, version) -> keys under that version folder
    versions: dict[tuple[str, str, int], list[str]] = field(default_factory=dict)
    catalog: dict[tuple[str, str, int], str] = field(default_factory=dict)


def _scan(store: Store, level: str) -> _Level:
    lv = _Level(level)
    for info in store.list_prefix(f"{level}/"):
        lv.objects[info.key] = info
        parts = info.key.split("/")
        if len(parts) == 3 and parts[1] == layout.CATALOG_DIR:
            m = _CATALOG_ROW.match(parts[2])
            if m:
                lv.catalog[(m.group(1), m.group(2), int(m.group(3)))] = info.key
            continue
        if len(parts) < 5 or parts[1].startswith("_") or parts[1] == layout.CATALOG_DIR:
            continue
        n = layout.parse_version(parts[3])
        if n is not None:
            lv.versions.setdefault((parts[1], parts[2], n), []).append(info.key)
    return lv


def verify(
    store: Store,
    *,
    dataset_id: str | None = None,
    version: int | None = None,
    workers: int = 8,
    on_file: Callable[[str], None] | None = None,
    levels: Iterable[str] = ACCESS_LEVELS,
    mirror: str | None = None,
) -> VerifyReport:
    """Check the committed versions (all, or of ``dataset_id`` / ``version``) and the ledgers.

    Reads everything it checks once: cost is the size of what is verified.
    """
    report = VerifyReport()
    jobs: list[tuple[str, int, str]] = []
    chains: dict[str, list[ledger.Entry]] = {}
    lock = _object_lock(store)

    def wanted(did: str, n: int) -> bool:
        return (dataset_id is None or did == dataset_id.lower()) and (
            version is None or n == version
        )

    for level in levels:
        try:
            lv = _scan(store, level)
        except StoreError as err:
            if not err.denied:
                raise
            report.unreadable.append(level)
            continue
        entries = _ledger_entries(store, lv)
        chains[level] = entries
        report.ledger_entries += len(entries)
        report.problems += ledger.chain_problems(level, entries)
        recorded = recorded_versions(level, entries, report)
        # every object below is read once, as many at once as the store transfers (16 on S3)
        row_keys = {k: ck for k, ck in lv.catalog.items() if wanted(k[1], k[2])}
        row_bytes = read_many(store, list(row_keys.values()))
        rows = {
            key: _row_sha(row_bytes[ck]) if ck in row_bytes else None
            for key, ck in row_keys.items()
        }
        candidates = sorted(
            k for k in set(lv.versions) | set(recorded) | set(lv.catalog) if wanted(k[1], k[2])
        )
        manifests = read_many(
            store,
            [
                f"{level}/{m}/{d}/v{n}/{layout.MANIFEST}"
                for (m, d, n) in candidates
                if f"{level}/{m}/{d}/v{n}/{layout.MANIFEST}" in lv.objects
            ],
        )
        for key in candidates:
            jobs += _check_version(store, lv, key, recorded.get(key), rows, manifests, report)
            if lock is not None and key in lv.versions and _committed(lv, key, manifests):
                vprefix = f"{level}/{key[0]}/{key[1]}/v{key[2]}/"
                report.problems += _retention_problems(store, vprefix, lv.versions[key])
    _check_files(store, jobs, report, workers=workers, on_file=on_file)
    if mirror:
        report.problems += ledger.mirror_problems(mirror, chains)
    report.problems.sort()
    return report


def _committed(lv: _Level, key: tuple[str, str, int], manifests: dict[str, bytes]) -> bool:
    """A version with a readable manifest (retention is checked on committed versions only)."""
    mkey = f"{lv.name}/{key[0]}/{key[1]}/v{key[2]}/{layout.MANIFEST}"
    try:
        return mkey in lv.objects and isinstance(json.loads(manifests.get(mkey, b"")), dict)
    except ValueError:
        return False


def _check_version(
    store: Store,
    lv: _Level,
    key: tuple[str, str, int],
    entry: ledger.Entry | None,
    rows: dict[tuple[str, str, int], str | None],
    manifests: dict[str, bytes],
    report: VerifyReport,
) -> list[tuple[str, int, str]]:
    """One version against its ledger entry, key path, catalog row and listing; returns the
    (key, size, sha256) of the files to read."""
    level = lv.name
    modality, did, n = key
    vprefix = f"{level}/{modality}/{did}/v{n}/"
    keys = lv.versions.get(key, [])
    mkey = vprefix + layout.MANIFEST
    if mkey not in lv.objects:
        if entry is not None:
            report.versions += 1
            what = "manifest.json deleted" if keys else "the whole version deleted"
            report.problems.append(
                f"{vprefix}: recorded in the ledger (entry {entry.seq}) but {what}"
            )
        elif key in lv.catalog:
            report.problems.append(
                f"{vprefix}: catalog row {lv.catalog[key]} has no committed version"
            )
        return []  # no manifest and never recorded: an upload in progress, not a version
    report.versions += 1
    raw = manifests[mkey] if mkey in manifests else store.get(mkey)
    sha = hashlib.sha256(raw).hexdigest()
    try:
        manifest = json.loads(raw)
        if not isinstance(manifest, dict):
            raise ValueError
    except ValueError:
        report.problems.append(f"{vprefix}: manifest.json is not valid JSON")
        return []
    _check_identity(vprefix, level, modality, did, n, manifest, report)
    _check_records(vprefix, key, entry, sha, manifest, lv, rows, report)
    jobs = []
    listed = {layout.MANIFEST}
    for f in [*(manifest.get("files") or []), *(manifest.get("documents") or [])]:
        jobs.append((vprefix + f["path"], f["size"], f["sha256"]))
        listed.add(f["path"])
    meta = manifest.get("metadata")
    if meta:
        jobs.append((vprefix + meta["path"], meta["size"], meta["sha256"]))
        listed.add(meta["path"])
    # a committed version never changes: anything else inside it was added afterwards
    for k in keys:
        if k[len(vprefix) :] not in listed:
            report.problems.append(
                f"{k}: not in the manifest (added after the commit; "
                "a committed version must not change)"
            )
    return jobs


def _check_records(
    vprefix: str,
    key: tuple[str, str, int],
    entry: ledger.Entry | None,
    sha: str,
    manifest: dict[str, Any],
    lv: _Level,
    rows: dict[tuple[str, str, int], str | None],
    report: VerifyReport,
) -> None:
    """The manifest against its ledger entry, its own file list and its catalog row."""
    level, (modality, did, n) = lv.name, key
    if entry is None:
        report.problems.append(
            f"{vprefix}: committed but not recorded in the {level} ledger "
            "(added behind the publisher's back, or a crash before the ledger entry: "
            "re-publishing the same stage records it; versions published before the "
            "ledger existed: a curator runs `binds adopt`)"
        )
    elif entry.body.get("manifest_sha256") != sha:
        report.problems.append(
            f"{vprefix}: manifest sha256 {sha[:16]}... differs from the ledger's "
            f"{str(entry.body.get('manifest_sha256'))[:16]}... (entry {entry.seq}): "
            "the manifest was edited or the version replaced after its commit"
        )
    elif entry.body.get("content_digest") != manifest.get("content_digest"):
        report.problems.append(
            f"{vprefix}: content digest differs from the ledger's (entry {entry.seq})"
        )
    if manifest.get("content_digest") != recomputed_digest(manifest):
        report.problems.append(
            f"{vprefix}: content digest {str(manifest.get('content_digest'))[:23]}... "
            "does not match the files the manifest lists (manifest edited)"
        )
    if key not in lv.catalog:
        # an unrecorded version gets no row (rebuild writes none): its finding says enough
        if entry is not None:
            report.problems.append(
                f"{level}/{layout.CATALOG_DIR}/{modality}--{did}--v{n}.parquet: "
                "catalog row missing (run `binds catalog --rebuild`)"
            )
    elif rows.get(key) != sha:
        report.problems.append(
            f"{vprefix}: the catalog row's manifest_sha256 "
            f"{str(rows.get(key))[:16]}... differs from the manifest's {sha[:16]}..."
        )


def _check_files(
    store: Store,
    jobs: list[tuple[str, int, str]],
    report: VerifyReport,
    *,
    workers: int,
    on_file: Callable[[str], None] | None,
) -> None:
    """Every listed file read once and hashed (``workers`` at a time)."""

    def check(job: tuple[str, int, str]) -> str | None:
        key, size, sha = job
        got = sha256_of(store, key)
        if on_file:
            on_file(key)
        if got is None:
            return f"{key}: missing"
        if got[0] != size:
            return f"{key}: size {got[0]} bytes, manifest says {size}"
        if got[1] != sha:
            return f"{key}: sha256 {got[1][:16]}... differs from the manifest's {sha[:16]}... (corrupted)"
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job, problem in zip(jobs, pool.map(check, jobs), strict=False):
            report.files += 1
            report.bytes += job[1]
            if problem:
                report.problems.append(problem)


def _ledger_entries(store: Store, lv: _Level) -> list[ledger.Entry]:

    prefix = f"{lv.name}/{ledger.LEDGER_DIR}/"
    keys = [
        key
        for key in lv.objects
        if key.startswith(prefix) and re.fullmatch(r"\d{12}\.json", key[len(prefix) :])
    ]
    blobs = read_many(store, keys)  # in parallel; an entry gone since the listing raises below
    entries = []
    for key in keys:
        rel = key[len(prefix) :]
        raw = blobs[key] if key in blobs else store.get(key)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        entries.append(ledger.Entry(int(rel[:12]), raw, body if isinstance(body, dict) else {}))
    return sorted(entries, key=lambda e: e.seq)


def recorded_versions(
    level: str, entries: list[ledger.Entry], report: VerifyReport
) -> dict[tuple[str, str, int], ledger.Entry]:
    """The versions the ledger says this level holds now (commits, moves in and embargo
    releases, minus moves out)."""
    held: dict[tuple[str, str, int], ledger.Entry] = {}
    for e in entries:
        b = e.body
        try:
            key = (str(b["modality"]), str(b["dataset_id"]), int(b["version"]))
        except (KeyError, TypeError, ValueError):
            continue
        if b.get("kind") in ledger.ARRIVALS:
            before = held.get(key)
            if before is not None and before.body.get("manifest_sha256") != b.get(
                "manifest_sha256"
            ):
                report.problems.append(
                    f"{level}/{key[0]}/{key[1]}/v{key[2]}/: recorded twice with different "
                    f"manifests (entries {before.seq} and {e.seq}): the version was replaced"
                )
                continue
            held[key] = e
        elif b.get("kind") == "move-out":
            held.pop(key, None)
    return held


def _row_sha(raw: bytes) -> str | None:
    """The manifest_sha256 of a row file's bytes (``None``: not a readable row)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(raw), columns=["manifest_sha256"])
        values = table.column("manifest_sha256").to_pylist()
        return str(values[0]) if values else None
    except (KeyError, ValueError, OSError):
        return None
    except Exception:  # pyarrow's ArrowInvalid on a damaged row
        return None


def _check_identity(
    vprefix: str,
    level: str,
    modality: str,
    did: str,
    n: int,
    manifest: dict[str, Any],
    report: VerifyReport,
) -> None:
    """The manifest must say what its key path says (a renumbered or moved copy does not)."""
    said = {
        "dataset_id": manifest.get("dataset_id"),
        "version": manifest.get("version"),
        "access": manifest.get("access"),
        "modality": manifest.get("modality"),
    }
    path = {"dataset_id": did, "version": n, "access": level, "modality": modality}
    for name, value in said.items():
        if str(value).lower() != str(path[name]).lower():
            report.problems.append(
                f"{vprefix}: manifest says {name} {value!r}, its key path says {path[name]!r} "
                "(a version copied, renumbered or moved by hand)"
            )


def _object_lock(store: Store) -> dict[str, Any] | None:
    return dict(lock) if (lock := store.object_lock()) else None


def _retention_problems(store: Store, vprefix: str, keys: list[str]) -> list[str]:
    """Versions in a locked bucket whose objects have no retention (committed before the lock,
    or by a publisher that did not set it)."""
    retention = store.retention
    missing = [k for k in keys if retention(k) is None]
    if not missing:
        return []
    return [
        f"{vprefix}: {len(missing)} of {len(keys)} object(s) without Object Lock retention "
        f"in a locked bucket (first: {missing[0][len(vprefix) :]})"
    ]
