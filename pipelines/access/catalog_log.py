"""The catalog of one access level as a snapshot plus a log of recent rows.

Under ``<level>/catalog/`` (``base`` below)::

    <modality>--<dataset_id>--v<N>.parquet   one row per committed version (the record, as
                                             before; existence checks and ``binds verify``)
    _log/<shard>/<seq, 12 digits>.parquet    the change log: each entry holds rows that were
                                             written (or, with metadata op=delete, removed),
                                             written once with put-if-absent, numbered 1, 2, ...
                                             without gaps; <shard> is seq // 1000 (9 digits)
    _snapshots/<seq, 12 digits>.parquet      compacted snapshot: the whole table after log
                                             entry <seq> (written once, put-if-absent; the
                                             compaction keeps the newest two)

A reader takes the newest snapshot (one listing of ``_snapshots/``, one GET) and applies the
log entries after it, which it finds by listing the shard folders from the snapshot's on: a
constant number of requests plus one GET per recent entry, whatever the history.  A writer
lists the same and writes the next number with put-if-absent (a concurrent writer that got it
first makes it try the next).  Entries are never deleted, so entry *n + 1* is only ever
written after entry *n* exists: every entry a compaction has not seen is numbered after the
snapshot it wrote.  (A curator's removal scrubs the removed rows from the entries that held
them, in place.)  Without a snapshot (a store written before the log existed) the reader
reads the per-version files instead, as the first compaction does.

Light on purpose (pyarrow only): ``binds catalog`` (through the Store) and the AI teams'
reader (through fsspec) share it.  Snapshot names carry numbers only, never a dataset id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.access.catalog_schema import CATALOG_SCHEMA, conform, empty_catalog

log = logging.getLogger(__name__)

LOG_DIR = "_log"
SNAPSHOT_DIR = "_snapshots"
SHARD = 1000  # log entries per shard folder: one listing page on S3
OP_KEY = b"binds.catalog.op"
PUT, DELETE = "put", "delete"
IDENTITY = ("modality", "dataset_id", "version")
_SEQ = re.compile(r"(\d{12})\.parquet$")
SORT = [("created", "descending"), ("dataset_id", "ascending"), ("version", "descending")]


def log_key(base: str, seq: int) -> str:
    s = f"{seq:012d}"
    return f"{base}{LOG_DIR}/{s[:9]}/{s}.parquet"


def snapshot_key(base: str, seq: int) -> str:
    return f"{base}{SNAPSHOT_DIR}/{seq:012d}.parquet"


class Source(Protocol):
    """What the catalog needs of a store: reads and the names directly under a folder."""

    workers: int

    def get(self, key: str) -> bytes:
        """The object's bytes; ``KeyError`` when absent."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Keys of the objects directly under ``prefix`` (which ends with ``/``)."""
        ...


def encode(rows: pa.Table | list[dict[str, Any]], op: str = PUT) -> bytes:
    """Parquet bytes of catalog rows (or, ``op="delete"``, of the rows to remove)."""
    table = (
        rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)
    )
    table = conform(table)
    if op != PUT:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), OP_KEY: op.encode()}
        )
    import io

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def decode(raw: bytes) -> tuple[str, pa.Table]:
    import io

    table = pq.ParquetFile(io.BytesIO(raw)).read()  # read_table imports pyarrow.dataset: pandas
    op = (table.schema.metadata or {}).get(OP_KEY, PUT.encode()).decode()
    if table.schema.equals(CATALOG_SCHEMA, check_metadata=False):
        return op, table.replace_schema_metadata(None)
    return op, conform(table)


def get_many(
    src: Source,
    keys: Sequence[str],
    progress: Callable[[int], None] | None = None,
    parse: Callable[[bytes], Any] | None = None,
) -> dict[str, Any]:
    """``{key: bytes}`` (or ``parse(bytes)``) of ``keys`` read in parallel (``src.workers`` at
    once, the parsing too: pyarrow releases the GIL); absent keys are left out."""
    out: dict[str, Any] = {}

    def one(key: str) -> tuple[str, Any]:
        try:
            raw = src.get(key)
        except KeyError:
            return key, None
        return key, parse(raw) if parse else raw

    if len(keys) <= 1 or src.workers <= 1:
        results: Iterable[tuple[str, Any]] = map(one, keys)
        for key, value in results:
            if value is not None:
                out[key] = value
            if progress:
                progress(1)
        return out
    with ThreadPoolExecutor(max_workers=min(src.workers, len(keys))) as pool:
        for key, value in pool.map(one, keys):
            if value is not None:
                out[key] = value
            if progress:
                progress(1)
    return out


def seq_of(key: str) -> int | None:
    """The number of a log entry or snapshot key."""
    m = _SEQ.search(key)
    return int(m.group(1)) if m else None


def log_keys(src: Source, base: str, after: int) -> list[tuple[int, str]]:
    """``(seq, key)`` of every log entry numbered after ``after``, in order: the shard folders
    from ``after``'s on, until an empty one."""
    found: list[tuple[int, str]] = []
    shard = (after + 1) // SHARD
    while True:
        keys = src.list(f"{base}{LOG_DIR}/{shard:09d}/")
        if not keys:
            return sorted(found)
        for key in keys:
            m = _SEQ.search(key)
            if m and int(m.group(1)) > after:
                found.append((int(m.group(1)), key))
        shard += 1


