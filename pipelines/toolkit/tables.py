"""One way to write a published Parquet table: atomic, versioned, every column documented.

Every table a workflow publishes goes through :func:`write_table`, so readers find the same
things in every file:

* schema metadata ``binds.format`` (e.g. ``binds-screening-wells``) and
  ``binds.format_version`` (e.g. ``1``): which layout of docs/formats/ the file follows;
* per column, Arrow *field* metadata ``description`` and (where the values have one) ``unit``
  (UCUM-style text such as ``angstrom``, ``s``, ``m/z``, ``%``); ``metadata.jsonld`` copies them
  into the Croissant fields, and ``pyarrow.parquet.read_schema(path).field(name).metadata``
  shows them;
* zstd compression, no timestamps: the same table gives the same bytes;
* written to a temporary file next to the target and renamed: a reader or a crashed job never
  leaves a half-written table under the final name.

A column without a :class:`ColumnDoc` is refused (:class:`UndocumentedColumns`): the format
documents must name every published column.  Columns whose names are data-driven (an annotation
file's ``annot_<name>``, a pipeline's obs fields) are documented by a ``prefix*`` key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_KEY = b"binds.format"
FORMAT_VERSION_KEY = b"binds.format_version"
DESCRIPTION_KEY = b"description"
UNIT_KEY = b"unit"


@dataclass(frozen=True, slots=True)
class ColumnDoc:
    """What a column holds and, for quantities, its unit (``None`` for counts, ids, text)."""

    description: str
    unit: str | None = None


class UndocumentedColumns(ValueError):
    """A table was about to be published with columns its format does not describe."""


@cache
def _all_column_docs() -> dict[str, dict[str, ColumnDoc]]:
    from pipelines.resources import metadata_dir

    out: dict[str, dict[str, ColumnDoc]] = {}
    for n, line in enumerate((metadata_dir() / "columns.tsv").read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fmt, name, unit, desc = line.split("\t")
        if name in out.setdefault(fmt, {}):
            raise ValueError(f"metadata/columns.tsv:{n}: {fmt} {name} twice")
        out[fmt][name] = ColumnDoc(desc.strip(), unit.strip() or None)
    return out


def columns_for(format_name: str) -> dict[str, ColumnDoc]:
    """The documented columns of one table format (``metadata/columns.tsv``)."""
    try:
        return dict(_all_column_docs()[format_name])
    except KeyError:
        raise KeyError(
            f"no columns documented for table format {format_name!r} in metadata/columns.tsv"
        ) from None


def column_doc(columns: Mapping[str, ColumnDoc], name: str) -> ColumnDoc | None:
    """The doc of ``name``: an exact key, else the longest ``prefix*`` key it starts with."""
    if name in columns:
        return columns[name]
    wild = [k for k in columns if k.endswith("*") and name.startswith(k[:-1])]
    return columns[max(wild, key=len)] if wild else None


def documented_schema(
    schema: pa.Schema,
    *,
    format_name: str,
    format_version: str | int,
    columns: Mapping[str, ColumnDoc],
) -> pa.Schema:
    """``schema`` with the format keys and each field's description / unit metadata.

    Other schema metadata (e.g. ``binds.screening.settings``, pandas' dtypes) is kept.
    """
    docs = {f.name: column_doc(columns, f.name) for f in schema}
    missing = [name for name, doc in docs.items() if doc is None]
    if missing:
        raise UndocumentedColumns(
            f"{format_name}: no description for column(s) {missing}; "
            "document them (docs/formats/) and in the writer's columns"
        )
    fields = []
    for f in schema:
        doc = docs[f.name]
        assert doc is not None  # checked above
        meta = {**(f.metadata or {}), DESCRIPTION_KEY: doc.description.encode()}
        if doc.unit:
            meta[UNIT_KEY] = doc.unit.encode()
        fields.append(f.with_metadata(meta))
    meta = dict(schema.metadata or {})
    meta[FORMAT_KEY] = format_name.encode()
    meta[FORMAT_VERSION_KEY] = str(format_version).encode()
    return pa.schema(fields, metadata=meta)


def write_table(
    table: pa.Table,
    path: str | os.PathLike[str],
    *,
    format_name: str,
    format_version: str | int,
    columns: Mapping[str, ColumnDoc],
    compression: str = "zstd",
    **parquet_options,
) -> Path:
    """Write ``table`` as Parquet at ``path`` (atomically), documented; returns the path.

    ``parquet_options`` go to :func:`pyarrow.parquet.write_table` (``compression_level``,
    ``row_group_size``, ...).

    Raises
    ------
    UndocumentedColumns
        A column has no entry in ``columns`` (nothing is written).
    """
    path = Path(path)
    schema = documented_schema(
        table.schema, format_name=format_name, format_version=format_version, columns=columns
    )
    table = pa.Table.from_arrays(table.columns, schema=schema)  # keeps the field metadata
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression=compression, store_schema=True, **parquet_options)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def field_docs(schema: pa.Schema) -> dict[str, ColumnDoc]:
    """The column docs stored in a Parquet/Arrow schema (the reverse of :func:`write_table`)."""
    out = {}
    for f in schema:
        md = f.metadata or {}
        if DESCRIPTION_KEY in md:
            unit = md.get(UNIT_KEY)
            out[f.name] = ColumnDoc(md[DESCRIPTION_KEY].decode(), unit.decode() if unit else None)
    return out
