"""The catalog table: its columns, the per-modality figures, and row filtering.

Light on purpose (pyarrow and pandas only): the reader API and ``binds catalog`` share it.

Null rule for every figure and selection column: **null means "not applicable to this
modality, or not measured / not given for this version"**, never a string in a number column
(a cryo-EM resolution that is beyond Nyquist is null with ``resolution_beyond_nyquist`` true).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa

CATALOG_FORMAT_VERSION = "2"
SAMPLE_KEYS = ("sample_id", "organism", "tissue", "cell_type", "compound")

IDENTITY_FIELDS = [
    pa.field("dataset_id", pa.string(), nullable=False),
    pa.field("version", pa.int32(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("access", pa.string(), nullable=False),
    pa.field("request_id", pa.string()),
    pa.field("title", pa.string()),
    pa.field("created", pa.timestamp("s", tz="UTC")),
    pa.field("n_files", pa.int64()),
    pa.field("bytes", pa.int64()),
    pa.field("data_bytes", pa.int64()),
    pa.field("content_digest", pa.string()),
    pa.field("manifest_sha256", pa.string()),
    pa.field("path", pa.string()),  # key prefix of the version, relative to the store root
    pa.field("metadata_path", pa.string()),  # path + metadata.jsonld
    pa.field("report_path", pa.string()),  # path + qc/report.html, when the version has one
    pa.field(
        "data_paths", pa.list_(pa.string())
    ),  # top-level entries of data/, e.g. data/map.ome.zarr
]
SELECTION_FIELDS = [
    pa.field("organisms", pa.list_(pa.string())),  # NCBITaxon ids of the samples
    pa.field("tissues", pa.list_(pa.string())),  # UBERON ids
    pa.field("cell_types", pa.list_(pa.string())),  # CL ids
    pa.field("compounds", pa.list_(pa.string())),  # CHEBI / PUBCHEM.COMPOUND ids
    pa.field("sample_ids", pa.list_(pa.string())),
    # one entry per sample, for joining across modalities (pipelines.access.samples)
    pa.field("samples", pa.list_(pa.struct([pa.field(n, pa.string()) for n in SAMPLE_KEYS]))),
    pa.field("licence", pa.string()),  # SPDX id
    pa.field("acquired", pa.date32()),
    pa.field("instrument_model", pa.string()),
    pa.field("support_unit", pa.string()),
    pa.field("format_version", pa.string()),  # of the modality's data format (docs/formats/)
    pa.field("data_formats", pa.list_(pa.string())),  # table formats, e.g. binds-screening-wells/1
    pa.field("embargo_until", pa.date32()),
    pa.field("data_use", pa.list_(pa.string())),  # DUO ids, e.g. DUO:0000042
]
# typed per-modality figures: (column, type, metrics.json key or a function of the metrics)
FIGURES: list[tuple[str, pa.DataType, str | Callable[[Mapping[str, Any]], Any] | None]] = [
    # qc_pass and qc_failed: the version's one QC verdict, evaluated by the catalog's writer
    # (pipelines.describe.catalog.figures with pipelines.describe.verdict.evaluate); None here
    ("qc_pass", pa.bool_(), None),
    ("qc_failed", pa.list_(pa.string()), None),
    ("resolution_angstrom", pa.float64(), "resolution_fsc0143_angstrom"),
    (
        "resolution_beyond_nyquist",
        pa.bool_(),
        lambda m: (
            m["resolution_fsc0143_angstrom"] == "beyond Nyquist"
            if "resolution_fsc0143_angstrom" in m
            else None
        ),
    ),
    (
        "voxel_size_angstrom",
        pa.float64(),
        lambda m: _max(
            m, "voxel_size_z_angstrom", "voxel_size_y_angstrom", "voxel_size_x_angstrom"
        ),
    ),
    ("n_cells", pa.int64(), "n_cells"),
    ("n_genes", pa.int64(), "n_genes"),
    ("n_samples", pa.int64(), "n_samples"),
    ("n_clusters", pa.int64(), "n_clusters"),
    ("median_genes_per_cell", pa.float64(), "median_genes_per_cell"),
    ("n_runs", pa.int64(), "n_runs"),
    ("n_spectra", pa.int64(), "n_spectra"),
    ("n_features", pa.int64(), "n_features"),
    ("polarity", pa.string(), "polarity"),
    ("n_plates", pa.int64(), "n_plates"),
    ("n_wells", pa.int64(), "n_wells"),
    ("n_hits", pa.int64(), "n_hits"),
    ("hit_rate", pa.float64(), "hit_rate"),
    ("z_prime_median", pa.float64(), "z_prime_median"),
]
FIGURE_FIELDS = [pa.field(name, typ) for name, typ, _ in FIGURES]
QC_FIELDS = [pa.field("qc_json", pa.string())]  # qc/metrics.json: every QC figure, as JSON
# usage totals (manifest "usage", from _meta/usage.json): what billing reads (binds usage)
USAGE_COLUMNS = ("core_hours", "gpu_hours", "peak_rss_mb", "stored_bytes")
USAGE_FIELDS = [
    pa.field("core_hours", pa.float64()),
    pa.field("gpu_hours", pa.float64()),
    pa.field("peak_rss_mb", pa.float64()),
    pa.field("stored_bytes", pa.int64()),
]

CATALOG_SCHEMA = pa.schema(
    IDENTITY_FIELDS + SELECTION_FIELDS + FIGURE_FIELDS + QC_FIELDS + USAGE_FIELDS,
    metadata={b"binds.catalog.format_version": CATALOG_FORMAT_VERSION.encode()},
)
LIST_COLUMNS = {f.name for f in CATALOG_SCHEMA if pa.types.is_list(f.type) and f.name != "samples"}


def _max(m: Mapping[str, Any], *keys: str) -> float | None:
    vals = [m[k] for k in keys if isinstance(m.get(k), (int, float))]
    return max(vals) if vals else None


def typed_value(value: Any, typ: pa.DataType) -> Any:
    if value is None or (isinstance(value, str) and not pa.types.is_string(typ)):
        return None  # the null rule: a text figure ("beyond Nyquist") is not a number
    if pa.types.is_floating(typ):
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    if pa.types.is_integer(typ):
        return int(value) if isinstance(value, (int, float)) and float(value).is_integer() else None
    if pa.types.is_boolean(typ):
        return bool(value)
    if pa.types.is_list(typ):
        return [str(v) for v in value]
    return str(value)


def empty_catalog() -> pa.Table:
    """A catalog table of no rows (``Schema.empty_table`` would import pandas: ~0.5 s)."""
    return pa.Table.from_arrays(
        [pa.nulls(0, f.type) for f in CATALOG_SCHEMA], schema=CATALOG_SCHEMA
    )


def conform(table: pa.Table) -> pa.Table:
    """``table`` with the current catalog columns (older rows: the new columns null)."""
    cols = []
    for f in CATALOG_SCHEMA:
        if f.name in table.column_names:
            cols.append(table[f.name].cast(f.type))
        else:
            cols.append(pa.nulls(len(table), f.type))
    return pa.Table.from_arrays(cols, schema=CATALOG_SCHEMA)


def filter_frame(df, filters: Mapping[str, Any]):
    """Rows of a catalog DataFrame matching every filter.

    ``column=value``: equality; on a list column (organisms, compounds ...): the list contains
    the value.  A list / set / tuple value: any of them.  A callable: ``f(column Series) ->
    bool Series``.  ``None``: no filter.  ``column__min`` / ``column__max``: inclusive bounds
    (numbers, dates, timestamps).
    """
    import pandas as pd

    mask = pd.Series(True, index=df.index)
    for key, want in filters.items():
        if want is None:
            continue
        col, _, op = key.partition("__")
        if col not in df.columns:
            raise KeyError(f"no catalog column {col!r}; columns: {', '.join(df.columns)}")
        series = df[col]
        if op in ("min", "max"):
            bound = _bound(series, want)
            mask &= series.notna() & ((series >= bound) if op == "min" else (series <= bound))
        elif op:
            raise KeyError(f"unknown filter operator {op!r} in {key!r} (min, max)")
        elif callable(want):
            if col in LIST_COLUMNS:
                mask &= series.apply(lambda v, f=want: False if v is None else bool(f(v)))
            else:
                mask &= want(series).fillna(False).astype(bool)
        else:
            wanted = set(want) if isinstance(want, (list, set, tuple, frozenset)) else {want}
            if col in LIST_COLUMNS:
                mask &= series.apply(lambda v, w=wanted: v is not None and bool(w & set(v)))
            else:
                mask &= series.isin(wanted)
    return df[mask]


def _bound(series, want):
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        t = pd.Timestamp(want)
        return t.tz_localize("UTC") if t.tzinfo is None and series.dt.tz is not None else t
    if (
        series.dtype == object
        and len(series.dropna())
        and hasattr(series.dropna().iloc[0], "isoformat")
    ):
        import datetime as dt

        return want if isinstance(want, dt.date) else dt.date.fromisoformat(str(want))
    return want


def latest_only(df):
    """The newest version of each dataset."""
    return df.sort_values("version", ascending=False).drop_duplicates(
        ["access", "modality", "dataset_id"]
    )


LATEST_KEYS = ("version", "access", "modality", "dataset_id")


def filter_table(table: pa.Table, filters: Mapping[str, Any], *, latest: bool = False) -> pa.Table:
    """The rows of a catalog table that :func:`filter_frame` (then, ``latest``,
    :func:`latest_only`) keeps, in the same order, as Arrow: only the columns the filters name
    go through pandas (no filter: the table itself, without pandas).

    Raises
    ------
    KeyError
        A filter names no catalog column, or an unknown operator.
    """
    active = {k: v for k, v in filters.items() if v is not None}
    if not active and not latest:
        return table
    wanted = {key.partition("__")[0] for key in active}
    for col in sorted(wanted - set(table.column_names)):
        raise KeyError(f"no catalog column {col!r}; columns: {', '.join(table.column_names)}")
    if latest:
        wanted |= set(LATEST_KEYS)
    df = table.select([n for n in table.column_names if n in wanted]).to_pandas()
    df = filter_frame(df, active)
    if latest:
        df = latest_only(df)
    return table.take(pa.array(df.index.to_numpy(), pa.int64()))


def parse_where(exprs: Iterable[str]) -> dict[str, Any]:
    """``binds catalog --where`` expressions to filters: ``col=value``, ``col>=x``, ``col<=x``
    (numbers, dates), ``col=a,b`` (any of); ``qc_pass=true``."""
    import re

    out: dict[str, Any] = {}
    for expr in exprs:
        m = re.fullmatch(r"\s*([a-z_0-9]+)\s*(>=|<=|=)\s*(.*?)\s*", expr)
        if not m:
            raise ValueError(
                f"cannot read --where {expr!r}: use column=value, column>=value or column<=value"
            )
        col, op, raw = m.groups()
        value: Any = _literal(raw)
        if op == "=":
            parts = [_literal(p) for p in raw.split(",")] if "," in raw else None
            out[col] = parts or value
        else:
            out[f"{col}__{'min' if op == '>=' else 'max'}"] = value
    return out


def _literal(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw
