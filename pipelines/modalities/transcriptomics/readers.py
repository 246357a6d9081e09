"""Readers of the unit's deliveries, each validating before (and right after) scanpy reads.

Single cell: Cell Ranger ``filtered_feature_bc_matrix.h5`` (v3 ``matrix`` group, or the legacy
v2 layout with one group per genome), the MatrixMarket triplet (v3 ``matrix.mtx.gz`` +
``features.tsv.gz`` + ``barcodes.tsv.gz``, v2 ``matrix.mtx`` + ``genes.tsv`` + ``barcodes.tsv``),
and ``.h5ad``.  Bulk: a genes x samples count table (see :mod:`.bulk`).

scanpy does the reading; what is added here is the error a person can act on: which file, which
barcode / gene / field, what is wrong, what to do.  The returned AnnData always has cells as
rows, raw integer counts as a CSR matrix in ``X`` (float32, as scanpy reads them), unique
``obs_names`` (barcodes) and ``var_names``, and ``var`` columns ``gene_ids``, ``feature_name``,
``feature_types`` (and ``genome`` when the file has it).
"""

from __future__ import annotations

import gzip
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.errors import InputError, Problem
from pipelines.toolkit.rawfiles import refuse_outside_hdf5

if TYPE_CHECKING:  # scanpy/anndata are imported inside functions: Snakemake parses this module
    from anndata import AnnData

log = logging.getLogger(__name__)

GENE_EXPRESSION = "Gene Expression"
# Cell Ranger chemistry_description -> EFO assay (CELLxGENE assay_ontology_term_id)
CHEMISTRY_EFO = {
    "single cell 3' v3": "EFO:0009922",
    "single cell 3' v3.1": "EFO:0009922",
    "single cell 3' v2": "EFO:0009899",
    "single cell 5' pe": "EFO:0009900",
    "single cell 5' pe v2": "EFO:0009900",
    "single cell 5' r2-only": "EFO:0009900",
    "single cell 5' v2": "EFO:0009900",
}
_H5_V3_DATASETS = ("data", "indices", "indptr", "shape", "barcodes")
_H5_V2_DATASETS = ("data", "indices", "indptr", "shape", "barcodes", "genes", "gene_names")
# values in a count matrix are checked in slices of this many entries, so the check's own
# temporaries stay small next to the matrix (100k cells x 2k genes = 200M entries)
_CHUNK = 16_000_000
# X is float32 (as scanpy reads 10x files): whole numbers are exact only below 2**24; a larger
# count would be published rounded, so it is refused instead
_FLOAT32_EXACT = 2**24


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a reader returns: the matrix and the facts its header told."""

    adata: AnnData
    facts: dict[str, Any]


# --------------------------------------------------------------------------- 10x HDF5
def read_10x_h5(path: str | Path) -> Loaded:
    """Read a Cell Ranger feature-barcode HDF5 (v3, or legacy v2 with a genome group).

    Raises
    ------
    InputError
        Not HDF5 or truncated; HDF5 but not a 10x matrix; ``shape`` disagreeing with the number
        of barcodes / features or with ``indptr``; feature indices out of range; non-integer
        or negative counts; duplicate barcodes.
    """
    path = Path(path)
    fname = path.name
    refuse_outside_hdf5(path)  # before any value is read: HDF5 would follow it anywhere
    with _open_h5(path) as h5:
        facts = _h5_facts(h5)
        layout, groups = _checked_h5_layout(h5, fname)
    facts["layout"] = f"10x_h5_{layout}"
    adata = _standard_var(_scanpy_h5(path, layout, groups), id_col="gene_ids", name_col=None)
    _check_counts(adata, fname)
    _check_unique_barcodes(adata.obs_names, fname, "barcodes")
    facts.update(n_barcodes=int(adata.n_obs), n_features=int(adata.n_vars))
    return Loaded(adata=adata, facts=facts)


def _open_h5(path: Path) -> Any:
    """The open HDF5 file, or InputError when it is not HDF5 (or is cut short)."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(
            Problem(
                f"not a readable HDF5 file ({_short_h5_error(err)})",
                file=path.name,
                hint="the file is corrupt or truncated: copy it again from the Cell Ranger outs/ folder "
                "and compare its size / checksum",
            )
        ) from None


