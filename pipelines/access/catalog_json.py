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
from functools import cache
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


# --------------------------------------------------------------- the JSON text, from Arrow
# The text of orjson.dumps(table_records(batch), option=OPT_INDENT_2), byte for byte, built by
# Arrow's string kernels column by column (no Python object per value): a value at depth d
# (a row's values: 2) has its items / fields on lines indented by 2 (d + 1) spaces and its
# closing bracket at 2 d.  Floats and qc objects are formatted by orjson itself.


def _pad(depth: int) -> str:
    return "\n" + "  " * depth


def _from_pieces(pieces: list[bytes]) -> pa.Array:
    """A string array of UTF-8 ``pieces`` (``pa.array`` would import pandas)."""
    offsets = np.zeros(len(pieces) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)), out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(pieces), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(pieces))]
    )


@cache
def _lit(text: str) -> pa.Scalar:
    """A string scalar for the compute kernels (``pa.scalar``, and the kernels given a Python
    str, would import pandas: ~0.5 s)."""
    return _from_pieces([text.encode()])[0]


def _constant(n: int, text: str) -> pa.Array:
    import pyarrow.compute as pc

    return pc.fill_null(pa.nulls(n, pa.string()), _lit(text))


def _dumped(values: list[Any]) -> pa.Array:
    """orjson's text of each value (floats, strings to escape, anything else)."""
    import orjson

    return _from_pieces([orjson.dumps(v) for v in values])


def _float_texts(arr: pa.Array) -> pa.Array:
    """orjson's shortest round trip of each float (NaN and nulls: ``null``): one dump of the
    column, split at its commas (no float's text has one)."""
    import orjson

    body = orjson.dumps(arr.to_pylist())
    return _from_pieces(body[1:-1].split(b",") if len(arr) else [])


def _quoted(arr: pa.Array) -> pa.Array:
    """JSON strings: quoted as they are unless one needs escapes (orjson's: ``"``, ``\\``,
    control characters), then by orjson."""
    import pyarrow.compute as pc

    if pc.any(pc.match_substring_regex(arr, r'["\\\x00-\x1f]')).as_py():
        return _dumped(arr.to_pylist())
    return pc.binary_join_element_wise(_lit('"'), arr, _lit('"'), _lit(""))


def _scalar_texts(arr: pa.Array) -> pa.Array | None:
    """The JSON of a column of scalars (nulls stay null), or ``None``: not a scalar type."""
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _quoted(arr)
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return arr.cast(pa.string())
    if pa.types.is_floating(t):
        return _float_texts(arr)
    if pa.types.is_date32(t):
        return pc.binary_join_element_wise(_lit('"'), arr.cast(pa.string()), _lit('"'), _lit(""))
    if pa.types.is_timestamp(t):
        if t.unit in ("us", "ns"):  # to the millisecond below, as numpy (table_records) does
            arr = pc.floor_temporal(arr, 1, "millisecond")
        millis = arr.cast(pa.timestamp("ms", tz=t.tz), safe=False)
        text = pc.strftime(millis, format="%Y-%m-%dT%H:%M:%S")
        return pc.binary_join_element_wise(_lit('"'), text, _lit('Z"' if t.tz else '"'), _lit(""))
    return None


def _list_texts(arr: pa.Array, depth: int) -> pa.Array:
    import pyarrow.compute as pc

    offsets = arr.offsets
    first = offsets[0].as_py()
    if offsets[-1].as_py() == first:  # no items: every list empty (or null)
        out = _constant(len(arr), "[]")
        return pc.if_else(arr.is_valid(), out, _lit("null")) if arr.null_count else out
    items = value_texts(arr.values.slice(first, offsets[-1].as_py() - first), depth + 1)
    kind = pa.LargeListArray if pa.types.is_large_list(arr.type) else pa.ListArray
    lists = kind.from_arrays(pc.subtract(offsets, offsets[0]), items)
    inner = _pad(depth + 1)
    joined = pc.binary_join(lists, _lit("," + inner))  # "": no items (an item is never "")
    wrapped = pc.binary_join_element_wise(
        _lit("[" + inner), joined, _lit(_pad(depth) + "]"), _lit("")
    )
    out = pc.if_else(pc.equal(joined, _lit("")), _lit("[]"), wrapped)
    return pc.if_else(arr.is_valid(), out, _lit("null")) if arr.null_count else out


def _object_texts(names: list[str], texts: list[pa.Array], depth: int) -> pa.Array:
    """``{"name": text, ...}`` per row, the fields at ``depth + 1``."""
    import orjson
    import pyarrow.compute as pc

    inner = _pad(depth + 1)
    parts: list[Any] = []
    for i, (name, text) in enumerate(zip(names, texts, strict=True)):
        parts += [_lit(("{" if i == 0 else ",") + inner + orjson.dumps(name).decode() + ": "), text]
    return pc.binary_join_element_wise(*parts, _lit(_pad(depth) + "}"), _lit(""))


def value_texts(arr: pa.Array, depth: int) -> pa.Array:
    """The JSON text of every value of ``arr`` (no nulls left: ``null``) as orjson writes it
    with a two-space indent at ``depth``."""
    import pyarrow.compute as pc

    if arr.null_count == len(arr):  # a figure of another modality, a list never filled
        return _constant(len(arr), "null")
    text = _scalar_texts(arr)
    if text is None and (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        text = _list_texts(arr, depth)
    elif text is None and pa.types.is_struct(arr.type) and arr.type.num_fields:
        names = [f.name for f in arr.type]
        fields = [value_texts(child, depth + 1) for child in arr.flatten()]
        text = _object_texts(names, fields, depth)
        text = pc.if_else(arr.is_valid(), text, _lit("null")) if arr.null_count else text
    elif text is None:
        text = _dumped(array_values(arr))
    return pc.fill_null(text, _lit("null")) if text.null_count else text


def _qc_texts(arr: pa.Array) -> pa.Array:
    """The ``qc`` objects (``qc_json`` parsed), indented as a row's value."""
    import orjson

    indent = orjson.OPT_INDENT_2
    return _from_pieces(
        [
            orjson.dumps(orjson.loads(v or "{}"), option=indent).replace(b"\n", b"\n    ")
            for v in arr.to_pylist()
        ]
    )


def batch_json(batch: pa.RecordBatch) -> pa.Array:
    """The JSON text of each row of ``batch`` (a :func:`table_records` dict, as orjson writes
    it inside the indented list)."""
    names = [n for n in batch.schema.names if n != QC_COLUMN]
    texts = [value_texts(batch.column(n), 2) for n in names]
    if QC_COLUMN in batch.schema.names:
        names.append("qc")
        texts.append(_qc_texts(batch.column(QC_COLUMN)))
    return _object_texts(names, texts, 1)


def _row_bytes(batch: pa.RecordBatch) -> memoryview:
    """The rows of ``batch`` joined by ``,\\n  `` (a view of Arrow's buffer: no copy)."""
    import pyarrow.compute as pc

    joined = pc.binary_join_element_wise(batch_json(batch), _lit(",\n  "), _lit(""))
    offsets = np.frombuffer(joined.buffers()[1], np.int32, len(joined) + 1, joined.offset * 4)
    start, end = int(offsets[0]), int(offsets[-1])
    return memoryview(joined.buffers()[2])[start : end - 4]


def write_records_json(
    table: pa.Table, stream: BinaryIO, batch_rows: int = BATCH_ROWS, threads: int = 2
) -> int:
    """Write the JSON array of :func:`table_records` (two-space indent, newline-terminated) to
    the binary ``stream``, ``batch_rows`` rows at a time; returns the rows written.  The bytes
    are those of one orjson dump of the whole list (without orjson: the standard library's).

    ``threads`` batches are rendered at once (Arrow's kernels release the GIL), written in
    order as they are done."""
    try:
        import orjson  # noqa: F401
    except ImportError:  # pragma: no cover - a light install without Prefect
        return _write_dumped(table, stream, batch_rows)
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    batches = [b for b in table.to_batches(max_chunksize=batch_rows) if b.num_rows]
    pending: deque[Future[memoryview]] = deque()
    written = 0
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for batch in batches:
            pending.append(pool.submit(_row_bytes, batch))
            while len(pending) > threads or (pending and len(pending) + written == len(batches)):
                stream.write(b",\n  " if written else b"[\n  ")
                stream.write(pending.popleft().result())
                written += 1
    stream.write(b"\n]\n" if batches else b"[]\n")
    return sum(b.num_rows for b in batches)


def _write_dumped(table: pa.Table, stream: BinaryIO, batch_rows: int) -> int:
    """:func:`write_records_json` through Python dicts and ``json_codec``'s dumps."""
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


__all__ = [
    "array_values",
    "batch_json",
    "gc_paused",
    "json_codec",
    "table_records",
    "value_texts",
    "write_records_json",
]
