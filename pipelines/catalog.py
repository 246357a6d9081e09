"""The catalog: one Parquet file with one row per committed version, under each access level.

``<access>/catalog/<modality>--<dataset_id>--v<N>.parquet``.  One small file per version
(rather than one growing table) means publishing never rewrites what another publisher wrote,
and a bucket policy on ``<access>/`` hides restricted titles from those without access.
Read the whole level as one table with any Parquet reader::

    pd.read_parquet("store/open/catalog/")
    duckdb.sql("select * from read_parquet('store/*/catalog/*.parquet', union_by_name=true)")

The rows are rebuildable from the manifests (``binds catalog --rebuild``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.access.catalog_schema import (
    CATALOG_SCHEMA,
    SELECTION_FIELDS,
    USAGE_COLUMNS,
    conform,
    figures,
    filter_frame,
    latest_only,
)
from pipelines.jsonld import ONTOLOGIES
from pipelines.metadata import ACCESS_LEVELS
from pipelines.store import layout
from pipelines.store.base import Store, StoreError
from pipelines.store.versions import iter_manifests

log = logging.getLogger(__name__)
REPORT = "qc/report.html"  # the version's QC report, when the workflow wrote one


def catalog_row(
    manifest: dict[str, Any], *, manifest_sha256: str, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One catalog row: identity and sizes from the manifest, selection columns from
    ``metadata`` (the version's metadata.jsonld; :func:`write_catalog_row` reads it from the
    store when not given), typed figures from the manifest's QC metrics.

    To add columns: add their fields to ``pipelines.access.catalog_schema`` and one
    ``**_part(...)`` line here.
    """
    return {
        **_identity(manifest, manifest_sha256),
        **selection(metadata),
        **figures(manifest.get("qc") or {}, manifest.get("modality")),
        "qc_json": json.dumps(manifest.get("qc") or {}, sort_keys=True),
        **{k: (manifest.get("usage") or {}).get(k) for k in USAGE_COLUMNS},
    }


def _identity(manifest: dict[str, Any], manifest_sha256: str) -> dict[str, Any]:
    data_paths = sorted(
        {
            "/".join(f["path"].split("/")[:2])
            for f in manifest["files"]
            if f["path"].startswith("data/")
        }
    )
    created = manifest.get("created")
    prefix = layout.version_prefix(
        manifest["access"], manifest["modality"], manifest["dataset_id"], int(manifest["version"])
    )
    paths = {f["path"] for f in manifest["files"]}
    return {
        "dataset_id": manifest["dataset_id"],
        "version": int(manifest["version"]),
        "modality": manifest["modality"],
        "access": manifest["access"],
        "request_id": manifest.get("request_id"),
        "title": manifest.get("title"),
        "created": dt.datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
        "n_files": manifest.get("n_files"),
        "bytes": manifest.get("bytes"),
        "data_bytes": sum(f["size"] for f in manifest["files"] if f["path"].startswith("data/")),
        "content_digest": manifest.get("content_digest"),
        "manifest_sha256": manifest_sha256,
        "path": prefix,
        "metadata_path": prefix + layout.METADATA,
        "report_path": prefix + REPORT if REPORT in paths else None,
        "data_paths": data_paths,
    }


def _curie(iri: str) -> str:
    for prefix, (base, _, _) in ONTOLOGIES.items():
        if iri.startswith(base):
            return f"{prefix}:{iri[len(base) :]}"
    return iri


