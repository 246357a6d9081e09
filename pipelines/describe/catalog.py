"""The catalog: one row per committed version, under each access level.

Under ``<access>/catalog/`` (a bucket policy on ``<access>/`` hides restricted titles from those
without access)::

    <modality>--<dataset_id>--v<N>.parquet   the version's row (one small file per version:
                                             publishing never rewrites what another wrote)
    _log/<shard>/<seq>.parquet               the change log: every row written or removed, in
                                             order (put-if-absent, numbered without gaps)
    _snapshots/<seq>.parquet                 compacted: the whole level after log entry <seq>

Reading a level costs a constant number of requests plus one per log entry since the newest
snapshot (:mod:`pipelines.access.catalog_log`), whatever the history; the publisher compacts
every ``BINDS_CATALOG_COMPACT_EVERY`` (100) entries, best effort, and ``binds catalog
--compact`` does it on demand.  Any Parquet reader reads a snapshot as it is::

    pd.read_parquet("store/open/catalog/_snapshots/000000000042.parquet")

The rows are rebuildable from the ledgers and manifests (``binds catalog --rebuild``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import modalities
from pipelines.access import catalog_log
from pipelines.access.catalog_json import json_codec, table_records
from pipelines.access.catalog_schema import (
    CATALOG_SCHEMA,
    FIGURES,
    SELECTION_FIELDS,
    USAGE_COLUMNS,
    conform,
    empty_catalog,
    filter_table,
    typed_value,
)
from pipelines.describe.jsonld import ONTOLOGIES
from pipelines.describe.metadata import ACCESS_LEVELS
from pipelines.describe.verdict import evaluate
from pipelines.store import layout
from pipelines.store.base import Store, StoreError
from pipelines.toolkit.qc import Verdict

log = logging.getLogger(__name__)
COMPACT_EVERY_ENV = "BINDS_CATALOG_COMPACT_EVERY"
DEFAULT_COMPACT_EVERY = 100
REPORT = "qc/report.html"  # the version's QC report, when the workflow wrote one


def _modality_of(m: Mapping[str, Any]) -> str | None:
    """The modality whose metrics these are (``metrics["modality"]``, else by its keys)."""
    if isinstance(m.get("modality"), str):
        return m["modality"]
    for key, modality in (
        ("resolution_fsc0143_angstrom", "cryoem"),
        ("map_rms", "cryoem"),
        ("plates_qc_fail", "screening"),
        ("n_spectra", "metabolomics"),
        ("n_cells", "transcriptomics"),
        ("n_genes_kept", "transcriptomics"),
    ):
        if key in m:
            return modality
    return None


def qc_verdict(m: Mapping[str, Any]) -> Verdict | None:
    """The version's one QC verdict (docs/qc-verdict.md) from its metrics; None when its
    modality is unknown (no longer installed: no verdict, not a broken catalog)."""
    modality = _modality_of(m)
    if modality is None:
        return None
    try:
        return evaluate(modality, m)
    except Exception:
        return None


def figures(metrics: Mapping[str, Any], modality: str | None = None) -> dict[str, Any]:
    """The typed figure columns of one version from its qc/metrics.json, ``qc_pass`` (True,
    False, None when no check applies) and ``qc_failed`` (the failed checks' names) from its
    verdict."""
    if modality and "modality" not in metrics:
        metrics = {**metrics, "modality": modality}
    verdict = qc_verdict(metrics)
    out = {
        "qc_pass": None if verdict is None else verdict.passed,
        "qc_failed": None if verdict is None else [c.name for c in verdict.failed],
    }
    for name, typ, src in FIGURES:
        if src is not None:
            raw = src(metrics) if callable(src) else metrics.get(src)
            out[name] = typed_value(raw, typ)
    return out


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


def data_entries(manifest: dict[str, Any]) -> list[str]:
    """The top-level ``data/`` entries of a version: its modality's main one first (what a
    reader opens when it names none: ``ModalitySpec.main_data``), the others sorted."""
    entries = sorted(
        {
            "/".join(f["path"].split("/")[:2])
            for f in manifest["files"]
            if f["path"].startswith("data/")
        }
    )
    try:
        main = modalities.spec(manifest["modality"]).main_data
    except Exception:  # a modality not installed here: no main entry to put first
        main = None
    return sorted(entries, key=lambda e: e != main)


def _identity(manifest: dict[str, Any], manifest_sha256: str) -> dict[str, Any]:
    data_paths = data_entries(manifest)
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


class StoreSource:
    """A :class:`Store` as the catalog log's :class:`~pipelines.access.catalog_log.Source`:
    reads in parallel up to the store's own transfer concurrency (16 on S3)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.workers = int(
            getattr(store, "max_concurrency", None) or getattr(store, "max_workers", None) or 8
        )

    def get(self, key: str) -> bytes:
        return self.store.get(key)

    def list(self, prefix: str) -> list[str]:
        return [i.key for i in self.store.list_prefix(prefix) if "/" not in i.key[len(prefix) :]]