def _checked_h5_layout(h5: Any, fname: str) -> tuple[str, list[str]]:
    """("v3", ["matrix"]) or ("v2", the genome groups), each group checked for consistency."""
    import h5py

    if "matrix" in h5:
        _check_h5_group(
            h5["matrix"],
            fname,
            "matrix",
            (*_H5_V3_DATASETS, "features"),
            n_features_key="features/id",
        )
        return "v3", ["matrix"]
    groups = sorted(
        k
        for k, v in h5.items()
        if isinstance(v, h5py.Group) and all(d in v for d in ("data", "genes"))
    )
    if not groups:
        raise InputError(
            Problem(
                f"HDF5 file but not a 10x feature-barcode matrix: top-level entries are "
                f"{sorted(h5.keys()) or 'none'}",
                file=fname,
                where="/",
                hint="expected a 'matrix' group (Cell Ranger >= 3) or one group per genome with "
                "'genes' (Cell Ranger 2); give filtered_feature_bc_matrix.h5, not "
                "molecule_info.h5 or an .h5ad (for .h5ad set transcriptomics.input.kind: h5ad)",
            )
        )
    for g in groups:
        _check_h5_group(h5[g], fname, g, _H5_V2_DATASETS, n_features_key="genes")
    return "v2", groups


def _scanpy_h5(path: Path, layout: str, groups: list[str]) -> AnnData:
    """scanpy's reading of the checked file: every feature type of a v3 file; the genomes of a
    v2 file side by side, each gene labelled with its genome."""
    import scanpy as sc

    try:
        if layout == "v3":
            return sc.read_10x_h5(path, gex_only=False)
        parts = [sc.read_10x_h5(path, genome=g) for g in groups]
        for g, part in zip(groups, parts, strict=False):
            part.var["genome"] = g
            part.var["feature_types"] = GENE_EXPRESSION
        return parts[0] if len(parts) == 1 else _concat_genomes(parts)
    except (KeyError, ValueError, OSError) as err:
        raise InputError(
            Problem(
                f"scanpy could not read the matrix: {err}",
                file=path.name,
                hint="the 10x HDF5 is malformed; regenerate it with Cell Ranger",
            )
        ) from None


def _short_h5_error(err: OSError) -> str:
    text = str(err)
    m = re.search(r"\((.*?)\)", text)
    return (m.group(1) if m else text)[:160]


def _h5_facts(h5: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for key in ("chemistry_description", "library_ids", "software_version", "filetype"):
        if key in h5.attrs:
            val = h5.attrs[key]
            if isinstance(val, np.ndarray):
                val = ", ".join(
                    v.decode() if isinstance(v, bytes) else str(v) for v in val.tolist()
                )
            elif isinstance(val, bytes):
                val = val.decode()
            facts[key] = str(val)
    if "chemistry_description" in facts:
        efo = CHEMISTRY_EFO.get(facts["chemistry_description"].lower())
        if efo:
            facts["assay_ontology_term_id"] = efo
    return facts


def _check_h5_group(
    group: Any, fname: str, gname: str, needed: tuple[str, ...], *, n_features_key: str
) -> None:
    missing = [d for d in needed if d not in group]
    if missing:
        raise InputError(
            Problem(
                f"10x HDF5 group '{gname}' lacks {', '.join(missing)}",
                file=fname,
                where=f"/{gname}",
                hint="the file is truncated or was not written by Cell Ranger",
            )
        )
    shape = [int(x) for x in group["shape"][()]]
    n_bc = int(group["barcodes"].shape[0])
    n_feat = int(group[n_features_key].shape[0])
    nnz = int(group["data"].shape[0])
    if len(shape) != 2 or shape[1] != n_bc:
        raise InputError(
            Problem(
                f"shape says {shape[1] if len(shape) == 2 else shape} barcodes but 'barcodes' has {n_bc}",
                file=fname,
                where=f"/{gname}/shape",
                hint="the barcodes and the matrix do not belong together",
            )
        )
    if shape[0] != n_feat:
        raise InputError(
            Problem(
                f"shape says {shape[0]} features but '{n_features_key}' has {n_feat}",
                file=fname,
                where=f"/{gname}/shape",
                hint="the features and the matrix do not belong together",
            )
        )
    indptr = group["indptr"]
    if (
        indptr.shape[0] != n_bc + 1
        or int(indptr[-1]) != nnz
        or int(group["indices"].shape[0]) != nnz
    ):
        raise InputError(
            Problem(
                f"indptr ({indptr.shape[0]} entries, last {int(indptr[-1])}) does not fit {n_bc} barcodes "
                f"and {nnz} stored values",
                file=fname,
                where=f"/{gname}/indptr",
                hint="the file is truncated or corrupt: copy it again",
            )
        )


def _concat_genomes(parts: list[AnnData]) -> AnnData:
    import anndata as ad

    return ad.concat(parts, axis=1, merge="first")


# --------------------------------------------------------------------------- MatrixMarket
def find_mtx_files(folder: Path) -> dict[str, Path]:
    """matrix / features / barcodes of a 10x triplet folder (v3 gz or v2 plain), or InputError."""
    layouts = {
        "v3": ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"),
        "v2": ("matrix.mtx", "genes.tsv", "barcodes.tsv"),
    }
    for layout, names in layouts.items():
        if all((folder / n).is_file() for n in names):
            return {
                "layout": layout,
                "matrix": folder / names[0],
                "features": folder / names[1],
                "barcodes": folder / names[2],
            }
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise InputError(
        Problem(
            f"not a complete 10x MatrixMarket triplet; found {present or 'nothing'}",
            file=str(folder),
            hint="expected matrix.mtx.gz + features.tsv.gz + barcodes.tsv.gz (Cell Ranger >= 3) or "
            "matrix.mtx + genes.tsv + barcodes.tsv (Cell Ranger 2), all in one folder",
        )
    )


def read_10x_mtx(folder: str | Path) -> Loaded:
    """Read a 10x MatrixMarket triplet folder (v3 gzipped, or legacy v2 with ``genes.tsv``)."""
    import pandas as pd

    files = find_mtx_files(Path(folder))
    mname = files["matrix"].name
    n_rows, n_cols, field = _mtx_header(files["matrix"])
    features = _read_tsv_column_table(files["features"])
    barcodes = _read_tsv_column_table(files["barcodes"])
    _check_mtx_header(
        files,
        n_rows=n_rows,
        n_cols=n_cols,
        field=field,
        n_features=len(features),
        n_barcodes=len(barcodes),
    )
    _check_unique_barcodes(pd.Index(barcodes[0].astype(str)), files["barcodes"].name, "line")
    if features.shape[1] < 2:
        raise InputError(
            Problem(
                f"{features.shape[1]} column(s): expected gene id and gene name",
                file=files["features"].name,
                where="line 1",
                hint="Cell Ranger writes id<TAB>name[<TAB>feature type]",
            )
        )
    adata = _mtx_anndata(_read_mtx_values(files["matrix"], field=field), features, barcodes)
    _check_counts(
        adata,
        mname,
        source="matrix",
        place=lambda cell, feature: _mtx_place(files["matrix"], cell, feature),
    )
    adata.X = adata.X.astype(np.float32)
    facts: dict[str, Any] = {
        "layout": f"10x_mtx_{files['layout']}",
        "n_barcodes": int(adata.n_obs),
        "n_features": int(adata.n_vars),
        "mtx_field": field,
    }
    ids = features[0].astype(str)
    if not ids.is_unique:
        facts["gene_ids_not_unique"] = (
            f"{files['features'].name}: gene ids repeat "
            f"(e.g. {ids[ids.duplicated()].iloc[0]}); gene symbols name the genes"
        )
    return Loaded(adata=adata, facts=facts)


def _mtx_header(path: Path) -> tuple[int, int, str]:
    """(rows, columns, field) of a MatrixMarket header, or InputError when it is not one."""
    import scipy.io

    try:
        n_rows, n_cols, _nnz, _fmt, field, _sym = scipy.io.mminfo(path)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(
            Problem(
                f"not a MatrixMarket file: {err}",
                file=path.name,
                where="header",
                hint="the first line must be '%%MatrixMarket matrix coordinate integer general'",
            )
        ) from None
    return n_rows, n_cols, field


def _check_mtx_header(
    files: dict[str, Path],
    *,
    n_rows: int,
    n_cols: int,
    field: str,
    n_features: int,
    n_barcodes: int,
) -> None:
    """The header's size fits the features and barcodes files, and its field can hold counts."""
    mname = files["matrix"].name
    for n, lines, key, what in (
        (n_rows, n_features, "features", "rows (features)"),
        (n_cols, n_barcodes, "barcodes", "columns (barcodes)"),
    ):
        if n != lines:
            raise InputError(
                Problem(
                    f"the matrix has {n} {what} but {files[key].name} has {lines} lines",
                    file=mname,
                    where="header (rows columns entries)",
                    hint=f"{files[key].name} and {mname} do not belong together",
                )
            )
    if field not in ("integer", "real", "pattern"):
        raise InputError(
            Problem(
                f"MatrixMarket field is {field!r}, counts must be integer",
                file=mname,
                where="header",
            )
        )


def _mtx_anndata(X: Any, features: Any, barcodes: Any) -> AnnData:
    """The triplet as scanpy's read_10x_mtx lays it out: cells x features, features named by id
    (or by symbol made unique), symbols in gene_symbols, types in feature_types."""
    import anndata as ad
    import pandas as pd

    ids = features[0].astype(str)
    adata = ad.AnnData(X=X)  # float64 until _check_counts has seen the values
    adata.obs_names = barcodes[0].astype(str).to_numpy()
    # the v2 pbmc set has the placeholder id ENSGXXXXXX on every gene: fall back to symbols
    if ids.is_unique:
        adata.var_names = ids.to_numpy()
        adata.var["gene_symbols"] = features[1].astype(str).to_numpy()
    else:
        adata.var_names = ad.utils.make_index_unique(pd.Index(features[1].astype(str).to_numpy()))
    adata.var["gene_ids"] = ids.to_numpy()
    adata.var["feature_types"] = (
        features[2].astype(str).to_numpy() if features.shape[1] > 2 else GENE_EXPRESSION
    )
    return _standard_var(adata, id_col="gene_ids", name_col=None)


class _IntegerHeaderAsReal(io.RawIOBase):
    """A MatrixMarket stream whose header says ``real`` where the file says ``integer``.

    scipy parses an ``integer`` matrix into int64, turning ``2.5`` into 2 without a word; read as
    ``real`` the value stays 2.5 and :func:`_check_counts` refuses it.  Whole numbers are exact
    in float64 up to 2**53, far above any count."""

    def __init__(self, raw: Any):
        self._raw = raw
        first = raw.readline()
        self._head = re.sub(
            rb"(?i)^(%%matrixmarket\s+matrix\s+coordinate\s+)integer", rb"\1real", first
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _open_maybe_gzip(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_mtx_values(path: Path, *, field: str):
    """The matrix as cells x features CSR float32 (scanpy's layout), values exactly as written."""
    import scipy.io
    import scipy.sparse as sp

    try:
        with _open_maybe_gzip(path) as fh:
            stream = (
                io.BufferedReader(_IntegerHeaderAsReal(fh), 1 << 20) if field == "integer" else fh
            )
            M = scipy.io.mmread(stream)
    except (ValueError, IndexError, OSError, EOFError) as err:
        raise InputError(
            Problem(
                f"could not read the matrix: {str(err)[:200]}",
                file=path.name,
                hint="the file is truncated or not MatrixMarket coordinate format",
            )
        ) from None
    # float64 (or int64 for a 'pattern' matrix): checked by _check_counts before the cast, so
    # a fraction that float32 would round away is still seen
    return sp.csr_matrix(M.T)


def _mtx_place(path: Path, cell: int, feature: int) -> str:
    """'line N, row R, column C' of the entry of (cell, feature) in a MatrixMarket file (rows are
    features, columns barcodes, both 1-based); an error path only: one more pass over the text."""
    row, col = feature + 1, cell + 1
    want = [str(row).encode(), str(col).encode()]
    with _open_maybe_gzip(path) as fh:
        for number, line in enumerate(fh, start=1):
            if line.split()[:2] == want and not line.startswith(b"%"):
                return f"line {number}, row {row}, column {col}"
    return f"row {row}, column {col}"


def _read_tsv_column_table(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(
            path,
            sep="\t",
            header=None,
            dtype=str,
            keep_default_na=False,
            compression="gzip" if path.suffix == ".gz" else None,
        )
    except (gzip.BadGzipFile, EOFError, OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise InputError(
            Problem(
                f"cannot read it as a tab-separated table: {err}",
                file=path.name,
                hint="the file is corrupt or not gzip-compressed text",
            )
        ) from None
    except pd.errors.EmptyDataError:
        raise InputError(Problem("the file is empty", file=path.name)) from None


# --------------------------------------------------------------------------- h5ad
def read_h5ad_counts(path: str | Path) -> Loaded:
    """Read an ``.h5ad`` and keep its raw counts (``layers['counts']`` if present, else ``X``)."""
    import anndata as ad
    import scipy.sparse as sp

    path = Path(path)
    refuse_outside_hdf5(path)  # before any value is read: HDF5 would follow it anywhere
    try:
        adata = ad.read_h5ad(path)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise InputError(
            Problem(
                f"not a readable .h5ad: {str(err)[:200]}",
                file=path.name,
                hint="write it with anndata's write_h5ad",
            )
        ) from None
    source = "X"
    if "counts" in adata.layers:
        source = "layers['counts']"
        adata.X = adata.layers["counts"]
    elif adata.raw is not None and _looks_integer(adata.raw.X):
        source = "raw.X"
        adata = ad.AnnData(X=adata.raw.X, obs=adata.obs, var=adata.raw.var)
    X = adata.X
    if not sp.issparse(X):
        X = sp.csr_matrix(np.asarray(X))
    # the stored dtype until _check_counts has seen the values: a float64 1.0000001 would become
    # a float32 1.0 and pass as a count
    adata = ad.AnnData(X=sp.csr_matrix(X), obs=adata.obs.copy(), var=adata.var.copy())
    adata.layers.clear()
    name_col = next(
        (c for c in ("feature_name", "gene_symbols", "gene_name", "symbol") if c in adata.var), None
    )
    id_col = next(
        (c for c in ("gene_ids", "gene_id", "feature_id", "ensembl_id") if c in adata.var), None
    )
    if id_col is None:
        adata.var["gene_ids"] = adata.var_names.astype(str)
        id_col = "gene_ids"
    adata = _standard_var(adata, id_col=id_col, name_col=name_col)
    _check_counts(adata, path.name, source=source)
    adata.X = adata.X.astype(np.float32)
    _check_unique_barcodes(adata.obs_names, path.name, "obs_names")
    if not adata.var_names.is_unique:
        adata.var_names_make_unique()
    return Loaded(
        adata=adata,
        facts={
            "layout": "h5ad",
            "counts_from": source,
            "n_barcodes": int(adata.n_obs),
            "n_features": int(adata.n_vars),
        },
    )


def _looks_integer(X: Any) -> bool:
    import scipy.sparse as sp

    data = X.data if sp.issparse(X) else np.asarray(X)
    sample = data[:100_000]
    return bool(np.all(np.mod(sample, 1) == 0))


# --------------------------------------------------------------------------- shared checks
def _standard_var(adata: AnnData, *, id_col: str, name_col: str | None) -> AnnData:
    """var with gene_ids, feature_name, feature_types (+ genome), the names scanpy gave kept as index."""
    var = adata.var
    if id_col != "gene_ids":
        var["gene_ids"] = var[id_col].astype(str)
    if name_col is None and "gene_symbols" in var:
        name_col = "gene_symbols"  # scanpy's column when var_names="gene_ids"
    if name_col is not None:
        var["feature_name"] = var[name_col].astype(str)
    elif "feature_name" not in var:
        # the h5 readers keep the symbol as the index
        var["feature_name"] = [str(n) for n in var.index]
    if "feature_types" not in var:
        var["feature_types"] = GENE_EXPRESSION
    var["gene_ids"] = var["gene_ids"].astype(str)
    var["feature_types"] = var["feature_types"].astype(str)
    if var["gene_ids"].is_unique:
        # stable, unique gene ids as var_names (CELLxGENE); symbols stay in feature_name
        var.index = var["gene_ids"].to_numpy()
    var.index.name = None
    adata.var = var
    if not adata.var_names.is_unique:
        adata.var_names_make_unique()
    for col in ("gene_ids", "feature_name", "feature_types", "genome"):
        if col in adata.var:
            adata.var[col] = adata.var[col].astype(str)
    keep = [c for c in ("gene_ids", "feature_name", "feature_types", "genome") if c in adata.var]
    adata.var = adata.var[keep]
    return adata


def _check_counts(
    adata: AnnData,
    fname: str,
    *,
    source: str = "matrix",
    place: Callable[[int, int], str] | None = None,
) -> None:
    """Raw counts: non-negative integers.  Names the first offending barcode and gene (and, with
    ``place``, where the value is in the file: ``place(cell index, feature index)``)."""
    import scipy.sparse as sp

    X = adata.X
    if not sp.issparse(X):
        raise InputError(Problem("the matrix is not sparse", file=fname, where=source))
    X = sp.csr_matrix(X) if not sp.isspmatrix_csr(X) else X
    adata.X = X
    data = X.data
    for start in range(0, data.shape[0], _CHUNK):
        part = data[start : start + _CHUNK]
        bad = np.flatnonzero(
            (part < 0) | ~np.isfinite(part) | (np.mod(part, 1) != 0) | (part >= _FLOAT32_EXACT)
        )
        if bad.size:
            k = start + int(bad[0])
            row = int(np.searchsorted(X.indptr, k, side="right") - 1)
            col = int(X.indices[k])
            value = data[k]
            what = (
                "negative"
                if value < 0
                else (
                    f"at or above {_FLOAT32_EXACT:,}, the largest count float32 holds exactly (scanpy reads "
                    "10x int32 counts as float32, so it may already be rounded)"
                    if np.isfinite(value) and value >= _FLOAT32_EXACT
                    else "not an integer"
                )
            )
            where = f"{source}: barcode {adata.obs_names[row]}, gene {adata.var_names[col]}"
            if place is not None:
                where = f"{place(row, col)} ({where})"
            raise InputError(
                Problem(
                    f"value {_shortest(value)} is {what}: raw UMI/read counts are expected ({bad.size} such "
                    f"values in this slice alone)",
                    file=fname,
                    where=where,
                    hint="give the unnormalised counts (Cell Ranger filtered_feature_bc_matrix, or an "
                    ".h5ad with counts in layers['counts'])",
                )
            )


def _shortest(value: Any) -> str:
    """The shortest text that reads back as ``value`` in its own dtype (float32 2.3 -> '2.3',
    float64 1.0000001 -> '1.0000001', not '1')."""
    if isinstance(value, (np.floating, float)) and np.isfinite(value):
        return np.format_float_positional(value, trim="-")
    return str(value)


def _check_unique_barcodes(names: Any, fname: str, where: str) -> None:
    import pandas as pd

    idx = pd.Index(names)
    if not idx.is_unique:
        dup = idx[idx.duplicated()]
        raise InputError(
            Problem(
                f"{len(dup)} duplicate barcode(s), e.g. {dup[0]!r} appears {int((idx == dup[0]).sum())} times",
                file=fname,
                where=f"{where} {int(np.flatnonzero(idx == dup[0])[1]) + 1}"
                if where == "line"
                else where,
                hint="each cell barcode must appear once; libraries merged by hand need a suffix per "
                "library (-1, -2 ...) as cellranger aggr writes",
            )
        )


def key_safe(name: str) -> str:
    """``name`` usable as a Zarr / HDF5 key: ``%`` -> ``%25`` and ``/`` -> ``%2F`` (URL percent
    encoding, reversed by :func:`urllib.parse.unquote`).  TotalSeq panels name antibodies
    ``CD66a/c/e`` or ``HLA-A/B/C``; a DataFrame column becomes a key, and a ``/`` in a key is a
    sub-group.  The exact names stay values (``uns['feature_types']``)."""
    return name.replace("%", "%25").replace("/", "%2F")


def split_feature_types(adata: AnnData) -> tuple[AnnData, dict[str, Any]]:
    """Keep Gene Expression in X; every other feature type (Antibody Capture, CRISPR Guide
    Capture, ...) goes to ``obsm[<type as snake_case>]`` as a DataFrame of integer counts whose
    columns are the feature ids made key-safe by :func:`key_safe` (the exact ids and names, in
    the same order, are in ``uns['feature_types']``).
    """
    import pandas as pd

    types = adata.var["feature_types"].astype(str)
    others = sorted(set(types) - {GENE_EXPRESSION})
    info: dict[str, Any] = {}
    if not others:
        return adata, info
    gex = adata[:, (types == GENE_EXPRESSION).to_numpy()].copy()
    for ftype in others:
        mask = (types == ftype).to_numpy()
        sub = adata[:, mask]
        key = re.sub(r"[^a-z0-9]+", "_", ftype.lower()).strip("_")
        # a few hundred antibodies at most: a dense per-cell table is what people expect here
        dense = np.asarray(sub.X.toarray(), dtype=np.int32)
        gex.obsm[key] = pd.DataFrame(
            dense, index=gex.obs_names, columns=[key_safe(i) for i in sub.var["gene_ids"]]
        )
        info[key] = {
            "feature_type": ftype,
            "ids": sub.var["gene_ids"].tolist(),
            "names": sub.var["feature_name"].tolist(),
        }
    if gex.n_vars == 0:
        raise InputError(
            Problem(
                f"no '{GENE_EXPRESSION}' features, only {', '.join(others)}",
                hint="the transcriptomics workflow needs gene expression counts",
            )
        )
    return gex, info
