"""A curator moves a dataset to another access level: copy, verify, record, then remove.

Every step can be repeated, so a move killed anywhere is finished by running it again:

1. under the dataset's lease, each committed version is read once (every byte checked against
   its manifest, and the manifest against the source level's ledger: a damaged version is
   never moved) and uploaded under the target level; what an earlier attempt uploaded and
   verified is not sent again;
2. the version's manifest is written at the target (``access`` the new level, ``moved_from``
   the old level and manifest sha256), its files verified, then a ``move-in`` entry appended
   to the target level's ledger (with the reason) and its catalog row written;
3. the registry names the new place (publishers now go there);
4. a ``move-out`` entry per version in the source level's ledger, then the old keys and
   catalog rows are deleted.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, Problem, RunError
from pipelines.store import layout, ledger, registry
from pipelines.store.base import Store, UploadItem
from pipelines.store.identifiers import ACCESS_LEVELS
from pipelines.store.lease import Lease
from pipelines.store.publish import PublishResult, upload_and_verify, write_once
from pipelines.store.versions import committed_versions


@dataclass(slots=True)
class MoveResult:
    dataset_id: str
    modality: str
    from_level: str
    to_level: str
    versions: list[int] = field(default_factory=list)
    copied_files: int = 0
    removed_objects: int = 0


def find_dataset(store: Store, dataset_id: str) -> tuple[str, str] | None:
    """(level, modality) of a dataset with committed versions (a curator reads every level)."""
    did = dataset_id.lower()
    for level in ACCESS_LEVELS:
        for modality in store.list_dirs(f"{level}/"):
            if modality.startswith("_") or modality == layout.CATALOG_DIR:
                continue
            if committed_versions(store, f"{level}/{modality}/{did}/"):
                return level, modality
    return None


def move_dataset(
    store: Store,
    dataset_id: str,
    to_level: str,
    *,
    reason: str,
    catalog_index=None,
    remove_rows: Callable[[Store, str, str, str, set[int]], None],
) -> MoveResult:
    """Move every version of ``dataset_id`` to ``to_level`` (see the module docstring).

    ``catalog_index(manifest, manifest_bytes)`` writes a catalog row and
    ``remove_rows(store, level, modality, dataset_id, versions)`` removes the old level's rows
    and their history (the layer above owns the catalog: :func:`pipelines.run.publishing.index_version`,
    :func:`pipelines.describe.catalog.remove_catalog_rows`): the store layer cannot, since the
    catalog's history must lose the rows too.
    """
    did = dataset_id.lower()
    _check_move(to_level, reason=reason)
    with Lease(store, did):
        from_level, modality = _source_of(store, did, to_level)
        result = MoveResult(did, modality, from_level, to_level)
        src = layout.dataset_prefix(from_level, modality, did)
        dst = layout.dataset_prefix(to_level, modality, did)
        versions = committed_versions(store, src)
        recorded = _recorded(store, from_level, did, modality)
        moved: list[tuple[int, dict[str, Any], str]] = []
        for n in versions:
            manifest, sha = _copy_version(store, src, dst, n, to_level, recorded, result)
            ledger.record_arrival(
                store,
                to_level,
                {
                    "kind": "move-in",
                    "dataset_id": did,
                    "version": n,
                    "modality": modality,
                    "manifest_sha256": sha,
                    "content_digest": manifest.get("content_digest"),
                    "request_id": manifest.get("request_id"),
                    "from_level": from_level,
                    "reason": reason,
                },
            )
            if catalog_index is not None:
                catalog_index(manifest, store.get(f"{dst}v{n}/{layout.MANIFEST}"))
            moved.append((n, manifest, sha))
            result.versions.append(n)
        request = str(moved[-1][1].get("request_id")) if moved else ""
        _rebind(store, did, request=request, to_level=to_level, modality=modality)
        _record_move_out(store, result, versions=versions, recorded=recorded, reason=reason)
        result.removed_objects += _remove_source(store, src, versions=versions)
        remove_rows(store, from_level, modality, did, set(versions) | set(recorded))
        return result


def _check_move(to_level: str, *, reason: str) -> None:
    if to_level not in ACCESS_LEVELS:
        raise InputError(
            Problem(f"unknown level {to_level!r}", where="--to", hint=", ".join(ACCESS_LEVELS))
        )
    if not reason.strip():
        raise InputError(
            Problem(
                "a move needs a reason",
                where="--reason",
                hint="e.g. 'consent withdrawn, ticket 812'",
            )
        )


def _source_of(store: Store, did: str, to_level: str) -> tuple[str, str]:
    """The (level, modality) to move ``did`` from: where it is, or where an interrupted move
    left some of it."""
    found = find_dataset(store, did)
    target_done = found is not None and found[0] == to_level
    if found is None or target_done:
        # nothing left at the source: either finished earlier, or nothing to move
        leftover = _leftover_source(store, did, to_level)
        if leftover is None:
            if found is None:
                raise InputError(
                    Problem(f"no committed version of {did} in this store", where="DATASET")
                )
            raise InputError(Problem(f"{did} is already at level {to_level!r}", where="--to"))
        found = leftover
    return found


def _rebind(store: Store, did: str, *, request: str, to_level: str, modality: str) -> None:
    """The registry's binding of ``did`` at its new place (its owner kept)."""
    binding = registry.lookup(store, did)
    if binding is None:
        registry.bind(store, did, request, to_level, modality)
        return
    store.delete(registry.registry_key(did))
    store.put_if_absent(
        registry.registry_key(did),
        (
            json.dumps(
                {
                    "format": registry.REGISTRY_FORMAT,
                    "format_version": 1,
                    "dataset": binding_hash(did),
                    "owner": binding.owner,
                    "place": registry.place_hash(did, to_level, modality),
                },
                sort_keys=True,
            )
            + "\n"
        ).encode(),
    )


