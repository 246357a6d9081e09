"""Writers of the published files: AnnData on Zarr v3, obs/var Parquet, provenance in ``uns``."""

from __future__ import annotations

import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

# what AI teams can rely on; bumped when a column/key changes meaning (docs/formats/transcriptomics.md)
FORMAT = "binds-transcriptomics"
FORMAT_VERSION = "1"
_SOFTWARE = (
    "binds-pipelines",
    "scanpy",
    "anndata",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "umap-learn",
    "pynndescent",
    "igraph",
    "zarr",
)


def software_versions() -> dict[str, str]:
    out = {}
    for name in _SOFTWARE:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def plain(obj: Any) -> Any:
    """``obj`` with None dropped from dicts and tuples as lists: anndata cannot write None."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj if v is not None]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def provenance(
    *, params: dict[str, Any], kind: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``uns['binds']``: format version, input kind, parameters and software versions."""
    return plain(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "input_kind": kind,
            "parameters": params,
            "software": software_versions(),
            **(extra or {}),
        }
    )


def write_zarr(adata: AnnData, dest: str | Path) -> Path:
    """AnnData as Zarr v3 (``anndata.read_zarr`` reads it), replacing a partial earlier write."""
    import anndata as ad

    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with ad.settings.override(zarr_write_format=3):
        adata.write_zarr(dest)
    return dest


def table_parquet(df: pd.DataFrame, dest: str | Path, *, index_name: str | None) -> Path:
    """A DataFrame as Parquet with its index as the first column ``index_name`` (``None``: the
    index is dropped); format ``binds-transcriptomics-<file stem>``, columns documented."""
    import pyarrow as pa

    from pipelines.toolkit.tables import ColumnDoc, columns_for, write_table

    dest = Path(dest)
    out = df.copy()
    if index_name is not None:
        out.index = out.index.astype(str)
        out.index.name = index_name
        out = out.reset_index()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].astype(str)
    fmt = f"binds-transcriptomics-{dest.stem.replace('_', '-')}"
    try:
        columns = columns_for(fmt)
    except KeyError:  # not one of the published file names (a caller's scratch table)
        fmt, columns = (
            "binds-transcriptomics-table",
            {"*": ColumnDoc("see docs/formats/transcriptomics.md")},
        )
    return write_table(
        pa.Table.from_pandas(out, preserve_index=False),
        dest,
        format_name=fmt,
        format_version=FORMAT_VERSION,
        columns=columns,
    )
