"""Key layout of the store (the contract the AI teams rely on).

::

    <access>/<modality>/<dataset_id>/v<N>/data/...          standard outputs
    <access>/<modality>/<dataset_id>/v<N>/qc/...            QC plots and metrics
    <access>/<modality>/<dataset_id>/v<N>/metadata.jsonld   schema.org + Croissant + provenance
    <access>/<modality>/<dataset_id>/v<N>/manifest.json     written last: the commit
    <access>/<modality>/<dataset_id>/_claims/v<N>.json      scratch: which content is being
                                                            published as v<N> (removed on commit)
    <access>/catalog/<modality>--<dataset_id>--v<N>.parquet one row per committed version
    <access>/catalog/_log/<shard>/<seq>.parquet             the catalog's log and compacted
    <access>/catalog/_snapshots/<seq>.parquet               snapshots (pipelines.access.catalog_log)
"""

from __future__ import annotations

import re

from pipelines.store.identifiers import (  # noqa: F401 (DATASET_ID: for the reader)
    ACCESS_LEVELS,
    DATASET_ID,
    MODALITY_NAME,
    validate_dataset_id,
)

MANIFEST = "manifest.json"
METADATA = "metadata.jsonld"
CATALOG_DIR = "catalog"
EMBARGO_DIR = "_embargo"  # versions held until their embargo date: _embargo/<level>/...
CLAIMS_DIR = "_claims"
_VERSION = re.compile(r"^v([1-9][0-9]*)$")


def dataset_prefix(access: str, modality: str, dataset_id: str) -> str:
    if access not in ACCESS_LEVELS:
        raise ValueError(f"unknown access level {access!r}")
    if not MODALITY_NAME.match(modality):  # which modalities exist: the experiment's check
        raise ValueError(f"{modality!r} is not a modality name")
    return f"{access}/{modality}/{validate_dataset_id(dataset_id)}/"


def version_prefix(access: str, modality: str, dataset_id: str, version: int) -> str:
    return f"{dataset_prefix(access, modality, dataset_id)}v{version}/"


def parse_version(name: str) -> int | None:
    m = _VERSION.match(name)
    return int(m.group(1)) if m else None


def claim_key(access: str, modality: str, dataset_id: str, version: int) -> str:
    return f"{dataset_prefix(access, modality, dataset_id)}{CLAIMS_DIR}/v{version}.json"


def catalog_key(access: str, modality: str, dataset_id: str, version: int) -> str:
    return f"{access}/{CATALOG_DIR}/{modality}--{dataset_id}--v{version}.parquet"