def _record_move_out(
    store: Store, result: MoveResult, *, versions: list[int], recorded: dict[int, str], reason: str
) -> None:
    """A move-out entry in the old level's ledger for each version that has none yet."""
    did, from_level = result.dataset_id, result.from_level
    out_done = {
        int(e.body.get("version", 0))
        for e in ledger.read(store, from_level)
        if e.body.get("kind") == "move-out" and e.body.get("dataset_id") == did
    }
    for n in versions:
        if n not in out_done:
            ledger.append(
                store,
                from_level,
                {
                    "kind": "move-out",
                    "dataset_id": did,
                    "version": n,
                    "modality": result.modality,
                    "manifest_sha256": recorded.get(n),
                    "to_level": result.to_level,
                    "reason": reason,
                },
            )


def _remove_source(store: Store, src: str, *, versions: list[int]) -> int:
    """Delete the old keys; how many objects were removed."""
    # the old keys go last, manifests first (a version without its manifest is no version)
    for n in versions:
        store.delete(f"{src}v{n}/{layout.MANIFEST}")
    removed = 0
    for info in list(store.list_prefix(src)):
        store.delete(info.key)
        removed += 1
    return removed


def binding_hash(did: str) -> str:
    from pipelines.store.lease import dataset_hash

    return dataset_hash(did)


def _leftover_source(store: Store, did: str, to_level: str) -> tuple[str, str] | None:
    """A level other than the target that still holds objects of the dataset (a killed move)."""
    for level in ACCESS_LEVELS:
        if level == to_level:
            continue
        for modality in store.list_dirs(f"{level}/"):
            if modality.startswith("_") or modality == layout.CATALOG_DIR:
                continue
            if any(True for _ in store.list_prefix(f"{level}/{modality}/{did}/")):
                return level, modality
    return None


def _recorded(store: Store, level: str, did: str, modality: str) -> dict[int, str]:
    """version -> manifest sha256 the level's ledger recorded for the dataset."""
    held: dict[int, str] = {}
    for e in ledger.read(store, level):
        b = e.body
        if b.get("dataset_id") != did or b.get("modality") != modality:
            continue
        if b.get("kind") in ledger.ARRIVALS:
            held[int(b["version"])] = str(b.get("manifest_sha256"))
    return held


def _copy_version(
    store: Store,
    src: str,
    dst: str,
    n: int,
    to_level: str,
    recorded: dict[int, str],
    result: MoveResult,
) -> tuple[dict[str, Any], str]:
    """Copy version ``n`` (checked on the way) and commit it at ``dst``; return its new manifest."""
    dst_manifest_key = f"{dst}v{n}/{layout.MANIFEST}"
    raw_old = store.get(f"{src}v{n}/{layout.MANIFEST}")
    old_sha = hashlib.sha256(raw_old).hexdigest()
    if recorded.get(n) != old_sha:
        raise RunError(
            f"{src}v{n}/: manifest differs from the ledger's record; not moved",
            details=["run `binds verify` and repair the version from a verified copy first"],
        )
    old = json.loads(raw_old)
    entries = [*old["files"], *old.get("documents", []), old["metadata"]]
    with tempfile.TemporaryDirectory(prefix="binds-move-") as tmp:
        items = []
        for i, f in enumerate(entries):
            path = Path(tmp) / str(i)
            h = hashlib.sha256()
            with open(path, "wb") as out:
                for chunk in store.open_read(f"{src}v{n}/{f['path']}"):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != f["sha256"]:
                raise RunError(
                    f"{src}v{n}/{f['path']}: differs from its manifest; not moved",
                    details=["run `binds verify` and repair the version first"],
                )
            items.append(UploadItem(f["path"], path, int(f["size"]), f["sha256"]))
        if not store.exists(dst_manifest_key):
            scratch = PublishResult(
                dataset_id=old["dataset_id"],
                version=n,
                access=to_level,
                modality=old["modality"],
                prefix=dst,
                created=False,
                content_digest=old["content_digest"],
                n_files=len(items),
                bytes=sum(it.size for it in items),
            )
            upload_and_verify(store, f"{dst}v{n}/", items, scratch, None)
            result.copied_files += scratch.uploaded_files
        new = dict(
            old, access=to_level, moved_from={"level": old["access"], "manifest_sha256": old_sha}
        )
        raw_new = write_once(store, dst_manifest_key, (json.dumps(new, indent=2) + "\n").encode())
    return json.loads(raw_new), hashlib.sha256(raw_new).hexdigest()