def catalog_base(level: str, root: str = "") -> str:
    """The catalog folder of ``level`` (``root="_embargo/"``: of its held versions)."""
    return f"{root}{level}/{layout.CATALOG_DIR}/"


def compact_every() -> int:
    """Log entries after which a publisher compacts (``BINDS_CATALOG_COMPACT_EVERY``)."""
    try:
        return max(1, int(os.environ.get(COMPACT_EVERY_ENV, "") or DEFAULT_COMPACT_EVERY))
    except ValueError:
        return DEFAULT_COMPACT_EVERY


def append_rows(
    store: Store, base: str, rows: list[dict[str, Any]] | pa.Table, op: str = catalog_log.PUT
) -> tuple[int, int, bool]:
    """Append one log entry holding ``rows`` (``op="delete"``: their removal) to the catalog at
    ``base``; return its number, the entries not yet compacted and whether a snapshot exists.

    A constant number of requests: a listing of the snapshots, of the newest log shard(s), one
    put-if-absent (one more per concurrent writer that took the number first).  Entries are
    never deleted, so entry *n - 1* exists whenever *n* is tried: no number is ever skipped or
    reused, and a compaction that saw entries up to *n* will never see a later one below it.
    """
    src = StoreSource(store)
    seqs = catalog_log.snapshot_seqs(src, base)
    seq = seqs[-1] if seqs else 0
    keys = catalog_log.log_keys(src, base, seq)
    n = max(keys[-1][0] if keys else 0, seq) + 1
    data = catalog_log.encode(rows, op)
    while not store.put_if_absent(catalog_log.log_key(base, n), data):
        n += 1  # another writer took it: entry n exists, so n + 1 is the next candidate
    return n, n - seq, bool(seqs)


def compact(store: Store, base: str) -> dict[str, Any]:
    """Write the snapshot of the catalog at ``base`` after its newest log entry.

    Idempotent and safe from several machines at once: the snapshot after entry *n* is the
    same table whoever writes it, written with put-if-absent.  Never deletes or rewrites a row
    file or a log entry; removes the snapshots older than the one it started from (a reader
    that listed that one may still be reading it).
    """
    src = StoreSource(store)
    state = catalog_log.read_state(src, base)
    out = {"catalog": base, "rows": state.table.num_rows, "snapshot": state.tail, "folded": 0}
    if state.pending == 0 and (state.has_snapshot or state.table.num_rows == 0):
        return out  # nothing new (or nothing at all: no objects for a catalog never written)
    written = store.put_if_absent(
        catalog_log.snapshot_key(base, state.tail), catalog_log.encode(state.table)
    )
    out["folded"] = state.pending if written else 0
    try:
        for old in catalog_log.snapshot_seqs(src, base):
            if old < state.snapshot:
                store.delete(catalog_log.snapshot_key(base, old))
    except StoreError as err:  # superseded copies only: a reader never needs them
        log.info("old catalog snapshots of %s left in place: %s", base, err)
    return out