def selection(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The selection columns (organisms, licence, acquired ...) of a metadata.jsonld document."""
    if not metadata:
        return {f.name: None for f in SELECTION_FIELDS}
    samples = metadata.get("binds:sample") or []

    def ids(term: str) -> list[str]:
        return sorted({_curie(s[term]) for s in samples if s.get(term)})

    licence = metadata.get("license") or ""
    units = [c["name"] for c in metadata.get("creator", []) if c.get("@type") == "Organization"]
    formats = sorted(
        {
            rs["binds:tableFormat"]
            for rs in metadata.get("recordSet", [])
            if rs.get("binds:tableFormat")
        }
    )
    return {
        "organisms": ids("binds:organism"),
        "tissues": ids("binds:tissue"),
        "cell_types": ids("binds:cellType"),
        # the samples' compounds and those named in the data (a screen's plate maps)
        "compounds": sorted(
            {*ids("binds:compound"), *map(_curie, metadata.get("binds:compoundInData") or [])}
        ),
        "sample_ids": sorted({s["identifier"] for s in samples if s.get("identifier")}),
        "samples": [
            {
                "sample_id": s.get("identifier"),
                **{
                    key: _curie(s[term]) if s.get(term) else None
                    for key, term in (
                        ("organism", "binds:organism"),
                        ("tissue", "binds:tissue"),
                        ("cell_type", "binds:cellType"),
                        ("compound", "binds:compound"),
                    )
                },
            }
            for s in samples
        ],
        "licence": licence.removeprefix("https://spdx.org/licenses/").removesuffix(".html") or None,
        "acquired": _date(metadata.get("dateCreated")),
        "instrument_model": metadata.get("binds:instrumentModel"),
        "support_unit": units[-1] if units else None,
        "format_version": metadata.get("binds:formatVersion"),
        "data_formats": metadata.get("binds:dataFormats") or formats,
        "embargo_until": _date(metadata.get("binds:embargoUntil")),
        "data_use": [
            "DUO:" + str(iri).rsplit("DUO_", 1)[-1] for iri in metadata.get("binds:dataUse") or []
        ],
    }


def _date(value: Any) -> dt.date | None:
    if not value:
        return None
    return dt.date.fromisoformat(str(value)[:10])


def _to_parquet(rows: list[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA), buf, compression="zstd")
    return buf.getvalue()


def write_catalog_row(store: Store, row: dict[str, Any]) -> str:
    """Write one row; its selection columns are read from the version's metadata.jsonld when
    the caller built the row from the manifest alone."""
    if "licence" in row and row["licence"] is None:
        try:
            row = {**row, **selection(json.loads(store.get(row["metadata_path"])))}
        except (KeyError, StoreError, ValueError) as err:
            log.warning("metadata of %s not readable for the catalog row: %s", row["path"], err)
    key = layout.catalog_key(row["access"], row["modality"], row["dataset_id"], row["version"])
    store.put(key, _to_parquet([row]))
    return key


def read_catalog(
    store: Store, *, levels: Iterable[str] = ACCESS_LEVELS, unreadable: list[str] | None = None
) -> pa.Table:
    """All catalog rows of the access levels this store lets us read, newest first.

    A level we may not list (a bucket policy refusing it) is skipped with a log line: the AI
    teams see the levels they were granted.  ``unreadable`` receives the names of the levels
    skipped (a bill must say what it left out).
    """
    tables = []
    for level in levels:
        prefix = f"{level}/{layout.CATALOG_DIR}/"
        try:
            infos = [i for i in store.list_prefix(prefix) if i.key.endswith(".parquet")]
        except StoreError as err:
            log.info("catalog of %r not readable: %s", level, err)
            if unreadable is not None:
                unreadable.append(level)
            continue
        for info in infos:
            try:
                tables.append(conform(pq.read_table(io.BytesIO(store.get(info.key)))))
            except (StoreError, KeyError) as err:
                log.info("catalog row %s not readable: %s", info.key, err)
    if not tables:
        return CATALOG_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    return table.sort_by(
        [("created", "descending"), ("dataset_id", "ascending"), ("version", "descending")]
    )


def rebuild_catalog(store: Store, *, levels: Iterable[str] = ACCESS_LEVELS) -> dict[str, Any]:
    """Rewrite the catalog rows of the versions each level's ledger records.

    A row comes from the ledger and the key path (the level is the folder's, never what a
    manifest says of itself), with the manifest read only when its sha256 is the one the
    ledger recorded.  Nothing is hidden: a manifest that differs from the ledger, a recorded
    version that is gone, a version the ledger never recorded, a row without a version, are
    reported in ``problems`` and left as they are (never rewritten, never deleted).
    """
    import hashlib

    from pipelines.store import ledger
    from pipelines.store.verify import VerifyReport, _recorded_versions

    written = 0
    problems: list[str] = []
    for level in levels:
        scratch = VerifyReport()
        held = _recorded_versions(level, ledger.read(store, level), scratch)
        problems += scratch.problems
        recorded_keys = set()
        for (modality, did, n), entry in sorted(held.items()):
            vprefix = f"{level}/{modality}/{did}/v{n}/"
            recorded_keys.add(layout.catalog_key(level, modality, did, n))
            try:
                raw = store.get(vprefix + layout.MANIFEST)
            except KeyError:
                problems.append(
                    f"{vprefix}: recorded in the ledger (entry {entry.seq}) but its manifest "
                    "is gone: row left as it is"
                )
                continue
            sha = hashlib.sha256(raw).hexdigest()
            if sha != entry.body.get("manifest_sha256"):
                problems.append(
                    f"{vprefix}: manifest sha256 {sha[:16]}... differs from the ledger's "
                    f"(entry {entry.seq}): row left as it is"
                )
                continue
            manifest = dict(json.loads(raw), access=level, modality=modality, version=n)
            write_catalog_row(store, catalog_row(manifest, manifest_sha256=sha))
            written += 1
        for prefix, _, _ in iter_manifests(store, levels=[level]):
            _, modality, did, vname = prefix.rstrip("/").split("/")
            n = layout.parse_version(vname) or 0
            if layout.catalog_key(level, modality, did, n) not in recorded_keys:
                problems.append(
                    f"{prefix}: a version the {level} ledger never recorded: no row written "
                    "(published before the ledger existed: `binds adopt`)"
                )
        for info in store.list_prefix(f"{level}/{layout.CATALOG_DIR}/"):
            if info.key.endswith(".parquet") and info.key not in recorded_keys:
                problems.append(f"{info.key}: a row of no recorded version: left as it is")
    return {"rows": written, "problems": sorted(set(problems))}


def select_versions(
    store: Store, *, levels: Iterable[str] = ACCESS_LEVELS, latest: bool = False, **filters: Any
):
    """The catalog rows of ``store`` matching every filter, as a pandas DataFrame, newest first.

    The filters are those of :func:`pipelines.access.catalog` (``modality="cryoem"``,
    ``organisms="NCBITaxon:9606"``, ``resolution_angstrom__max=3.5`` ...; ``None``: no filter);
    ``latest``: only the newest version of each dataset.  Reads through the :class:`Store`
    (what ``binds catalog`` uses); the AI teams' reader reads the same rows through fsspec.

    Raises
    ------
    KeyError
        A filter names no catalog column, or an unknown operator.
    """
    df = filter_frame(read_catalog(store, levels=levels).to_pandas(), filters)
    return latest_only(df) if latest else df


def sample_rows(versions) -> list[dict[str, Any]]:
    """One dict per (sample, version) of a :func:`select_versions` frame: the sample's fields
    (``sample_id``, ``organism``, ``tissue``, ``cell_type``, ``compound``: ontology ids) with
    ``dataset_id``, ``version``, ``modality`` and ``access``."""
    return [
        {
            **smp,
            "dataset_id": r.dataset_id,
            "version": int(r.version),
            "modality": r.modality,
            "access": r.access,
        }
        for r in versions.itertuples()
        for smp in (r.samples if r.samples is not None else [])
    ]


def version_records(versions) -> list[dict[str, Any]]:
    """The rows of a :func:`select_versions` frame as JSON-ready dicts, the QC metrics as a
    ``qc`` object (instead of the ``qc_json`` text column)."""
    rows = json.loads(versions.to_json(orient="records", date_format="iso"))
    for r in rows:
        r["qc"] = json.loads(r.pop("qc_json") or "{}")
    return rows
