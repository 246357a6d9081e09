"""``binds verify``: re-read committed versions and compare every byte with their manifests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pipelines.store import layout
from pipelines.store.base import Store
from pipelines.store.identifiers import ACCESS_LEVELS
from pipelines.store.versions import iter_manifests


@dataclass(slots=True)
class VerifyReport:
    versions: int = 0
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256_of(store: Store, key: str) -> tuple[int, str] | None:
    h = hashlib.sha256()
    n = 0
    try:
        for chunk in store.open_read(key):
            h.update(chunk)
            n += len(chunk)
    except KeyError:
        return None
    return n, h.hexdigest()


def verify(
    store: Store,
    *,
    dataset_id: str | None = None,
    version: int | None = None,
    workers: int = 8,
    on_file: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Check size and sha256 of every file (and metadata.jsonld) of the committed versions.

    Also reports a committed version without its catalog row (``binds catalog --rebuild``
    restores it).  Reads everything: cost is the size of what is verified.
    """
    report = VerifyReport()
    jobs: list[tuple[str, int, str]] = []
    for prefix, manifest, _ in iter_manifests(store, levels=ACCESS_LEVELS):
        if dataset_id and manifest["dataset_id"] != dataset_id:
            continue
        if version is not None and int(manifest["version"]) != version:
            continue
        report.versions += 1
        listed = {layout.MANIFEST}
        for f in [*manifest["files"], *manifest.get("documents", [])]:
            jobs.append((prefix + f["path"], f["size"], f["sha256"]))
            listed.add(f["path"])
        meta = manifest.get("metadata")
        if meta:
            jobs.append((prefix + meta["path"], meta["size"], meta["sha256"]))
            listed.add(meta["path"])
        # a committed version never changes: anything else inside it was added afterwards
        for info in store.list_prefix(prefix):
            rel = info.key[len(prefix) :]
            if rel not in listed:
                report.problems.append(
                    f"{info.key}: not in the manifest (added after the commit; "
                    "a committed version must not change)"
                )
        ckey = layout.catalog_key(
            manifest["access"],
            manifest["modality"],
            manifest["dataset_id"],
            int(manifest["version"]),
        )
        if not store.exists(ckey):
            report.problems.append(f"{ckey}: catalog row missing (run `binds catalog --rebuild`)")

    def check(job: tuple[str, int, str]) -> str | None:
        key, size, sha = job
        got = _sha256_of(store, key)
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
    report.problems.sort()
    return report
