"""The committed versions in a store: a version exists once its ``manifest.json`` does."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from pipelines.store import layout
from pipelines.store.base import Store
from pipelines.store.identifiers import ACCESS_LEVELS


def committed_versions(store: Store, prefix: str) -> list[int]:
    """The version numbers under the dataset folder ``prefix`` that have a manifest, ascending."""
    versions = []
    for name in store.list_dirs(prefix):
        n = layout.parse_version(name)
        if n is not None and store.exists(f"{prefix}v{n}/{layout.MANIFEST}"):
            versions.append(n)
    return sorted(versions)


def read_manifest(store: Store, prefix: str, version: int) -> dict[str, Any]:
    return json.loads(store.get(f"{prefix}v{version}/{layout.MANIFEST}"))


def iter_manifests(
    store: Store, *, levels: Iterable[str] = ACCESS_LEVELS
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(prefix, manifest dict, manifest sha256) of every committed version, walking the folders."""
    for level in levels:
        for modality in store.list_dirs(f"{level}/"):
            if modality == layout.CATALOG_DIR:
                continue
            for dataset in store.list_dirs(f"{level}/{modality}/"):
                dprefix = f"{level}/{modality}/{dataset}/"
                for name in store.list_dirs(dprefix):
                    if layout.parse_version(name) is None:
                        continue
                    try:
                        raw = store.get(f"{dprefix}{name}/{layout.MANIFEST}")
                    except KeyError:
                        continue  # uncommitted (in progress or interrupted): not a version
                    yield f"{dprefix}{name}/", json.loads(raw), hashlib.sha256(raw).hexdigest()
