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
import hashlib
import io
import json
import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.metadata import ACCESS_LEVELS
from pipelines.store import layout
from pipelines.store.base import Store, StoreError

log = logging.getLogger(__name__)

CATALOG_SCHEMA = pa.schema([
    pa.field("dataset_id", pa.string(), nullable=False),
    pa.field("version", pa.int32(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("access", pa.string(), nullable=False),
    pa.field("request_id", pa.string()),
    pa.field("title", pa.string()),
    pa.field("created", pa.timestamp("s", tz="UTC")),
    pa.field("n_files", pa.int64()),
    pa.field("bytes", pa.int64()),
    pa.field("content_digest", pa.string()),
    pa.field("manifest_sha256", pa.string()),
    pa.field("path", pa.string()),            # key prefix of the version, relative to the store root
    pa.field("data_paths", pa.list_(pa.string())),  # top-level entries of data/, e.g. data/map.ome.zarr
    pa.field("qc_json", pa.string()),         # qc/metrics.json: the key QC figures, as JSON
    # usage totals (manifest "usage", from _meta/usage.json): what billing reads
    pa.field("core_hours", pa.float64()),
    pa.field("gpu_hours", pa.float64()),
    pa.field("peak_rss_mb", pa.float64()),
    pa.field("stored_bytes", pa.int64()),
], metadata={b"binds.catalog.format_version": b"1"})


def catalog_row(manifest: dict[str, Any], *, manifest_sha256: str) -> dict[str, Any]:
    data_paths = sorted({"/".join(f["path"].split("/")[:2]) for f in manifest["files"]
                         if f["path"].startswith("data/")})
    created = manifest.get("created")
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
        "content_digest": manifest.get("content_digest"),
        "manifest_sha256": manifest_sha256,
        "path": layout.version_prefix(manifest["access"], manifest["modality"],
                                      manifest["dataset_id"], int(manifest["version"])),
        "data_paths": data_paths,
        "qc_json": json.dumps(manifest.get("qc") or {}, sort_keys=True),
        **{k: (manifest.get("usage") or {}).get(k)
           for k in ("core_hours", "gpu_hours", "peak_rss_mb", "stored_bytes")},
    }


def _to_parquet(rows: list[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA), buf, compression="zstd")
    return buf.getvalue()


def _conform(table: "pa.Table") -> "pa.Table":
    """A row written by an older binds (fewer columns) read with today's schema: nulls."""
    for f in CATALOG_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table.select(CATALOG_SCHEMA.names).cast(CATALOG_SCHEMA)


def write_catalog_row(store: Store, row: dict[str, Any]) -> str:
    key = layout.catalog_key(row["access"], row["modality"], row["dataset_id"], row["version"])
    store.put(key, _to_parquet([row]))
    return key


def read_catalog(store: Store, *, levels: Iterable[str] = ACCESS_LEVELS) -> "pa.Table":
    """All catalog rows of the access levels this store lets us read, newest first.

    A level we may not list (a bucket policy refusing it) is skipped with a log line: the AI
    teams see the levels they were granted.
    """
    tables = []
    for level in levels:
        prefix = f"{level}/{layout.CATALOG_DIR}/"
        try:
            infos = [i for i in store.list_prefix(prefix) if i.key.endswith(".parquet")]
        except StoreError as err:
            log.info("catalog of %r not readable: %s", level, err)
            continue
        for info in infos:
            try:
                tables.append(_conform(pq.read_table(io.BytesIO(store.get(info.key)))))
            except (StoreError, KeyError) as err:
                log.info("catalog row %s not readable: %s", info.key, err)
    if not tables:
        return CATALOG_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    return table.sort_by([("created", "descending"), ("dataset_id", "ascending"), ("version", "descending")])


def iter_manifests(store: Store, *, levels: Iterable[str] = ACCESS_LEVELS):
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


def rebuild_catalog(store: Store, *, levels: Iterable[str] = ACCESS_LEVELS) -> dict[str, int]:
    """Rewrite every catalog row from the manifests; drop rows whose version has no manifest."""
    written = removed = 0
    wanted: set[str] = set()
    for _, manifest, sha in iter_manifests(store, levels=levels):
        wanted.add(write_catalog_row(store, catalog_row(manifest, manifest_sha256=sha)))
        written += 1
    for level in levels:
        for info in list(store.list_prefix(f"{level}/{layout.CATALOG_DIR}/")):
            if info.key.endswith(".parquet") and info.key not in wanted:
                store.delete(info.key)
                removed += 1
    return {"rows": written, "removed": removed}