def snapshot_seqs(src: Source, base: str) -> list[int]:
    """Numbers of the snapshots present (one listing: compaction keeps two), ascending."""
    return sorted(
        int(m.group(1)) for k in src.list(f"{base}{SNAPSHOT_DIR}/") if (m := _SEQ.search(k))
    )


def newest_snapshot(src: Source, base: str) -> tuple[int, bytes | None]:
    """``(seq, bytes)`` of the newest snapshot, ``(0, None)`` when there is none."""
    for _ in range(5):  # a compaction may remove the one we listed: list again
        seqs = snapshot_seqs(src, base)
        if not seqs:
            return 0, None
        try:
            return seqs[-1], src.get(snapshot_key(base, seqs[-1]))
        except KeyError:
            continue
    raise OSError(f"{base}: the catalog snapshots keep changing; try again")


def _legacy_rows(src: Source, base: str) -> pa.Table:
    """The per-version row files (what a store written before the log holds)."""
    keys = [k for k in src.list(base) if k.endswith(".parquet") and "--" in k.rsplit("/", 1)[-1]]
    tables = []
    for key, raw in sorted(get_many(src, keys).items()):
        try:
            tables.append(decode(raw)[1])
        except (OSError, pa.ArrowException) as err:
            log.info("catalog row %s not readable: %s", key, err)
    return pa.concat_tables(tables) if tables else empty_catalog()


def identities(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(
        table["modality"].cast(pa.string()),
        table["dataset_id"].cast(pa.string()),
        table["version"].cast(pa.string()),
        "\x1f",
    )


def apply(base: pa.Table, entries: Sequence[tuple[str, pa.Table]]) -> pa.Table:
    """``base`` (sorted newest first) with the log ``entries`` (op, rows) applied in order: the
    last entry naming a version (modality, dataset id, version) decides whether and how it is
    in the table.  Newest first again."""
    if not entries:
        return base
    final: dict[str, tuple[int, int] | None] = {}
    ids = [identities(t).to_pylist() for _, t in entries]
    for i, ((op, _), names) in enumerate(zip(entries, ids, strict=True)):
        for j, name in enumerate(names):
            final[name] = (i, j) if op == PUT else None
    # only the base rows of the datasets the entries name can be replaced: a cheap first cut
    dids = pa.array(sorted({t for _, tb in entries for t in tb["dataset_id"].to_pylist()}))
    candidates = pc.is_in(base["dataset_id"], value_set=dids)
    if pc.any(candidates).as_py():
        replaced = pc.and_(
            candidates, pc.is_in(identities(base), value_set=pa.array(list(final), pa.string()))
        )
        base = base.filter(pc.invert(pc.fill_null(replaced, False)))
    parts = []
    for i, ((_, t), names) in enumerate(zip(entries, ids, strict=True)):
        mask = [final.get(name) == (i, j) for j, name in enumerate(names)]
        if any(mask):
            parts.append(t.filter(pa.array(mask)))
    if not parts:
        return base
    new = pa.concat_tables(parts).sort_by(SORT)
    newest_base = pc.max(base["created"]).as_py() if base.num_rows else None
    oldest_new = pc.min(new["created"]).as_py()
    if new["created"].null_count == 0 and (newest_base is None or oldest_new > newest_base):
        return pa.concat_tables([new, base])  # the usual case: the recent rows come first
    return pa.concat_tables([new, base]).sort_by(SORT)


@dataclass(frozen=True, slots=True)
class State:
    """One level's catalog as a reader sees it."""

    table: pa.Table  # every row, newest first
    snapshot: int  # seq of the snapshot it started from (0: none)
    tail: int  # seq of the newest log entry applied (== snapshot when none)
    has_snapshot: bool

    @property
    def pending(self) -> int:
        """Log entries not yet in a snapshot."""
        return self.tail - self.snapshot


def read_state(src: Source, base: str) -> State:
    """The newest snapshot plus the log entries after it (the per-version files without one)."""
    seq, raw = newest_snapshot(src, base)
    # a snapshot is stored newest first; the per-version files come in any order
    table = decode(raw)[1] if raw is not None else _legacy_rows(src, base).sort_by(SORT)
    keys = log_keys(src, base, seq)
    parsed = get_many(src, [k for _, k in keys], parse=decode)
    table = apply(table, [parsed[k] for _, k in keys if k in parsed])
    return State(table, seq, keys[-1][0] if keys else seq, raw is not None)


__all__ = [
    "DELETE",
    "LOG_DIR",
    "PUT",
    "SHARD",
    "SNAPSHOT_DIR",
    "Source",
    "State",
    "apply",
    "decode",
    "encode",
    "get_many",
    "identities",
    "log_key",
    "log_keys",
    "newest_snapshot",
    "read_state",
    "seq_of",
    "snapshot_key",
    "snapshot_seqs",
]
