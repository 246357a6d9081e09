"""The catalog at scale: a log of row entries plus compacted snapshots (issue #26).

Every catalog read used to GET one Parquet file per version; now a reader takes the newest
snapshot plus the log entries after it.  These tests hold the protocol to its promises:
concurrent publishers and compactions lose no row, compaction never changes what a reader
sees, stores written before the log still read, and both writing and reading a row cost the
same number of store requests whatever the history.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import threading
from collections import Counter

import pyarrow.parquet as pq
import pytest

from pipelines import access
from pipelines.access import catalog_log
from pipelines.describe.catalog import (
    _to_parquet,
    append_rows,
    catalog_base,
    compact,
    compact_catalog,
    read_catalog,
    write_catalog_row,
)
from pipelines.store import layout, open_store
from pipelines.store.base import Store

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def row(i: int, *, level: str = "open", version: int = 1, title: str | None = None) -> dict:
    """A synthetic catalog row (what catalog_row makes of a manifest), dataset ``ds-<i>``."""
    did = f"binds-2026-{i:06d}-screening"
    prefix = f"{level}/screening/{did}/v{version}/"
    return {
        "dataset_id": did,
        "version": version,
        "modality": "screening",
        "access": level,
        "title": title or f"plate {i}",
        "created": T0 + dt.timedelta(seconds=i),
        "n_files": 3,
        "bytes": 1000 + i,
        "licence": "CC-BY-4.0",
        "organisms": ["NCBITaxon:9606"],
        "path": prefix,
        "metadata_path": prefix + layout.METADATA,
        "data_paths": ["data/wells.parquet"],
    }


def rows_of(table) -> set[tuple[str, int, str]]:
    return {(r["dataset_id"], r["version"], r["title"]) for r in table.to_pylist()}


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_bucket") + "/curated"


class Counting(Store):
    """A store that counts the requests made through it (by operation)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(read_only=inner.read_only)
        self.inner, self.url, self.calls = inner, inner.url, Counter()
        self.max_workers = 1

    @property
    def supports_etag_md5(self) -> bool:
        return self.inner.supports_etag_md5

    def _count(self, op):
        self.calls[op] += 1

    def get(self, key):
        self._count("get")
        return self.inner.get(key)

    def open_read(self, key, *, chunk_size=8 << 20):
        self._count("get")
        return self.inner.open_read(key, chunk_size=chunk_size)

    def head(self, key):
        self._count("head")
        return self.inner.head(key)

    def list_prefix(self, prefix):
        self._count("list")
        return self.inner.list_prefix(prefix)

    def put(self, key, data):
        self._count("put")
        self.inner.put(key, data)

    def put_if_absent(self, key, data):
        self._count("put_if_absent")
        return self.inner.put_if_absent(key, data)

    def upload_files(self, items, *, progress=None):
        self._count("upload")
        self.inner.upload_files(items, progress=progress)

    def delete(self, key):
        self._count("delete")
        self.inner.delete(key)

    def total(self) -> int:
        return sum(self.calls.values())


def test_concurrent_publishers_and_compactions_lose_no_row(store_url, monkeypatch):
    """4 publishers write 15 rows each while 2 compactors compact without pause (and the
    publishers compact every 5 rows themselves): every row is in the catalog, once."""
    monkeypatch.setenv("BINDS_CATALOG_COMPACT_EVERY", "5")
    store = open_store(store_url)
    n_writers, per_writer = 4, 10
    done = threading.Event()
    errors: list[BaseException] = []

    def publisher(w: int) -> None:
        try:
            for k in range(per_writer):
                write_catalog_row(store, row(w * 1000 + k))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def compactor() -> None:
        try:
            while not done.is_set():
                compact(store, catalog_base("open"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    compactors = [threading.Thread(target=compactor) for _ in range(2)]
    writers = [threading.Thread(target=publisher, args=(w,)) for w in range(n_writers)]
    for t in compactors + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in compactors:
        t.join()
    assert not errors, errors
    want = {
        (row(w * 1000 + k)["dataset_id"], 1) for w in range(n_writers) for k in range(per_writer)
    }
    cat = read_catalog(store)
    got = [(r["dataset_id"], r["version"]) for r in cat.to_pylist()]
    assert sorted(got) == sorted(want)  # every row, none twice
    compact(store, catalog_base("open"))
    assert sorted(
        (r["dataset_id"], r["version"]) for r in read_catalog(store).to_pylist()
    ) == sorted(want)
    # the log numbers every entry once, 1..n without gaps
    src = catalog_log_source(store)
    seqs = [s for s, _ in catalog_log.log_keys(src, "open/catalog/", 0)]
    assert seqs == list(range(1, n_writers * per_writer + 1))


def catalog_log_source(store):
    from pipelines.describe.catalog import StoreSource

    return StoreSource(store)


def test_compaction_changes_nothing_a_reader_sees(store_url, monkeypatch):
    """Rows, a rewritten row (a rebuild) and rows at two levels: the catalog read after a
    compaction equals the one before, as a table (pipelines.describe.catalog) and as a DataFrame
    (pipelines.access.catalog, through fsspec)."""
    monkeypatch.setenv("BINDS_CATALOG_COMPACT_EVERY", "1000")
    monkeypatch.setenv(
        "AWS_ENDPOINT_URL", __import__("os").environ.get("BINDS_S3_ENDPOINT_URL", "")
    )
    store = open_store(store_url)
    for i in range(12):
        write_catalog_row(store, row(i, level="open" if i % 3 else "consortium"))
    write_catalog_row(store, row(4, title="plate 4, corrected"))  # the same version again
    before = read_catalog(store)
    before_df = access.catalog(store_url)
    assert before.num_rows == 12 and len(before_df) == 12
    assert "plate 4, corrected" in before["title"].to_pylist()
    assert "plate 4" not in before["title"].to_pylist()
    done = compact_catalog(store)
    assert {d["catalog"] for d in done if d["folded"]} == {"open/catalog/", "consortium/catalog/"}
    after = read_catalog(store)
    assert after.equals(before)
    after_df = access.catalog(store_url)
    assert after_df.equals(before_df)
    # compaction again: nothing to do, nothing written
    keys = sorted(i.key for i in store.list_prefix("open/catalog/"))
    assert all(d["folded"] == 0 for d in compact_catalog(store))
    assert sorted(i.key for i in store.list_prefix("open/catalog/")) == keys
    # snapshot names carry numbers only, never a dataset id
    snaps = [k for k in keys if "/_snapshots/" in k]
    assert snaps and all("binds-" not in k for k in snaps)
    # a row after the snapshot is read on top of it
    write_catalog_row(store, row(99))
    assert read_catalog(store).num_rows == 13
    assert len(access.catalog(store_url)) == 13


def test_a_store_written_before_the_log_still_reads(store_url):
    """Per-version row files written the old way (no log, no snapshot) are read as before;
    the first compaction folds them into a snapshot, later rows come on top."""
    store = open_store(store_url)
    for i in range(5):
        r = row(i)
        store.put(layout.catalog_key("open", "screening", r["dataset_id"], 1), _to_parquet([r]))
    assert rows_of(read_catalog(store)) == {
        (row(i)["dataset_id"], 1, f"plate {i}") for i in range(5)
    }
    write_catalog_row(store, row(5))  # the first row of the log compacts the level at once
    snaps = [i.key for i in store.list_prefix("open/catalog/_snapshots/")]
    assert len(snaps) == 1
    snapshot = pq.read_table(io.BytesIO(store.get(snaps[0])))
    assert snapshot.num_rows == 6  # the five old rows folded in, with the new one
    write_catalog_row(store, row(6))
    assert len(rows_of(read_catalog(store))) == 7


def _cost(store: Counting, action) -> int:
    before = store.total()
    action()
    return store.total() - before


@pytest.mark.parametrize("url", ["local", "s3"])
def test_writing_compacting_and_reading_cost_the_same_requests_at_any_history(
    url, tmp_path, request
):
    """The store requests of writing one row (log entry + row file), of a compaction of 10
    new rows and of a catalog read are the same at 100 versions and at 5,000."""
    root = str(tmp_path / "store") if url == "local" else request.getfixturevalue("s3_bucket")
    store = Counting(open_store(root))
    base = "open/catalog/"
    first = _cost(store, lambda: write_catalog_row(store, row(0)))
    second = _cost(store, lambda: write_catalog_row(store, row(1)))
    assert first > second  # the level's first row also writes its first snapshot
    writes, compactions, reads = [], [], []
    have = 2
    for history in (100, 5000):
        for start in range(have, history, 1000):  # bulk history: entries of up to 1,000 rows
            append_rows(store, base, [row(i) for i in range(start, min(history, start + 1000))])
        compact(store, base)
        writes.append(_cost(store, lambda h=history: write_catalog_row(store, row(h + 1))))
        for i in range(10):
            write_catalog_row(store, row(100_000 + history + i), compact_now=False)
        compactions.append(_cost(store, lambda: compact(store, base)))
        write_catalog_row(store, row(200_000 + history), compact_now=False)  # one recent row
        reads.append(_cost(store, lambda: read_catalog(store, levels=["open"])))
        have = history
    assert read_catalog(store, levels=["open"]).num_rows == 5000 + 1 + 20 + 2  # 101: twice
    assert writes == [second, second]
    assert compactions[0] == compactions[1]
    assert reads[0] == reads[1] <= 5


def test_cli_compact_and_rebuild_after_the_log_and_snapshots_are_lost(make_stage, tmp_path):
    """`binds catalog --compact` folds the log; with the whole log and every snapshot deleted,
    the catalog reads from the row files, and `binds catalog --rebuild` writes it back from the
    ledger and the manifests."""
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.run.publishing import publish

    root = tmp_path / "store"
    store = open_store(str(root))
    for seed in (1, 2, 3):
        publish(make_stage(str(seed), access="open", dataset_id="ds-c", seed=seed), store)
    cli = CliRunner()
    out = cli.invoke(app, ["catalog", "--compact", "--json", "--store", str(root)])
    assert out.exit_code == 0, out.output
    assert sorted(r["version"] for r in json.loads(out.stdout)) == [1, 2, 3]
    before = read_catalog(store)
    for info in list(store.list_prefix("open/catalog/")):
        if "/_" in info.key:  # the log and the snapshots
            store.delete(info.key)
    assert read_catalog(store).equals(before)  # from the row files
    out = cli.invoke(app, ["catalog", "--rebuild", "--json", "--store", str(root)])
    assert out.exit_code == 0, out.output
    assert list(store.list_prefix("open/catalog/_snapshots/"))
    assert read_catalog(store).equals(before)


# The children end with os._exit once their writes returned: the test is about the catalog,
# and a spawned interpreter's exit can abort in Arrow's thread-pool teardown ("terminate called
# without an active exception", apache/arrow#34314; CI 2026-12-04) after all its work is done.
def _publisher_process(root: str, writer: int, n: int) -> None:
    store = open_store(root)
    for k in range(n):
        write_catalog_row(store, row(writer * 1000 + k))
    os._exit(0)


def _compactor_process(root: str, rounds: int) -> None:
    store = open_store(root)
    for _ in range(rounds):
        compact(store, catalog_base("open"))
    os._exit(0)


def test_publisher_processes_and_a_compactor_process_lose_no_row(tmp_path, monkeypatch):
    """The same as with threads, across processes (separate interpreters, as on several
    machines sharing a folder)."""
    import multiprocessing

    monkeypatch.setenv("BINDS_CATALOG_COMPACT_EVERY", "4")
    root = str(tmp_path / "store")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_publisher_process, args=(root, w, 8)) for w in range(3)]
    procs.append(ctx.Process(target=_compactor_process, args=(root, 30)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    want = sorted((row(w * 1000 + k)["dataset_id"], 1) for w in range(3) for k in range(8))
    store = open_store(root)
    assert sorted((r["dataset_id"], r["version"]) for r in read_catalog(store).to_pylist()) == want
    compact(store, catalog_base("open"))
    assert sorted((r["dataset_id"], r["version"]) for r in read_catalog(store).to_pylist()) == want


def test_catalog_json_keeps_every_value_exactly(tmp_path):
    """`binds catalog --json` (and the data service's /catalog, same records): on main the rows
    went through pandas' to_json, which rounds floats to 10 significant digits (a resolution of
    3.1234567890123457 A printed as 3.123456789)."""
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    root = tmp_path / "store"
    store = open_store(str(root))
    exact = 3.1234567890123457
    first = row(1) | {"resolution_angstrom": exact, "qc_pass": True}
    write_catalog_row(store, first)
    write_catalog_row(store, row(2))
    out = CliRunner().invoke(app, ["catalog", "--json", "--store", str(root)])
    assert out.exit_code == 0, out.output
    records = {r["dataset_id"]: r for r in json.loads(out.stdout)}
    one, two = records[first["dataset_id"]], records[row(2)["dataset_id"]]
    assert one["resolution_angstrom"] == exact and two["resolution_angstrom"] is None
    assert one["created"] == "2026-01-01T00:00:01.000Z" and one["bytes"] == 1001
    assert one["organisms"] == ["NCBITaxon:9606"] and one["qc_pass"] is True
    assert isinstance(one["qc"], dict) and "qc_json" not in one
