"""Catalog rows as JSON: ``binds catalog --json`` and the data service's ``/catalog``.

Built from the Arrow columns, one column at a time (no pandas): values exactly as stored
(floats unrounded, an integer column with nulls stays integers, NaN and nulls ``null``),
``created`` as ISO 8601 UTC with milliseconds (``2026-12-04T05:30:00.000Z``), dates as
``YYYY-MM-DD``, ``qc_json`` as the object ``qc`` (docs/formats/store.md, "Catalog rows").

100,000 versions make ~220 MB of indented JSON: :func:`write_records_json` renders them in
batches (the Python objects of one batch at a time) with orjson where installed, and the
cyclic garbage collector paused while the batch's dicts and lists are built (they hold no
cycles; left on, it re-scans every object alive at each few hundred allocations).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

QC_COLUMN = "qc_json"
BATCH_ROWS = 4096


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (reference counting still frees)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def json_codec() -> tuple[Callable[[bytes | str], Any], Callable[[Any], bytes]]:
    """``(loads, dumps_indented -> bytes)``: orjson's where installed (it comes with Prefect),
    else the standard library's (the same layout: two-space indent, ``": "``)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - a light install without Prefect
        return json.loads, lambda obj: json.dumps(obj, indent=2).encode()
    return orjson.loads, lambda obj: orjson.dumps(obj, option=orjson.OPT_INDENT_2)


def _valid(arr: pa.Array) -> list[bool]:
    return arr.is_valid().to_pylist()


def _with_nulls(values: list[Any], arr: pa.Array) -> list[Any]:
    if not arr.null_count:
        return values
    return [v if ok else None for v, ok in zip(values, _valid(arr), strict=True)]


def _numbers(arr: pa.Array, dtype: str) -> np.ndarray:
    """The values buffer of a fixed-width array as numpy (``Array.to_numpy`` imports pandas:
    ~0.5 s of a command's start); slots of nulls hold anything."""
    width = np.dtype(dtype).itemsize
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * width)


def _times(arr: pa.Array) -> list[Any]:
    """Timestamps as ISO 8601 with milliseconds, ``Z`` when the column has a time zone."""
    raw = _numbers(arr, "int64").view(f"datetime64[{arr.type.unit}]")  # UTC when zoned
    instants = raw.astype("datetime64[ms]")
    tz = "UTC" if arr.type.tz else "naive"
    text = np.datetime_as_string(instants, unit="ms", timezone=tz)
    return _with_nulls(text.tolist(), arr)


def _dates(arr: pa.Array) -> list[Any]:
    days = _numbers(arr, "int32").astype("datetime64[D]")
    return _with_nulls(np.datetime_as_string(days, unit="D").tolist(), arr)


def _lists(arr: pa.Array) -> list[Any]:
    offsets = arr.offsets.to_pylist()
    first = offsets[0]
    items = array_values(arr.values.slice(first, offsets[-1] - first))
    out = [items[a - first : b - first] for a, b in pairwise(offsets)]
    return _with_nulls(out, arr)


def _structs(arr: pa.Array) -> list[Any]:
    names = [f.name for f in arr.type]
    fields = [array_values(child) for child in arr.flatten()]
    return _with_nulls([dict(zip(names, v, strict=True)) for v in zip(*fields, strict=True)], arr)


def _floats(arr: pa.Array) -> list[Any]:
    values = arr.to_pylist()
    if np.isnan(_numbers(arr, arr.type.to_pandas_dtype().__name__)).any():  # NaN: no JSON value
        return [None if v is not None and v != v else v for v in values]
    return values


def array_values(arr: pa.Array | pa.ChunkedArray) -> list[Any]:
    """One column as JSON-ready Python values (``None`` for missing)."""
    if isinstance(arr, pa.ChunkedArray):
        out: list[Any] = []
        for chunk in arr.chunks:
            out += array_values(chunk)
        return out
    t = arr.type
    if pa.types.is_timestamp(t):
        return _times(arr)
    if pa.types.is_date32(t):
        return _dates(arr)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _lists(arr)
    if pa.types.is_struct(t):
        return _structs(arr)
    if pa.types.is_floating(t) and len(arr):
        return _floats(arr)
    return arr.to_pylist()


def table_records(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """The catalog rows of ``table`` as JSON-ready dicts, in its column order, ``qc_json``
    replaced by the object ``qc`` (last)."""
    loads = json_codec()[0]
    names = [n for n in table.column_names if n != QC_COLUMN]
    with gc_paused():
        columns = [array_values(table.column(n)) for n in names]
        if QC_COLUMN in table.column_names:
            names.append("qc")
            columns.append([loads(v or "{}") for v in table.column(QC_COLUMN).to_pylist()])
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def write_records_json(table: pa.Table, stream: BinaryIO, batch_rows: int = BATCH_ROWS) -> int:
    """Write the JSON array of :func:`table_records` (two-space indent, newline-terminated) to
    the binary ``stream``, ``batch_rows`` rows at a time; returns the rows written.  The bytes
    are those of one dump of the whole list."""
    dumps = json_codec()[1]
    written = 0
    for batch in table.to_batches(max_chunksize=batch_rows):
        if not batch.num_rows:
            continue
        with gc_paused():
            body = dumps(table_records(batch))
        stream.write(b"[\n" if not written else b",\n")
        stream.write(body[2:-2])  # the rows without the list's "[\n" and "\n]"
        written += batch.num_rows
    stream.write(b"\n]\n" if written else b"[]\n")
    return written


__all__ = ["array_values", "gc_paused", "json_codec", "table_records", "write_records_json"]
