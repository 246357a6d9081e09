"""Embargo: a version whose ``access.embargo_until`` is in the future is held until that date.

Held versions are committed, with the ordinary protocol, under ``_embargo/<level>/...``
(``_embargo/open/cryoem/<id>/v1/...``, its catalog row under ``_embargo/open/catalog/``):
the same keys as at their level, behind one more prefix that only ``reader-all``, the curator
and the service may read (``binds policy``). So no reader of the release level lists or reads
them, and nothing about them shows in that level's catalog. Restricted data are not held
(whoever reads ``restricted/`` may read ``_embargo/`` too).

``binds release`` (daily, from cron or a systemd timer of the unit service) moves every held
version whose date has come to its level without recomputing anything: it copies each object,
checks every copied file against the sha256 of the manifest, commits the manifest last (an
exclusive put, as a publish does), appends a ``release`` entry (reason "embargo release") to the
level's ledger, writes the level's catalog row, then deletes the held copy.
A release interrupted at any point is completed by the next one.

"Now" is the UTC date, or ``BINDS_NOW`` (``YYYY-MM-DD``) when set: the clock tests and a
curator's dry run can set.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.store import layout, ledger
from pipelines.store.base import ObjectInfo, ProgressCallback, Store, StoreError, UploadItem
from pipelines.store.identifiers import ACCESS_LEVELS
from pipelines.store.layout import EMBARGO_DIR
from pipelines.store.lease import Lease

log = logging.getLogger(__name__)

NOW_ENV = "BINDS_NOW"
#: levels whose versions are held while under embargo (restricted is already the narrowest)
HELD_LEVELS = ("open", "consortium")


def today() -> dt.date:
    """The UTC date, or ``BINDS_NOW``."""
    if value := os.environ.get(NOW_ENV):
        return dt.date.fromisoformat(value[:10])
    return dt.datetime.now(dt.UTC).date()


def embargo_until(experiment: dict[str, Any]) -> dt.date | None:
    value = (experiment.get("access") or {}).get("embargo_until")
    if not value:
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def is_held(experiment: dict[str, Any], *, on: dt.date | None = None) -> bool:
    """Whether a version of ``experiment`` published ``on`` (default :func:`today`) is held."""
    until = embargo_until(experiment)
    level = (experiment.get("access") or {}).get("level")
    return until is not None and level in HELD_LEVELS and until > (on or today())


def held_key(key: str) -> str:
    return f"{EMBARGO_DIR}/{key}" if key.split("/", 1)[0] in ACCESS_LEVELS else key


class HeldStore(Store):
    """``store`` seen with every ``<level>/...`` key under ``_embargo/<level>/...``; keys shared
    by all levels (``_registry/``, ``_leases/``, the probe) are unchanged. The publish protocol
    runs on it as is."""

    def __init__(self, store: Store) -> None:
        super().__init__(read_only=store.read_only)
        self.inner = store
        self.url = store.url  # versions name their location after release

    @property
    def supports_etag_md5(self) -> bool:
        return self.inner.supports_etag_md5

    def _out(self, info: ObjectInfo) -> ObjectInfo:
        key = info.key.removeprefix(f"{EMBARGO_DIR}/")
        return ObjectInfo(key, info.size, info.etag)

    # Reads fall back to the level itself: versions already released there count, so a held
    # version takes the next number (never a second v1) and identical content is found. Not
    # the ledger: the held ledger is a chain of its own (following the level's head would
    # start it mid-chain, with a gap verify would report).
    # Nor the catalog's log and snapshots: the held catalog numbers its own entries.
    def _falls_back(self, key: str) -> bool:
        parts = key.split("/", 3)
        if parts[1:3] in (["catalog", "_log"], ["catalog", "_snapshots"]):
            return False
        return parts[1:2] != [ledger.LEDGER_DIR]

    def get(self, key: str) -> bytes:
        try:
            return self.inner.get(held_key(key))
        except KeyError:
            if not self._falls_back(key):
                raise
            return self.inner.get(key)

    def open_read(self, key: str, *, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        return self.inner.open_read(held_key(key), chunk_size=chunk_size)

    def is_own(self, key: str) -> bool:
        return self.inner.exists(held_key(key))  # held, not a released version of the level

    def head(self, key: str) -> ObjectInfo | None:
        info = self.inner.head(held_key(key))
        if info:
            return self._out(info)
        return self.inner.head(key) if self._falls_back(key) else None

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        return (self._out(i) for i in self.inner.list_prefix(held_key(prefix)))

    def list_dirs(self, prefix: str) -> list[str]:
        return sorted({*self.inner.list_dirs(held_key(prefix)), *self.inner.list_dirs(prefix)})

    def matches(self, item: UploadItem, info: ObjectInfo | None) -> bool:
        moved = UploadItem(held_key(item.key), item.path, item.size, item.sha256, item.etag)
        return self.inner.matches(
            moved, ObjectInfo(held_key(info.key), info.size, info.etag) if info else None
        )

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(held_key(key), data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.inner.put_if_absent(held_key(key), data)

    def upload_files(
        self, items: Sequence[UploadItem], *, progress: ProgressCallback | None = None
    ) -> None:
        moved = [UploadItem(held_key(i.key), i.path, i.size, i.sha256, i.etag) for i in items]
        self.inner.upload_files(moved, progress=progress)

    def delete(self, key: str) -> None:
        self.inner.delete(held_key(key))

    def remove_stale_temporaries(self, prefix: str) -> int:
        return self.inner.remove_stale_temporaries(held_key(prefix))

    def check_writable(self) -> None:
        self.inner.check_writable()


def held_catalog_rows(store: Store) -> list[dict[str, Any]]:
    """The catalog rows of the held versions this store lets us read (curator, reader-all)."""
    from pipelines.describe.catalog import catalog_base, read_level

    rows: list[dict[str, Any]] = []
    for level in HELD_LEVELS:
        try:
            rows += read_level(store, catalog_base(level, f"{EMBARGO_DIR}/")).to_pylist()
        except StoreError as err:
            log.info("held versions of %r not readable: %s", level, err)
    return rows


def held_frame(store: Store, levels: Sequence[str] = HELD_LEVELS):
    """:func:`held_catalog_rows` of ``levels`` as a catalog DataFrame (for the curator's DCAT)."""
    import pyarrow as pa

    from pipelines.access.catalog_schema import CATALOG_SCHEMA, conform

    rows = [
        # where the version is while held (the row itself names its place after release)
        r | {k: f"{EMBARGO_DIR}/{r[k]}" for k in ("path", "metadata_path", "report_path") if r[k]}
        for r in held_catalog_rows(store)
        if r["access"] in levels
    ]
    if not rows:
        return CATALOG_SCHEMA.empty_table().to_pandas()
    return conform(pa.Table.from_pylist(rows)).to_pandas()


@dataclass(slots=True)
class Released:
    dataset_id: str
    version: int
    access: str
    embargo_until: str
    files: int
    notes: list[str] = field(default_factory=list)


def release(store: Store, *, on: dt.date | None = None) -> list[Released]:
    """Move every held version whose embargo ends on or before ``on`` (default
    :func:`today`) to its level; see the module docstring."""
    on = on or today()
    done = []
    for row in held_catalog_rows(store):
        until = row.get("embargo_until")
        if until is None or until > on:
            continue
        done.append(_release_one(store, row))
    return done


def _sha256(store: Store, key: str) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    for chunk in store.open_read(key):
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


def _release_one(store: Store, row: dict[str, Any]) -> Released:
    vprefix = row["path"]  # the version's folder at its level
    src = f"{EMBARGO_DIR}/{vprefix}"
    manifest_raw = store.get(src + layout.MANIFEST) if store.exists(src + layout.MANIFEST) else None
    dst_manifest = vprefix + layout.MANIFEST
    out = Released(
        row["dataset_id"], int(row["version"]), row["access"], str(row["embargo_until"]), 0
    )
    if manifest_raw is None:  # an earlier release committed it and stopped before the cleanup
        manifest_raw = store.get(dst_manifest)
    manifest = json.loads(manifest_raw)
    expected = {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]}
    expected[layout.METADATA] = (manifest["metadata"]["size"], manifest["metadata"]["sha256"])
    for d in manifest.get("documents", []):
        expected[d["path"]] = (d["size"], d["sha256"])
    if (committed := store.head(dst_manifest)) is not None and store.get(
        dst_manifest
    ) != manifest_raw:
        # never replace or shadow a committed version: keep the held copy for the curator
        raise StoreError(
            f"{row['dataset_id']} v{row['version']} exists at {row['access']} with other content; "
            "the held version was kept (a curator decides)"
        )
    if committed is None:
        with tempfile.TemporaryDirectory(prefix="binds-release-") as tmp:
            for rel, (size, sha) in sorted(expected.items()):
                if (have := store.head(vprefix + rel)) is not None and have.size == size:
                    if _sha256(store, vprefix + rel) == (size, sha):
                        continue  # copied by an interrupted release
                local = Path(tmp) / "object"
                h = hashlib.sha256()
                with open(local, "wb") as f:
                    for chunk in store.open_read(src + rel):
                        f.write(chunk)
                        h.update(chunk)
                if (local.stat().st_size, h.hexdigest()) != (size, sha):
                    raise StoreError(
                        f"held copy of {row['dataset_id']} v{row['version']} is "
                        f"damaged ({rel}); nothing released"
                    )
                store.upload_files([UploadItem(vprefix + rel, local, size, sha)])
        # verify what is now at the level, then commit it: the manifest last
        bad = [r for r, want in expected.items() if _sha256(store, vprefix + r) != want]
        if bad:
            raise StoreError(f"released copy differs from its manifest ({bad[0]}); not committed")
        store.put_if_absent(dst_manifest, manifest_raw)
    out.files = len(expected)
    level, did, n = row["access"], row["dataset_id"], int(row["version"])
    # the held commit is in the held ledger (_embargo/<level>/_ledger/); the level's own
    # ledger records the version's arrival, as a curator move does, so verify finds it
    # (under the dataset's lease, as every recorder: two releases at once record it once)
    with Lease(store, did):
        ledger.record_arrival(
            store,
            level,
            {
                "kind": "release",
                "dataset_id": did,
                "version": n,
                "modality": row["modality"],
                "manifest_sha256": hashlib.sha256(manifest_raw).hexdigest(),
                "content_digest": manifest.get("content_digest"),
                "request_id": manifest.get("request_id"),
                "embargo_until": str(row["embargo_until"]),
                "reason": "embargo release",
            },
        )
    from pipelines.describe.catalog import remove_catalog_rows, write_catalog_row

    write_catalog_row(store, row)
    # the held copy goes last: a reader of the level already has the whole version
    remove_catalog_rows(store, level, row["modality"], did, [n], root=f"{EMBARGO_DIR}/")
    for info in list(store.list_prefix(src)):
        store.delete(info.key)
    log.info("released %s v%s (%s)", row["dataset_id"], row["version"], row["access"])
    return out


__all__ = [
    "EMBARGO_DIR",
    "NOW_ENV",
    "HeldStore",
    "Released",
    "embargo_until",
    "held_catalog_rows",
    "is_held",
    "release",
    "today",
]