def compact_catalog(
    store: Store, *, levels: Iterable[str] = ACCESS_LEVELS, held: bool = True
) -> list[dict[str, Any]]:
    """:func:`compact` every level (and the held versions' catalogs: ``_embargo/<level>/``)."""
    from pipelines.describe.embargo import EMBARGO_DIR, HELD_LEVELS

    levels = list(levels)
    bases = [catalog_base(lv) for lv in levels]
    if held:
        bases += [catalog_base(lv, f"{EMBARGO_DIR}/") for lv in HELD_LEVELS if lv in levels]
    done = []
    for base in bases:
        try:
            done.append(compact(store, base))
        except StoreError as err:
            if not err.denied:
                raise
            log.info("catalog %s not compacted: %s", base, err)
    return done


def _maybe_compact(store: Store, base: str, pending: int, has_snapshot: bool) -> None:
    """Compact after every :func:`compact_every` entries (and at once when the level has no
    snapshot yet): best effort, a failure never fails the publish (the next one retries)."""
    if has_snapshot and pending < compact_every():
        return
    try:
        compact(store, base)
    except Exception as err:  # the row is written; compaction is an optimisation
        log.warning("catalog compaction of %s deferred: %s", base, err)


def complete_row(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its selection columns read from the version's metadata.jsonld when the
    caller built it from the manifest alone."""
    if "licence" in row and row["licence"] is None:
        try:
            row = {**row, **selection(json.loads(store.get(row["metadata_path"])))}
        except (KeyError, StoreError, ValueError) as err:
            log.warning("metadata of %s not readable for the catalog row: %s", row["path"], err)
    return row


def write_catalog_row(store: Store, row: dict[str, Any], *, compact_now: bool = True) -> str:
    """Write one row: a log entry (what readers see), then the version's row file (the
    record ``binds verify`` checks); compacts the level when it is due."""
    row = complete_row(store, row)
    base = catalog_base(row["access"])
    _, pending, has_snapshot = append_rows(store, base, [row])
    key = layout.catalog_key(row["access"], row["modality"], row["dataset_id"], row["version"])
    store.put(key, _to_parquet([row]))
    if compact_now:
        _maybe_compact(store, base, pending, has_snapshot)
    return key


def remove_catalog_rows(
    store: Store,
    level: str,
    modality: str,
    dataset_id: str,
    versions: Iterable[int],
    *,
    root: str = "",
) -> None:
    """Remove the rows of a dataset's versions (a curator move, an embargo release) so that
    nothing of them stays readable at ``level``: a log entry recording the removal, the row
    files, then a compaction and a purge of the history that held them (older snapshots, the
    log entries naming them, the removal entry itself).  Reads the whole log of the level: a
    curator's action, not a publisher's.  The entries are scrubbed in place (the only
    rewrite of a log entry), never deleted.
    """
    base = catalog_base(level, root)
    numbers = sorted({int(n) for n in versions})
    gone = [
        {"dataset_id": dataset_id, "version": n, "modality": modality, "access": level}
        for n in numbers
    ]
    if not gone:
        return
    append_rows(store, base, gone, catalog_log.DELETE)
    for n in numbers:
        store.delete(f"{root}{layout.catalog_key(level, modality, dataset_id, n)}")
    done = compact(store, base)
    src = StoreSource(store)
    names = {f"{modality}\x1f{dataset_id}\x1f{n}" for n in numbers}
    keys = [
        i.key
        for i in store.list_prefix(f"{base}{catalog_log.LOG_DIR}/")
        if (seq := catalog_log.seq_of(i.key)) is not None and seq <= done["snapshot"]
    ]
    for key, raw in catalog_log.get_many(src, keys).items():
        op, table = catalog_log.decode(raw)
        ids = catalog_log.identities(table)
        if names & set(ids.to_pylist()):
            # scrubbed, not deleted: the entry keeps its number (a writer never reuses one)
            kept = table.filter(pc.invert(pc.is_in(ids, value_set=pa.array(sorted(names)))))
            store.put(key, catalog_log.encode(kept, op))
    for old in catalog_log.snapshot_seqs(src, base):
        if old < done["snapshot"]:
            store.delete(catalog_log.snapshot_key(base, old))


def read_level(store: Store, base: str) -> pa.Table:
    """Every row of the catalog at ``base`` (snapshot plus recent log entries)."""
    return catalog_log.read_state(StoreSource(store), base).table


def read_catalog(
    store: Store, *, levels: Iterable[str] = ACCESS_LEVELS, unreadable: list[str] | None = None
) -> pa.Table:
    """All catalog rows of the access levels this store lets us read, newest first.

    A level we may not read (a bucket policy refusing it) is skipped with a log line: the AI
    teams see the levels they were granted.  ``unreadable`` receives the names of the levels
    skipped (a bill must say what it left out).
    """
    tables = []
    for level in levels:
        try:
            tables.append(read_level(store, catalog_base(level)))
        except StoreError as err:
            log.info("catalog of %r not readable: %s", level, err)
            if unreadable is not None:
                unreadable.append(level)
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty_catalog()
    if len(tables) == 1:
        return tables[0]  # newest first already
    return pa.concat_tables(tables).sort_by(catalog_log.SORT)


def _rebuilt_row(
    store: Store, level: str, key: tuple[str, str, int], entry
) -> tuple[dict | None, str | None]:
    """The row of one recorded version from its manifest (read once), or the problem."""
    import hashlib

    modality, did, n = key
    vprefix = f"{level}/{modality}/{did}/v{n}/"
    try:
        raw = store.get(vprefix + layout.MANIFEST)
    except KeyError:
        return None, (
            f"{vprefix}: recorded in the ledger (entry {entry.seq}) but its manifest "
            "is gone: row left as it is"
        )
    sha = hashlib.sha256(raw).hexdigest()
    if sha != entry.body.get("manifest_sha256"):
        return None, (
            f"{vprefix}: manifest sha256 {sha[:16]}... differs from the ledger's "
            f"(entry {entry.seq}): row left as it is"
        )
    manifest = dict(json.loads(raw), access=level, modality=modality, version=n)
    return complete_row(store, catalog_row(manifest, manifest_sha256=sha)), None


def _same_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
    table = conform(pa.Table.from_pylist([a, b], schema=CATALOG_SCHEMA)).to_pylist()
    return table[0] == table[1]


def rebuild_catalog(
    store: Store, *, levels: Iterable[str] = ACCESS_LEVELS, progress: Any = None
) -> dict[str, Any]:
    """Rewrite the catalog rows of the versions each level's ledger records.

    A row comes from the ledger and the key path (the level is the folder's, never what a
    manifest says of itself), with the manifest read only when its sha256 is the one the
    ledger recorded.  Nothing is hidden: a manifest that differs from the ledger, a recorded
    version that is gone, a version the ledger never recorded, a row without a version, are
    reported in ``problems`` and left as they are (never rewritten, never deleted).

    Each manifest and metadata document is read once, in parallel (the store's concurrency);
    rows that differ from the catalog (or whose row file is missing) are written, as log
    entries of up to 1,000 rows, then the level is compacted.  ``progress(n)`` is called as
    versions are done.
    """
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.store import ledger
    from pipelines.store.verify import VerifyReport, recorded_versions

    written = 0
    problems: list[str] = []
    workers = StoreSource(store).workers
    for level in levels:
        scratch = VerifyReport()
        held = recorded_versions(level, ledger.read(store, level), scratch)
        problems += scratch.problems
        base = catalog_base(level)
        recorded_keys = {layout.catalog_key(level, *k) for k in held}
        files = {
            i.key
            for i in store.list_prefix(base)
            if i.key.endswith(".parquet") and "/" not in i.key[len(base) :]
        }
        current = {
            (r["modality"], r["dataset_id"], int(r["version"])): r
            for r in read_level(store, base).to_pylist()
        }
        changed: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            items = sorted(held.items())
            for (key, _), (row, problem) in zip(
                items,
                pool.map(lambda kv, lv=level: _rebuilt_row(store, lv, *kv), items),
                strict=True,
            ):
                if progress:
                    progress(1)
                if problem:
                    problems.append(problem)
                    continue
                assert row is not None
                fkey = layout.catalog_key(level, *key)
                if fkey not in files or key not in current or not _same_row(current[key], row):
                    changed.append(row)
            list(
                pool.map(
                    lambda r, lv=level: store.put(
                        layout.catalog_key(lv, r["modality"], r["dataset_id"], r["version"]),
                        _to_parquet([r]),
                    ),
                    changed,
                )
            )
        for i in range(0, len(changed), 1000):
            append_rows(store, base, changed[i : i + 1000])
        written += len(changed)
        for prefix in _committed_prefixes(store, level):
            _, modality, did, vname = prefix.rstrip("/").split("/")
            n = layout.parse_version(vname) or 0
            if layout.catalog_key(level, modality, did, n) not in recorded_keys:
                problems.append(
                    f"{prefix}: a version the {level} ledger never recorded: no row written "
                    "(published before the ledger existed: `binds adopt`)"
                )
        for fkey in sorted(files - recorded_keys):
            problems.append(f"{fkey}: a row of no recorded version: left as it is")
        compact(store, base)
    return {"rows": written, "problems": sorted(set(problems))}


def _committed_prefixes(store: Store, level: str) -> list[str]:
    """``<level>/<modality>/<id>/v<N>/`` of every version with a manifest (one listing)."""
    out = []
    for info in store.list_prefix(f"{level}/"):
        parts = info.key.split("/")
        if (
            len(parts) == 5
            and parts[4] == layout.MANIFEST
            and not parts[1].startswith("_")
            and parts[1] != layout.CATALOG_DIR
            and layout.parse_version(parts[3]) is not None
        ):
            out.append("/".join(parts[:4]) + "/")
    return out


def select_table(
    store: Store, *, levels: Iterable[str] = ACCESS_LEVELS, latest: bool = False, **filters: Any
) -> pa.Table:
    """The catalog rows of ``store`` matching every filter, as an Arrow table, newest first.

    The filters are those of :func:`pipelines.access.catalog` (``modality="cryoem"``,
    ``organisms="NCBITaxon:9606"``, ``resolution_angstrom__max=3.5`` ...; ``None``: no filter);
    ``latest``: only the newest version of each dataset.  Reads through the :class:`Store`
    (what ``binds catalog`` uses); the AI teams' reader reads the same rows through fsspec.

    Raises
    ------
    KeyError
        A filter names no catalog column, or an unknown operator.
    """
    return filter_table(read_catalog(store, levels=levels), filters, latest=latest)


def select_versions(
    store: Store, *, levels: Iterable[str] = ACCESS_LEVELS, latest: bool = False, **filters: Any
):
    """:func:`select_table` as a pandas DataFrame."""
    return select_table(store, levels=levels, latest=latest, **filters).to_pandas()


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
    """The rows of a catalog table (Arrow, or a :func:`select_versions` DataFrame) as
    JSON-ready dicts: :func:`pipelines.access.catalog_json.table_records` (floats exact,
    ``created`` as ISO 8601 UTC with milliseconds, dates as ``YYYY-MM-DD``, ``qc_json`` as the
    object ``qc``)."""
    if not isinstance(versions, (pa.Table, pa.RecordBatch)):
        versions = pa.Table.from_pandas(versions, preserve_index=False)
    return table_records(versions)


def dumps_records(records: list[dict[str, Any]]) -> str:
    """JSON text of :func:`version_records` (indented by two spaces)."""
    return json_codec()[1](records).decode()
