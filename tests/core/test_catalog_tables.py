"""The shared table writer (pipelines.toolkit.tables) and the column docs it writes."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.toolkit import tables
from pipelines.toolkit.tables import (
    ColumnDoc,
    UndocumentedColumns,
    columns_for,
    field_docs,
    write_table,
)

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = {
    "rt_s": ColumnDoc("scan start time", "s"),
    "n": ColumnDoc("points"),
    "annot_*": ColumnDoc("annotation column"),
}


def test_write_table_stores_format_and_field_docs(tmp_path):
    table = pa.table({"rt_s": [1.5, 2.5], "n": [3, 4], "annot_GeneID": ["a", "b"]})
    out = write_table(
        table,
        tmp_path / "sub" / "t.parquet",
        format_name="binds-test-t",
        format_version=2,
        columns=COLUMNS,
    )
    schema = pq.read_schema(out)
    assert schema.metadata[b"binds.format"] == b"binds-test-t"
    assert schema.metadata[b"binds.format_version"] == b"2"
    assert schema.field("rt_s").metadata == {b"description": b"scan start time", b"unit": b"s"}
    assert b"unit" not in schema.field("n").metadata
    assert field_docs(schema)["annot_GeneID"] == ColumnDoc("annotation column")
    assert pq.read_table(out).to_pydict()["n"] == [3, 4]
    assert [p.name for p in out.parent.iterdir()] == ["t.parquet"], "no temporary left behind"
    again = write_table(
        table,
        tmp_path / "again.parquet",
        format_name="binds-test-t",
        format_version=2,
        columns=COLUMNS,
    )
    assert again.read_bytes() == out.read_bytes(), "same table, same bytes"


def test_undocumented_column_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(UndocumentedColumns, match="secret_col"):
        write_table(
            pa.table({"n": [1], "secret_col": [2]}),
            tmp_path / "t.parquet",
            format_name="binds-test-t",
            format_version=1,
            columns=COLUMNS,
        )
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    write_table(pa.table({"n": [1]}), path, format_name="f", format_version=1, columns=COLUMNS)
    before = path.read_bytes()

    def broken(*a, **k):
        Path(a[1]).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(tables.pq, "write_table", broken)
    with pytest.raises(OSError):
        write_table(pa.table({"n": [2]}), path, format_name="f", format_version=1, columns=COLUMNS)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_every_documented_column_is_in_the_format_docs():
    """metadata/columns.tsv and docs/formats/<modality>.md name the same columns."""
    docs = {
        m: (ROOT / "docs" / "formats" / f"{m}.md").read_text()
        for m in ("cryoem", "screening", "metabolomics", "transcriptomics")
    }
    missing = []
    for fmt, cols in tables._all_column_docs().items():
        modality = fmt.split("-")[1]
        for name, doc in cols.items():
            assert doc.description, (fmt, name)
            bare = name.rstrip("*")
            if bare and not re.search(re.escape(bare), docs[modality]):
                missing.append((fmt, name))
    assert not missing, (
        f"columns documented in metadata/columns.tsv but not in docs/formats: {missing}"
    )


def test_unknown_format_names_the_file():
    with pytest.raises(KeyError, match=r"columns\.tsv"):
        columns_for("binds-nothing")
