"""Transcriptomics: 10x single cell (h5, mtx, h5ad) and bulk count tables -> AnnData Zarr + QC.

Single cell (workflows/transcriptomics/singlecell.smk)::

    process_single_cell (= read_library -> cell_qc -> cluster in one process) -> write_single_cell
    -> write_metrics

Bulk (workflows/transcriptomics/bulk.smk)::

    process_bulk -> write_bulk -> write_metrics

Output formats: docs/formats/transcriptomics.md.  Parameters: the ``transcriptomics:`` block of
experiment.yaml (metadata/schemas/transcriptomics.schema.json).

Importing this package is cheap (no scanpy): Snakemake imports it while parsing the workflow.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def _numba_cache_dir() -> Path:
    # numba compiles neighbors/UMAP kernels on first use (~110 s on these machines); a cache
    # shared by every rule, test and run of this user makes that a one-off.  Set before scanpy
    # (and so numba) is imported by any step.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "binds-pipelines" / "numba"


os.environ.setdefault("NUMBA_CACHE_DIR", str(_numba_cache_dir()))

from pipelines.errors import InputError, Problem  # noqa: E402
from pipelines.modalities import ModalitySpec  # noqa: E402
from pipelines.toolkit.inputs import InputSet, sample_of_files  # noqa: E402
from pipelines.toolkit.qc import Figure, QcCheck, number  # noqa: E402
from pipelines.toolkit.stage import write_json  # noqa: E402

from . import annotate  # noqa: E402
from .bulk import (  # noqa: E402
    load_bulk,
    match_samples,
    process_bulk,
    read_count_table,
    read_sample_sheet,
    write_bulk,
)
from .demo import make_demo_run  # noqa: E402
from .discover import RAW_PATTERNS, InputSpec, input_files, resolve_input  # noqa: E402
from .params import Params, params_from_experiment  # noqa: E402
from .singlecell import (  # noqa: E402
    cell_qc,
    cluster,
    cluster_cells,
    load_single_cell,
    process_single_cell,
    qc_cells,
    read_input,
    read_library,
    write_single_cell,
)

DESCRIPTION = (
    "Single-cell (10x .h5 / mtx / .h5ad) or bulk RNA-seq counts -> AnnData Zarr with raw "
    "counts, QC (MAD outliers), UMAP, Leiden clusters and marker genes"
)


def _single_cell(key: str) -> Callable[[Mapping[str, Any]], Figure]:
    def value(m: Mapping[str, Any]) -> Figure:
        if "n_cells" not in m:
            return "bulk RNA-seq (no cells)"
        return number(m, key)

    return value


def _bulk(key: str) -> Callable[[Mapping[str, Any]], Figure]:
    def value(m: Mapping[str, Any]) -> Figure:
        if "n_cells" in m:
            return "single cell (see the cell checks)"
        return number(m, key)

    return value


#: The QC of a count matrix, declared once (pipelines.toolkit.qc).
QC: tuple[QcCheck, ...] = (
    QcCheck(
        name="cells kept",
        metric="n_cells",
        unit="cells",
        threshold=1,
        direction=">=",
        value=_single_cell("n_cells"),
        meaning="cells remain after the QC filters (genes, counts, mitochondrial share)",
        on_fail="check the cell calling of the count matrix and the QC limits in experiment.yaml",
    ),
    QcCheck(
        name="cells removed by QC",
        metric="pct_cells_removed",
        unit="%",
        threshold=30,
        direction="<=",
        value=_single_cell("pct_cells_removed"),
        digits=2,
        meaning="share of the input cells the QC filters removed: more than 30 % points to "
        "damaged cells, empty droplets or limits that do not fit the sample",
        on_fail="look at the QC violin plots; adjust the limits in experiment.yaml or tell the "
        "researcher the sample quality is low",
    ),
    QcCheck(
        name="samples",
        metric="n_samples",
        unit="samples",
        threshold=1,
        direction=">=",
        value=_bulk("n_samples"),
        meaning="the count table holds at least one sample",
        on_fail="check the count table's columns and the samples in experiment.yaml",
    ),
    QcCheck(
        name="genes kept",
        metric="n_genes_kept",
        unit="genes",
        threshold=1,
        direction=">=",
        value=_bulk("n_genes_kept"),
        meaning="genes remain after the expression filter",
        on_fail="check the count table is not empty or all zero",
    ),
)


MODALITY = ModalitySpec(
    name="transcriptomics",
    main_data="data/adata.zarr",
    description=DESCRIPTION,
    technique="RNA sequencing",
    raw_patterns=RAW_PATTERNS,
    software=("scanpy", "anndata", "h5py", "scipy", "igraph", "matplotlib"),
    qc=QC,
)

__all__ = [
    "DESCRIPTION",
    "MODALITY",
    "RAW_PATTERNS",
    "InputSpec",
    "Params",
    "cell_qc",
    "cluster",
    "cluster_cells",
    "input_kind",
    "list_inputs",
    "load_bulk",
    "load_single_cell",
    "make_demo_run",
    "match_samples",
    "memory_mb",
    "params_from_experiment",
    "preflight",
    "process_bulk",
    "process_single_cell",
    "qc_cells",
    "read_count_table",
    "read_input",
    "read_library",
    "read_sample_sheet",
    "resolve_input",
    "stored_counts",
    "write_bulk",
    "write_metrics",
    "write_single_cell",
]


def list_inputs(run_dir: str | Path, experiment: dict[str, Any]) -> InputSet:
    """Every file the transcriptomics workflow reads (the matrix or its mtx folder, the sample
    sheet), and what stops it (no input, an ambiguous one, a path outside the folder)."""
    try:
        spec = resolve_input(run_dir, params_from_experiment(experiment))
    except InputError as err:
        return InputSet(problems=tuple(err.problems))
    files = tuple(sorted(input_files(spec)))
    problems: list[Problem] = []
    # samples[].files may name the matrix (or a file of its mtx folder): checked, not used to
    # split cells (barcode suffixes or obs['sample_id'] do that)
    inputs = [q for p in files for q in ([*p.rglob("*")] if p.is_dir() else [p])]
    sample_of_files(run_dir, experiment, inputs, modality="transcriptomics", problems=problems)
    return InputSet(files=files, problems=tuple(problems))


def input_kind(run_dir: str | Path, experiment: dict[str, Any]) -> str:
    """``single_cell`` or ``bulk``: which rule set the workflow runs (decided while parsing)."""
    spec = resolve_input(run_dir, params_from_experiment(experiment))
    return "single_cell" if spec.single_cell else "bulk"


# measured at 100k cells x 20k genes (166M stored counts): 6.6 GB peak in the single-cell step,
# ~38 bytes per stored count (X float32 + indices, the counts layer, QC copy) over ~0.3 GB of imports
BYTES_PER_COUNT = 40
BASE_MB = 600


def stored_counts(run_dir: str | Path, experiment: dict[str, Any]) -> int | None:
    """Number of stored (non-zero) counts of the input, from headers only; None when unknown.

    Sizes the single-cell rule's memory and runtime requests (a gzip-compressed .h5 is 3-4x
    smaller than the same matrix uncompressed, so the file size is a poor guide)."""
    try:
        spec = resolve_input(run_dir, params_from_experiment(experiment))
        if spec.kind == "10x_h5":
            import h5py

            with h5py.File(spec.path, "r") as h5:
                groups = ["matrix"] if "matrix" in h5 else [k for k in h5 if "data" in h5[k]]
                return int(sum(h5[g]["data"].shape[0] for g in groups))
        if spec.kind == "10x_mtx":
            import scipy.io

            from .readers import find_mtx_files

            return int(scipy.io.mminfo(find_mtx_files(spec.path)["matrix"])[2])
        if spec.kind == "h5ad":
            import h5py

            with h5py.File(spec.path, "r") as h5:
                X = h5["layers/counts"] if "layers" in h5 and "counts" in h5["layers"] else h5["X"]
                return int(X["data"].shape[0]) if "data" in X else int(X.shape[0] * X.shape[1])
    except (InputError, OSError, KeyError, ValueError):
        return None
    return None


def memory_mb(run_dir: str | Path, experiment: dict[str, Any]) -> int:
    """Memory request of the single-cell rule in MB (at least 2000)."""
    n = stored_counts(run_dir, experiment)
    return 2000 if n is None else max(2000, BASE_MB + n * BYTES_PER_COUNT // 2**20)


def preflight(run_dir: Path, experiment: dict) -> list[Problem]:
    """Cheap checks before any compute: privacy of the metadata, the input found, file headers
    (10x HDF5 structure and sizes, MatrixMarket dimensions vs barcode/feature lines, bulk sample
    names vs count columns).  Returns every problem; raises nothing."""
    problems = annotate.experiment_privacy_problems(experiment)
    try:
        spec = resolve_input(run_dir, params_from_experiment(experiment))
        problems += _header_problems(spec, params_from_experiment(experiment))
    except InputError as err:
        problems += err.problems
    return problems


def _header_problems(spec: InputSpec, params: Params) -> list[Problem]:
    """What the input's header (or, for bulk counts, the sample sheet) says is wrong, read
    without loading the matrix."""
    try:
        if spec.kind == "10x_h5":
            return _h5_header_problems(spec.path)
        if spec.kind == "10x_mtx":
            return _mtx_header_problems(spec.path)
        if spec.kind == "bulk_counts" and spec.sample_sheet is not None:
            return _sample_sheet_problems(spec.path, spec.sample_sheet, params)
    except InputError as err:
        return list(err.problems)
    except (OSError, ValueError) as err:
        return [Problem(f"cannot read the input: {err}", file=spec.path.name)]
    return []


def _h5_header_problems(path: Path) -> list[Problem]:
    """An HDF5 file that does not open, or holds no 10x matrix, or whose v3 matrix group is
    incomplete (the last raises)."""
    import h5py

    from . import readers

    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        return [
            Problem(
                f"not a readable HDF5 file ({readers._short_h5_error(err)})",
                file=path.name,
                hint="the file is corrupt or truncated: copy it again",
            )
        ]
    with h5:
        if "matrix" in h5:
            readers._check_h5_group(
                h5["matrix"],
                path.name,
                "matrix",
                (*readers._H5_V3_DATASETS, "features"),
                n_features_key="features/id",
            )
        elif not any("genes" in v for v in h5.values() if hasattr(v, "keys")):
            return [
                Problem(
                    "HDF5 file but not a 10x feature-barcode matrix",
                    file=path.name,
                    where="/",
                    hint="give Cell Ranger's filtered_feature_bc_matrix.h5",
                )
            ]
    return []


def _mtx_header_problems(path: Path) -> list[Problem]:
    """A Matrix Market header whose size disagrees with the features or barcodes file."""
    import scipy.io

    from . import readers

    files = readers.find_mtx_files(path)
    rows, cols, *_ = scipy.io.mminfo(files["matrix"])
    sizes = ((rows, "features", "rows (features)"), (cols, "barcodes", "columns (barcodes)"))
    out = []
    for n, key, what in sizes:
        lines = len(readers._read_tsv_column_table(files[key]))
        if n != lines:
            out.append(
                Problem(
                    f"the matrix has {n} {what} but {files[key].name} has {lines} lines",
                    file=files["matrix"].name,
                    where="header",
                )
            )
    return out


def _sample_sheet_problems(counts: Path, sample_sheet: Path, params: Params) -> list[Problem]:
    """Personal data in the sample sheet, and sheet samples that match no counts column."""
    from .bulk import ANNOTATION_COLUMNS, _read_table

    sheet, col = read_sample_sheet(sample_sheet, sample_column=params.bulk.sample_column)
    out = annotate.table_privacy_problems(sheet, file=sample_sheet.name)
    header = _read_table(counts, nrows=0)
    # annotation columns (gene_name ...) are not samples
    columns = [
        str(c)
        for c in header.columns[1:]
        if str(c).lower().replace(" ", "_") not in ANNOTATION_COLUMNS
    ]
    try:
        match_samples(
            sheet[col].tolist(),
            columns,
            bp=params.bulk,
            sheet_file=sample_sheet.name,
            counts_file=counts.name,
            sample_column=col,
        )
    except InputError as err:
        out += err.problems
    return out


def write_metrics(
    *, dest: str | Path, summaries: list[str | Path], facts_json: str | Path
) -> dict[str, Any]:
    """``qc/metrics.json``: a flat object of the key QC figures (the catalog keeps it)."""
    import json

    merged: dict[str, Any] = {}
    for path in summaries:
        merged.update(json.loads(Path(path).read_text()))
    facts = json.loads(Path(facts_json).read_text()).get("facts", {})
    out: dict[str, Any] = {"input_kind": facts.get("input_kind", "")}
    if "n_cells_input" in merged:
        n_in, n_kept = merged["n_cells_input"], merged["n_cells_kept"]
        out.update(
            n_cells_input=n_in,
            n_cells=n_kept,
            n_genes=merged["n_genes"],
            n_genes_filtered=merged["n_genes_filtered"],
            pct_cells_removed=round(100.0 * (n_in - n_kept) / n_in, 3) if n_in else 0.0,
            median_total_counts=merged["medians"]["total_counts"],
            median_genes_per_cell=merged["medians"]["n_genes_by_counts"],
            median_pct_counts_mt=merged["medians"]["pct_counts_mt"],
            n_clusters=merged["n_clusters"],
            n_hvg=merged["n_hvg"],
            n_pcs=merged["n_pcs"],
            n_marker_rows=merged["n_markers_rows"],
        )
        if merged.get("doublet_rate") is not None:
            out["doublet_rate"] = round(merged["doublet_rate"], 5)
        for rule, n in sorted(merged.get("removed_by", {}).items()):
            out[f"cells_removed_by_{rule}"] = n
        if facts.get("chemistry_description"):
            out["chemistry"] = facts["chemistry_description"]
    else:
        out.update(
            n_samples=merged["n_samples"],
            n_genes=merged["n_genes"],
            n_genes_kept=merged["n_genes_kept"],
            library_size_min=merged["library_size_min"],
            library_size_median=merged["library_size_median"],
            library_size_max=merged["library_size_max"],
        )
        if merged.get("min_sample_correlation") is not None:
            out["min_sample_correlation"] = round(merged["min_sample_correlation"], 6)
        if merged.get("pca_variance_ratio"):
            out["pc1_variance_ratio"] = round(merged["pca_variance_ratio"][0], 6)
    write_json(dest, out)
    return out
