"""``binds export DATASET --version N --bagit DIR``: one committed version as a BagIt 1.0 bag.

The bag is what a repository that takes deposits (a national data repository, an institutional
archive) ingests: ``data/`` holds the version exactly as committed (``data/``, ``qc/``,
``metadata.jsonld``, the documents and ``manifest.json``), every payload file listed in
``manifest-sha256.txt`` and ``manifest-sha512.txt``, and ``bag-info.txt`` names the dataset::

    Source-Organization: <support unit>       (the metadata's creator organisation)
    External-Identifier: <dataset id>          (and the request id, one label each)
    BINDS-Dataset-Id / BINDS-Version / BINDS-Access-Level / BINDS-Modality
    BINDS-Content-Digest / BINDS-Manifest-SHA256
    Bagging-Date, Payload-Oxum (bagit-python)

Every file is checked against the committed manifest's sha256 while it is downloaded; the bag
is written by bagit-python (``bagit.make_bag``), which computes the payload manifests.

Only what the caller's credentials may read is exported: a level they may not list, a
version held under embargo (not at its level until released) and a version that does not
exist get the same refusal, which names neither the level nor the dataset's existence.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, Problem, RunError
from pipelines.store import layout
from pipelines.store.base import Store, StoreError
from pipelines.store.identifiers import ACCESS_LEVELS, MODALITY_NAME

#: the payload manifests the bag carries (BagIt 1.0 recommends sha256 or stronger)
ALGORITHMS = ("sha256", "sha512")
BAGIT_VERSION = "1.0"  # RFC 8493


def find_version(store: Store, dataset_id: str, version: int) -> tuple[str, bytes]:
    """The version prefix and manifest bytes of a committed, readable version (else exit 2)."""
    from pipelines.describe.metadata import MODALITIES

    did = dataset_id.strip().lower()
    if "/" in did or ".." in did or not did:
        raise _not_found(dataset_id, version)
    for level in ACCESS_LEVELS:
        for modality in MODALITIES:
            if not MODALITY_NAME.match(modality):
                continue
            key = f"{level}/{modality}/{did}/v{version}/{layout.MANIFEST}"
            try:
                return key[: -len(layout.MANIFEST)], store.get(key)
            except KeyError:
                continue
            except StoreError as err:
                if err.denied:
                    continue  # a level these credentials may not read: as if absent
                raise
    raise _not_found(dataset_id, version)


def _not_found(dataset_id: str, version: int) -> InputError:
    return InputError(
        Problem(
            f"no readable committed version {version} of {dataset_id!r}",
            where="DATASET --version",
            hint="list what you may read with: binds catalog",
        )
    )


def _organisation(metadata: dict[str, Any]) -> str:
    creators = metadata.get("creator") or []
    for c in creators if isinstance(creators, list) else [creators]:
        if isinstance(c, dict) and c.get("@type") == "Organization" and c.get("name"):
            return str(c["name"])
    return "BINDS support unit"


def export_bag(
    store: Store,
    dataset_id: str,
    version: int,
    target: str | Path,
    *,
    source_organization: str | None = None,
) -> Path:
    """Write the bag to ``target`` (a new or empty folder); return its path.

    Raises
    ------
    InputError
        No readable committed version; the target exists and is not empty.
    RunError
        A stored object does not match the manifest (nothing half-made is left as a bag).
    """
    import bagit

    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(
            Problem(
                f"{target} exists and is not an empty folder",
                where="--bagit",
                hint="give a new folder: a bag is never written over other files",
            )
        )
    vprefix, raw = find_version(store, dataset_id, version)
    manifest = json.loads(raw)
    listed = [*(manifest.get("files") or []), *(manifest.get("documents") or [])]
    if manifest.get("metadata"):
        listed.append(manifest["metadata"])
    target.mkdir(parents=True, exist_ok=True)
    try:
        for f in listed:
            _download(store, vprefix + f["path"], target / f["path"], f["size"], f["sha256"])
        (target / layout.MANIFEST).write_bytes(raw)
        try:
            metadata = json.loads((target / layout.METADATA).read_bytes())
        except (OSError, ValueError):
            metadata = {}
        info = {
            "Source-Organization": source_organization or _organisation(metadata),
            "External-Identifier": [
                str(manifest["dataset_id"]),
                *([str(manifest["request_id"])] if manifest.get("request_id") else []),
            ],
            "External-Description": f"BINDS dataset {manifest['dataset_id']} version "
            f"{manifest['version']} ({manifest.get('modality')}, {manifest.get('access')})",
            "Bag-Group-Identifier": str(manifest["dataset_id"]),
            "BINDS-Dataset-Id": str(manifest["dataset_id"]),
            "BINDS-Version": str(manifest["version"]),
            "BINDS-Access-Level": str(manifest.get("access")),
            "BINDS-Modality": str(manifest.get("modality")),
            "BINDS-Content-Digest": str(manifest.get("content_digest")),
            "BINDS-Manifest-SHA256": hashlib.sha256(raw).hexdigest(),
            "BINDS-Created": str(manifest.get("created")),
        }
        if metadata.get("license"):
            info["BINDS-License"] = str(metadata["license"])
        bagit.make_bag(str(target), bag_info=info, checksums=list(ALGORITHMS), processes=1)
        # bagit-python writes "BagIt-Version: 0.97"; the payload layout and manifests we write
        # are the same in RFC 8493 (1.0), so declare 1.0 and let bagit rewrite the tag manifests
        (target / "bagit.txt").write_text(
            f"BagIt-Version: {BAGIT_VERSION}\nTag-File-Character-Encoding: UTF-8\n",
            encoding="utf-8",
        )
        bagit.Bag(str(target)).save()
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # a half-made bag must not look like a bag
        raise
    return target


def _download(store: Store, key: str, path: Path, size: int, sha256: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    n = 0
    with open(path, "wb") as f:
        try:
            for chunk in store.open_read(key):
                h.update(chunk)
                n += len(chunk)
                f.write(chunk)
        except KeyError:
            raise RunError(
                f"{key}: missing from the store (run `binds verify --sweep --repair-from URL`)"
            ) from None
    if n != size or h.hexdigest() != sha256:
        raise RunError(
            f"{key}: does not match its manifest (damaged; run `binds verify --sweep "
            "--repair-from URL`); no bag written"
        )


__all__ = ["ALGORITHMS", "export_bag", "find_version"]
