"""The JSON of catalog rows (issue 26): rendered from Arrow in batches, the same bytes as one
dump of the whole list, every value as stored; the filters keep pandas' rows and order."""

from __future__ import annotations

import datetime as dt
import io
import json
import math

import orjson
import pyarrow as pa

from pipelines.access.catalog_json import table_records, write_records_json
from pipelines.access.catalog_schema import CATALOG_SCHEMA, filter_frame, filter_table, latest_only
from pipelines.describe.catalog import version_records

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _row(i: int) -> dict:
    odd = i % 2
    return {
        "dataset_id": f"ds-{i % 7}",
        "version": 1 + i // 7,
        "modality": "cryoem" if odd else "screening",
        "access": "open",
        "title": ['plate "quoted" \\ back', "tab\there, line\nnext, \x01 ctl", "é ü 漢字 😀"][
            i % 3
        ],
        "created": T0 + dt.timedelta(seconds=i, milliseconds=0),
        "n_files": None if i % 5 == 0 else i,  # an integer column with nulls stays integers
        "bytes": 2**62 + i,
        "resolution_angstrom": [3.1234567890123457, None, float("nan"), 1e-7, 1e20, 2.0][i % 6],
        "qc_pass": [True, False, None][i % 3],
        "organisms": [[], None, ["NCBITaxon:9606"], ["a", "b, c"]][i % 4],
        "samples": [
            None,
            [],
            [{"sample_id": f"S{i}", "organism": "NCBITaxon:9606", "tissue": None}, None],
        ][i % 3],
        "acquired": None if odd else dt.date(2024, 2, 29) + dt.timedelta(days=i),
        "embargo_until": dt.date(9999, 12, 31) if i == 3 else None,
        "qc_json": [None, "", '{"b": [1, 2.5, {"c": null}], "a": "x"}'][i % 3],
    }


def _table(n: int = 23) -> pa.Table:
    return pa.Table.from_pylist([_row(i) for i in range(n)], schema=CATALOG_SCHEMA)


def _rendered(table: pa.Table, batch_rows: int) -> bytes:
    buf = io.BytesIO()
    assert write_records_json(table, buf, batch_rows=batch_rows) == table.num_rows
    return buf.getvalue()


def test_batches_give_the_bytes_of_one_dump_and_every_value_as_stored():
    table = _table()
    records = table_records(table)
    whole = orjson.dumps(records, option=orjson.OPT_INDENT_2) + b"\n"
    for batch_rows in (1, 2, 5, 4096):
        assert _rendered(table, batch_rows) == whole
    # several chunks (a snapshot plus log entries), sliced: the same again
    chunked = pa.concat_tables([table.slice(0, 4), table.slice(4, 9), table.slice(13)])
    assert _rendered(chunked, 3) == whole
    assert _rendered(table.slice(0, 0), 10) == b"[]\n"

    back = json.loads(whole)
    first, second, third = back[0], back[1], back[2]
    assert first["created"] == "2026-01-01T00:00:00.000Z" and first["acquired"] == "2024-02-29"
    assert first["resolution_angstrom"] == 3.1234567890123457 and first["n_files"] is None
    assert second["n_files"] == 1 and isinstance(second["n_files"], int)
    assert back[4]["resolution_angstrom"] == 1e20 and back[3]["resolution_angstrom"] == 1e-7
    assert back[2]["resolution_angstrom"] is None  # NaN: no JSON value
    assert back[3]["embargo_until"] == "9999-12-31" and back[0]["bytes"] == 2**62
    assert first["organisms"] == [] and second["organisms"] is None
    assert back[3]["organisms"] == ["a", "b, c"]
    assert first["samples"] is None and second["samples"] == []
    assert third["samples"][0] == {
        "sample_id": "S2",
        "organism": "NCBITaxon:9606",
        "tissue": None,
        "cell_type": None,
        "compound": None,
    }
    assert third["samples"][1] is None
    assert third["qc"] == {"b": [1, 2.5, {"c": None}], "a": "x"} and first["qc"] == {}
    assert second["title"] == "tab\there, line\nnext, \x01 ctl" and third["title"] == "é ü 漢字 😀"
    assert "qc_json" not in first and list(first)[-1] == "qc"
    assert list(first)[:-1] == [n for n in CATALOG_SCHEMA.names if n != "qc_json"]


def test_records_of_a_dataframe_are_those_of_its_table():
    """The data service and scripts may hand over a pandas frame (select_versions)."""
    table = _table()
    frame_records = version_records(table.to_pandas())
    for got, want in zip(frame_records, table_records(table), strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float) and key != "n_files":
                assert got[key] == value or (math.isnan(got[key]) and math.isnan(value))
            elif key != "n_files":  # pandas makes an integer column with nulls float
                assert got[key] == value, key


def test_filter_table_keeps_the_rows_and_order_of_the_pandas_filters():
    table = _table(60)
    frame = table.to_pandas()
    cases = [
        ({"modality": "cryoem"}, False),
        ({"organisms": "NCBITaxon:9606", "n_files__min": 10}, False),
        ({"acquired__min": "2024-03-10", "qc_pass": [True, False]}, False),
        ({"modality": None}, True),
        ({"dataset_id": ["ds-1", "ds-3"]}, True),
        ({}, False),
    ]
    for filters, latest in cases:
        want = filter_frame(frame, {k: v for k, v in filters.items() if v is not None})
        want = latest_only(want) if latest else want
        got = filter_table(table, filters, latest=latest)
        assert got.column("title").to_pylist() == want["title"].tolist()
        assert got.column("version").to_pylist() == want["version"].tolist()
        assert got.schema == table.schema
    try:
        filter_table(table, {"no_such": 1})
    except KeyError as err:
        assert "no catalog column 'no_such'" in str(err)
    else:
        raise AssertionError("an unknown column is refused")


def test_finer_timestamps_are_cut_to_the_millisecond_below_in_both_renderings():
    """``created`` is stored to the second; a table with finer times (another writer, pandas)
    still gives the same text either way (the millisecond below, before 1970 too)."""
    times = [
        dt.datetime(2026, 1, 1, 1, 1, 1, 123456, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=dt.UTC),
        None,
    ]
    table = pa.table({"created": pa.array(times, pa.timestamp("us", tz="UTC"))})
    whole = orjson.dumps(table_records(table), option=orjson.OPT_INDENT_2) + b"\n"
    assert _rendered(table, 2) == whole
    assert [r["created"] for r in json.loads(whole)] == [
        "2026-01-01T01:01:01.123Z",
        "1969-12-31T23:59:59.999Z",
        None,
    ]
