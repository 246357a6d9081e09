"""What the service serves: every committed version of the store (a DRS bundle) and every
file its manifest lists (a DRS object), read from the catalog rows and manifests.

The index is rebuilt when it is older than ``refresh_s`` (new versions appear within that
time; committed versions never change, so their manifests are read once).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pipelines.access.ids import DrsName
from pipelines.store import Store
from pipelines.store.versions import read_manifest


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass
class Version:
    """One committed version: where it is, who may see it, and its files by path."""

    dataset_id: str
    version: int
    level: str
    modality: str
    prefix: str  # store key prefix of the version, ending with '/'
    created: str  # RFC 3339
    embargo_until: dt.date | None
    row: dict[str, Any]  # the catalog row
    files: dict[str, FileEntry] = field(default_factory=dict)

    @property
    def name(self) -> DrsName:
        return DrsName(self.dataset_id, self.version)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files.values())

    @property
    def checksum(self) -> str:
        """The DRS bundle checksum: sha-256 over the sorted hex sha-256s of its contents."""
        return hashlib.sha256(
            "".join(sorted(f.sha256 for f in self.files.values())).encode()
        ).hexdigest()


def _files(manifest: dict[str, Any]) -> dict[str, FileEntry]:
    entries = list(manifest.get("files") or [])
    if manifest.get("metadata"):
        entries.append(manifest["metadata"])
    entries += manifest.get("documents") or []
    return {e["path"]: FileEntry(e["path"], int(e["size"]), e["sha256"]) for e in entries}


def _created(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value or "1970-01-01T00:00:00Z")


class StoreIndex:
    def __init__(self, store: Store, *, refresh_s: float = 30.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._built = 0.0
        self._versions: dict[tuple[str, int], Version] = {}
        self._manifests: dict[str, dict[str, Any]] = {}  # by manifest sha256: read once

    def _build(self) -> None:
        from pipelines.describe.catalog import read_catalog
        from pipelines.describe.embargo import held_catalog_rows, held_key

        # versions under embargo wait under _embargo/<level>/ (pipelines.describe.embargo): served only
        # to a dataset visa, from where their bytes are until `binds release` moves them
        rows = [(r, r["path"]) for r in read_catalog(self.store).to_pylist()]
        rows += [(r, held_key(r["path"])) for r in held_catalog_rows(self.store)]
        versions: dict[tuple[str, int], Version] = {}
        for row, path in rows:
            digest = row.get("manifest_sha256") or path
            manifest = self._manifests.get(digest)
            if manifest is None:
                prefix = path.rsplit("/v", 1)[0] + "/"
                try:
                    manifest = read_manifest(self.store, prefix, int(row["version"]))
                except KeyError:
                    continue  # a catalog row without its commit: not a version
                self._manifests[digest] = manifest
            v = Version(
                dataset_id=row["dataset_id"],
                version=int(row["version"]),
                level=row["access"],
                modality=row["modality"],
                prefix=path,
                created=_created(row.get("created") or manifest.get("created")),
                embargo_until=row.get("embargo_until"),
                row=row,
                files=_files(manifest),
            )
            versions[(v.dataset_id, v.version)] = v
        self._versions = versions
        self._built = time.monotonic()

    def versions(self) -> dict[tuple[str, int], Version]:
        with self._lock:
            if not self._built or time.monotonic() - self._built > self.refresh_s:
                self._build()
            return self._versions

    def version(self, dataset_id: str, version: int) -> Version | None:
        return self.versions().get((dataset_id, int(version)))

    def latest(self, dataset_id: str) -> Version | None:
        found = [v for (d, _), v in self.versions().items() if d == dataset_id]
        return max(found, key=lambda v: v.version) if found else None

    def stats(self) -> tuple[int, int]:
        """(objects, bytes) over every file of every committed version."""
        vs = self.versions().values()
        return sum(len(v.files) for v in vs), sum(v.size for v in vs)
