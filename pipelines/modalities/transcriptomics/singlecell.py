"""Single-cell steps: load -> QC (MAD outliers, optional doublets) -> cluster, then write.

Each step takes data and returns data (:func:`read_library` -> :class:`Library`,
:func:`cell_qc` -> :class:`CellQC` and the kept cells, :func:`cluster` -> :class:`Clustering`);
:func:`process_single_cell` runs the three in one process and :func:`write_single_cell` writes
what it returns to the workflow rule's outputs.  ``load_single_cell``, ``qc_cells`` and
``cluster_cells`` run one stage each from and to files (``.h5ad`` in between).  The matrix stays
sparse throughout; the only dense arrays are per-cell / per-gene vectors, the PCA/UMAP
embeddings, and the counts of a few top genes for a plot.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.errors import InputError, Problem
from pipelines.toolkit.stage import write_json

from . import annotate, outputs, plots
from .discover import InputSpec, input_name, resolve_input
from .params import Params, params_from_experiment
from .readers import Loaded, read_10x_h5, read_10x_mtx, read_h5ad_counts, split_feature_types

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

log = logging.getLogger(__name__)

MIN_CELLS_TO_CLUSTER = 10
QC_METRICS = ("log1p_total_counts", "log1p_n_genes_by_counts", "pct_counts_in_top_20_genes")


# --------------------------------------------------------------------------- load
def read_input(spec: InputSpec) -> Loaded:
    """The reader of ``spec.kind`` applied to ``spec.path``."""
    readers = {"10x_h5": read_10x_h5, "10x_mtx": read_10x_mtx, "h5ad": read_h5ad_counts}
    return readers[spec.kind](spec.path)


def load_single_cell(
    *, run_dir: str | Path, experiment: dict[str, Any], dest: str | Path, facts_json: str | Path
) -> dict[str, Any]:
    """Read the library, check it, attach sample annotations; write ``dest`` (.h5ad).

    Writes ``facts_json`` = ``{"facts": {...header facts}, "conflicts": [...]}``: the 10x
    chemistry, library id, layout, sizes; a conflict when experiment.yaml's assay disagrees with
    the chemistry in the file header (the YAML wins).
    """
    library = read_library(run_dir=run_dir, experiment=experiment)
    write_json(facts_json, {"facts": library.facts, "conflicts": library.conflicts})
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    library.adata.write_h5ad(dest)
    return library.facts


@dataclass(frozen=True, slots=True)
class Library:
    """A checked, annotated single-cell library: the gene-expression matrix with each sample's
    CELLxGENE fields per cell, what the file header says (``facts``) and where experiment.yaml
    disagrees with it (``conflicts``)."""

    adata: AnnData
    facts: dict[str, Any]
    conflicts: list[dict[str, Any]]


def read_library(*, run_dir: str | Path, experiment: dict[str, Any]) -> Library:
    """The checked, annotated library in memory (see :func:`load_single_cell`)."""
    params = params_from_experiment(experiment)
    problems = annotate.experiment_privacy_problems(experiment)
    if problems:
        raise InputError(problems)
    spec = resolve_input(run_dir, params)
    if not spec.single_cell:
        raise InputError(
            Problem(
                f"{spec.path.name} is a {spec.kind} input, not single-cell",
                file="experiment.yaml",
                where="transcriptomics.input.kind",
            )
        )
    loaded = read_input(spec)
    adata = loaded.adata
    if spec.kind == "h5ad":
        problems = annotate.table_privacy_problems(
            adata.obs, file=spec.path.name, what="obs column"
        )
        if problems:
            raise InputError(problems)
    adata, ftypes = split_feature_types(adata)
    assay, conflicts = _assay(params, loaded.facts)
    _annotate_cells(adata, experiment, params, assay=assay, file=spec.path.name)
    adata.uns["feature_types"] = ftypes
    adata.uns["input"] = {
        "kind": spec.kind,
        "file": input_name(run_dir, experiment, spec, spec.path),
    }
    facts = {**loaded.facts, "input_kind": spec.kind, "n_gene_features": int(adata.n_vars)}
    if ftypes:
        facts["other_feature_types"] = ", ".join(v["feature_type"] for v in ftypes.values())
    log.info(
        "loaded %s: %d barcodes x %d genes (%s)",
        adata.uns["input"]["file"],
        adata.n_obs,
        adata.n_vars,
        spec.kind,
    )
    return Library(adata=adata, facts=facts, conflicts=conflicts)


def _assay(params: Params, facts: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    header = facts.get("assay_ontology_term_id")
    given = params.assay_ontology_term_id
    conflicts = []
    if given and header and given != header:
        conflicts.append(
            {
                "field": "transcriptomics.assay_ontology_term_id",
                "yaml": given,
                "header": f"{header} ({facts.get('chemistry_description')})",
                "used": "yaml",
            }
        )
    return given or header or annotate.UNKNOWN, conflicts


def _annotate_cells(
    adata: AnnData, experiment: dict[str, Any], params: Params, *, assay: str, file: str
) -> None:
    """CELLxGENE obs fields per cell from experiment.yaml samples (one, or one per library suffix)."""
    import pandas as pd

    samples = annotate.samples(experiment)
    rows = [
        annotate.sample_fields(s, assay=assay, suspension_type=params.suspension_type)
        for s in samples
    ]
    if len(rows) == 1:
        which = np.zeros(adata.n_obs, dtype=int)
    else:
        ids = [r["sample_id"] for r in rows]
        col = next((c for c in ("sample_id", "sample") if c in adata.obs), None)
        if col is not None and set(adata.obs[col].astype(str)) <= set(ids):
            which = np.array([ids.index(v) for v in adata.obs[col].astype(str)])
        else:
            # cellranger aggr suffixes barcodes with -1, -2, ... in the order of its libraries
            suffix = adata.obs_names.str.extract(r"-(\d+)$")[0]
            if suffix.isna().any() or not suffix.astype(int).between(1, len(rows)).all():
                raise InputError(
                    Problem(
                        f"experiment.yaml lists {len(rows)} samples but the cells of {file} cannot be "
                        "assigned to them",
                        file="experiment.yaml",
                        where="samples",
                        hint="list one sample per library, in the order of the barcode suffixes -1, -2, ... "
                        "(cellranger aggr), or give an .h5ad with obs['sample_id']",
                    )
                )
            which = suffix.astype(int).to_numpy() - 1
    table = pd.DataFrame(rows).iloc[which]
    for col in table.columns:
        values = table[col].to_numpy()
        # text fields as categories (CELLxGENE); is_primary_data stays a bool column
        adata.obs[col] = values.astype(bool) if col == "is_primary_data" else pd.Categorical(values)


# --------------------------------------------------------------------------- QC
@dataclass(slots=True)
class QCSummary:
    """What QC did: thresholds per metric and how many cells each rule removed."""

    n_cells_input: int
    n_cells_kept: int
    n_genes: int
    n_genes_filtered: int
    thresholds: dict[str, dict[str, float | None]] = field(default_factory=dict)
    removed_by: dict[str, int] = field(default_factory=dict)
    doublet_rate: float | None = None
    medians: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return outputs.plain(asdict(self))


def _median(values: np.ndarray) -> float | None:
    """Median, or None when there is no value (JSON and anndata have no NaN to offer)."""
    return float(np.median(values)) if values.size else None


def _mad_bounds(
    values: np.ndarray, n_mads: float, *, upper_only: bool = False
) -> tuple[float | None, float | None, float]:
    from scipy.stats import median_abs_deviation

    if not values.size:
        return None, None, 0.0
    med = float(np.median(values))
    mad = float(median_abs_deviation(values))
    if n_mads <= 0 or mad == 0:
        # MAD 0 (e.g. no mitochondrial gene on a chr21-only reference): the rule would remove
        # every cell above the median, so it is not applied
        return None, None, mad
    lower = None if upper_only else med - n_mads * mad
    return lower, med + n_mads * mad, mad


@dataclass(frozen=True, slots=True)
class QCViolins:
    """What the QC violin plot draws: the metrics per cell, their thresholds on the scale people
    read (counts, not log1p), and its title."""

    metrics: dict[str, np.ndarray]
    thresholds: dict[str, dict[str, float | None]]
    title: str


@dataclass(frozen=True, slots=True)
class TopGenes:
    """What the highest-expressed-genes plot draws: each cell's fraction of its counts in each
    of the top genes (cells x genes), and the genes' names."""

    fractions: np.ndarray
    names: list[str]


@dataclass(frozen=True, slots=True)
class CellQC:
    """What QC found: its summary, every input barcode with its metrics, ``passed_qc`` and
    ``qc_fail_reasons`` (``cell_qc.parquet``), and the data of the two QC plots."""

    summary: QCSummary
    cells: pd.DataFrame
    violins: QCViolins
    top_genes: TopGenes


# cell_qc.parquet: the metrics of every barcode (+ doublet_score, predicted_doublet with Scrublet)
CELL_QC_COLUMNS = (
    "sample_id",
    "total_counts",
    "n_genes_by_counts",
    "pct_counts_mt",
    "pct_counts_ribo",
    "pct_counts_hb",
    "pct_counts_in_top_20_genes",
    "log1p_total_counts",
    "log1p_n_genes_by_counts",
    "passed_qc",
    "qc_fail_reasons",
)


def qc_cells(
    *,
    src: str | Path,
    dest: str | Path,
    cells_parquet: str | Path,
    violin_png: str | Path,
    top_genes_png: str | Path,
    summary_json: str | Path,
    experiment: dict[str, Any],
) -> QCSummary:
    """:func:`cell_qc` of the library in ``src`` (.h5ad).

    Writes ``dest`` (.h5ad of the kept cells, raw counts in X), ``cells_parquet`` (every input
    barcode with its metrics, ``passed_qc`` and ``qc_fail_reasons``), the two QC plots and
    ``summary_json`` (:class:`QCSummary`).
    """
    import anndata as ad

    qc, kept = cell_qc(ad.read_h5ad(src), experiment=experiment)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    kept.write_h5ad(dest)
    _write_cell_qc(
        qc,
        cells_parquet=cells_parquet,
        violin_png=violin_png,
        top_genes_png=top_genes_png,
        summary_json=summary_json,
    )
    return qc.summary


def cell_qc(adata: AnnData, *, experiment: dict[str, Any]) -> tuple[CellQC, AnnData]:
    """QC metrics, MAD-based outlier removal (sc-best-practices), optional Scrublet doublets:
    what QC found, and the kept cells (raw counts in X, QC figures in ``uns['qc']``).  Adds the
    QC metrics to ``adata``.

    Raises
    ------
    InputError
        When QC removes every cell (or leaves too few to cluster), saying which threshold removed
        how many cells and which parameter to change.
    """
    import pandas as pd

    params = params_from_experiment(experiment)
    n_in = adata.n_obs
    groups = annotate.gene_groups(annotate.organism(experiment))
    _add_qc_metrics(adata, groups)
    obs = adata.obs
    fails, thresholds = _qc_rules(obs, params.qc)
    keep = ~np.logical_or.reduce(list(fails.values()))
    doublet_rate = None
    if params.doublets.enabled and keep.sum() >= MIN_CELLS_TO_CLUSTER:
        doublet = _doublets(adata, keep, params)
        doublet_rate = float(doublet[keep].mean())
        if params.doublets.remove:
            fails["doublet"] = doublet
            keep &= ~doublet
    removed_by = {k: int(v.sum()) for k, v in fails.items()}
    obs["passed_qc"] = keep
    obs["qc_fail_reasons"] = pd.Categorical(_reasons(fails, n_in))
    n_kept = int(keep.sum())
    if n_kept < MIN_CELLS_TO_CLUSTER:
        raise _too_few_cells(n_kept, n_in, removed_by, thresholds)
    columns = [*CELL_QC_COLUMNS, *(c for c in ("doublet_score", "predicted_doublet") if c in obs)]
    cells = obs[columns]
    violins, top_genes = _qc_violins(adata, thresholds, keep), _top_genes(adata)
    kept = _kept_cells(adata, keep, min_cells=params.qc.min_cells)
    del adata
    kept.uns["qc"] = outputs.plain(
        {
            "thresholds": thresholds,
            "removed_by": removed_by,
            "n_cells_input": n_in,
            "gene_groups": asdict(groups),
        }
    )
    summary = QCSummary(
        n_cells_input=n_in,
        n_cells_kept=n_kept,
        n_genes=int(kept.n_vars),
        n_genes_filtered=int(kept.var["feature_is_filtered"].sum()),
        thresholds=thresholds,
        removed_by=removed_by,
        doublet_rate=doublet_rate,
        medians={
            "total_counts": float(np.median(kept.obs["total_counts"])),
            "n_genes_by_counts": float(np.median(kept.obs["n_genes_by_counts"])),
            "pct_counts_mt": float(np.median(kept.obs["pct_counts_mt"])),
        },
    )
    log.info("QC kept %d of %d cells; removed by rule: %s", n_kept, n_in, removed_by)
    return CellQC(summary=summary, cells=cells, violins=violins, top_genes=top_genes), kept


def _add_qc_metrics(adata: AnnData, groups: Any) -> None:
    """scanpy's QC metrics per cell and gene, with the organism's mitochondrial, ribosomal and
    haemoglobin genes as the gene groups (flags in ``var``)."""
    import scanpy as sc

    names = adata.var["feature_name"].astype(str)
    for key, rx in (("mt", groups.mt), ("ribo", groups.ribo), ("hb", groups.hb)):
        adata.var[key] = names.str.contains(rx, regex=True).to_numpy()
    top = [20] if adata.n_vars > 20 else []
    sc.pp.calculate_qc_metrics(
        adata, qc_vars=["mt", "ribo", "hb"], percent_top=top, log1p=True, inplace=True
    )
    if not top:  # 20 genes or fewer: every count is in a cell's top 20
        adata.obs["pct_counts_in_top_20_genes"] = 100.0


def _kept_cells(adata: AnnData, keep: np.ndarray, *, min_cells: int) -> AnnData:
    """A copy of the cells that passed QC, with each gene's number of cells and
    ``feature_is_filtered`` (seen in fewer than ``min_cells`` kept cells)."""
    kept = adata[keep].copy()
    # bincount of the column indices counts the cells per gene without a CSC copy
    n_cells_gene = np.bincount(kept.X.indices, minlength=kept.n_vars)
    kept.var["n_cells"] = n_cells_gene
    kept.var["feature_is_filtered"] = n_cells_gene < min_cells
    kept.obs.drop(columns=["passed_qc", "qc_fail_reasons"], inplace=True)
    return kept


def _write_cell_qc(
    qc: CellQC,
    *,
    cells_parquet: str | Path,
    violin_png: str | Path,
    top_genes_png: str | Path,
    summary_json: str | Path,
) -> None:
    outputs.table_parquet(qc.cells, cells_parquet, index_name="obs_name")
    plots.qc_violins(
        metrics=qc.violins.metrics,
        thresholds=qc.violins.thresholds,
        dest=Path(violin_png),
        title=qc.violins.title,
    )
    plots.highest_expressed(
        fractions=qc.top_genes.fractions, names=qc.top_genes.names, dest=Path(top_genes_png)
    )
    write_json(summary_json, qc.summary.to_dict())


def _qc_rules(obs: Any, q: Any) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float | None]]]:
    """Which cells each QC rule removes (rule -> boolean mask) and the thresholds it used."""
    n_in = len(obs)
    fails: dict[str, np.ndarray] = {}
    thresholds: dict[str, dict[str, float | None]] = {}
    # a barcode without gene-expression counts (in CITE-seq exports: antibody counts only) has
    # no percentages (0 / 0): it is removed by its own rule, and the MAD thresholds are computed
    # on the cells that have counts.  The rule is listed only when it applies, so the QC of
    # ordinary libraries is unchanged.
    no_counts = obs["total_counts"].to_numpy() == 0
    if no_counts.any():
        fails["no_gene_counts"] = no_counts
    fails["min_genes"] = obs["n_genes_by_counts"].to_numpy() < q.min_genes
    thresholds["n_genes_by_counts"] = {
        "lower": float(q.min_genes) if q.min_genes else None,
        "upper": None,
    }
    for metric in QC_METRICS:
        values = obs[metric].to_numpy(dtype=float)
        lo, hi, mad = _mad_bounds(values[~no_counts], q.n_mads)
        thresholds[metric] = {
            "lower": lo,
            "upper": hi,
            "median": _median(values[~no_counts]),
            "mad": mad,
        }
        fails[metric] = (values < lo if lo is not None else False) | (
            values > hi if hi is not None else False
        )
    mt = obs["pct_counts_mt"].to_numpy(dtype=float)
    _, mt_hi, mt_mad = _mad_bounds(mt[~no_counts], q.mito_n_mads, upper_only=True)
    thresholds["pct_counts_mt"] = {
        "lower": None,
        "upper": mt_hi,
        "hard_upper": float(q.max_pct_mito),
        "median": _median(mt[~no_counts]),
        "mad": mt_mad,
    }
    fails["pct_counts_mt"] = ((mt > mt_hi) if mt_hi is not None else np.zeros(n_in, bool)) | (
        mt > q.max_pct_mito
    )
    return {
        k: np.broadcast_to(np.asarray(v, dtype=bool), (n_in,)) for k, v in fails.items()
    }, thresholds


def _too_few_cells(
    n_kept: int,
    n_in: int,
    removed_by: dict[str, int],
    thresholds: dict[str, dict[str, float | None]],
) -> InputError:
    detail = (
        "; ".join(f"{k} removed {v}" for k, v in removed_by.items() if v)
        or "no rule removed a cell"
    )
    thr = "; ".join(_describe(k, t) for k, t in thresholds.items() if _describe(k, t))
    return InputError(
        Problem(
            f"QC kept {n_kept} of {n_in} cells ({detail}); at least {MIN_CELLS_TO_CLUSTER} are needed "
            f"to cluster. Thresholds: {thr}",
            file="experiment.yaml",
            where="transcriptomics.qc",
            hint="loosen the rule that removed most cells (raise qc.n_mads / qc.mito_n_mads / "
            "qc.max_pct_mito, lower qc.min_genes), or check that this is the filtered matrix",
        )
    )


def _describe(metric: str, t: dict[str, float | None]) -> str:
    parts = []
    if t.get("lower") is not None:
        parts.append(f">= {t['lower']:.3g}")
    if t.get("upper") is not None:
        parts.append(f"<= {t['upper']:.3g}")
    if t.get("hard_upper") is not None and t["hard_upper"] < 100:
        parts.append(f"<= {t['hard_upper']:.3g} (hard)")
    return f"{metric} {' and '.join(parts)}" if parts else ""


def _reasons(fails: dict[str, np.ndarray], n: int) -> list[str]:
    out = [""] * n
    for name, mask in fails.items():
        for i in np.flatnonzero(mask):
            out[i] = f"{out[i]},{name}" if out[i] else name
    return out


def _doublets(adata: AnnData, keep: np.ndarray, params: Params) -> np.ndarray:
    """Scrublet on the cells passing QC (raw counts); returns predicted_doublet for all cells."""
    import scanpy as sc

    sub = adata[keep].copy()
    try:
        sc.pp.scrublet(
            sub,
            expected_doublet_rate=params.doublets.expected_rate,
            random_state=params.seed,
            verbose=False,
        )
    except (ValueError, IndexError) as err:
        raise InputError(
            Problem(
                f"Scrublet failed on {sub.n_obs} cells: {err}",
                file="experiment.yaml",
                where="transcriptomics.doublets.enabled",
                hint="doublet detection needs a few hundred cells; set doublets.enabled: false",
            )
        ) from None
    score = np.full(adata.n_obs, np.nan)
    pred = np.zeros(adata.n_obs, dtype=bool)
    score[keep] = sub.obs["doublet_score"].to_numpy()
    pred[keep] = sub.obs["predicted_doublet"].to_numpy(dtype=bool)
    adata.obs["doublet_score"] = score
    adata.obs["predicted_doublet"] = pred
    return pred


def _qc_violins(adata: AnnData, thresholds: dict, keep: np.ndarray) -> QCViolins:
    """The violin plot's data: the QC metrics, thresholds on log1p drawn on the counts."""
    obs = adata.obs
    lin = {  # thresholds on log1p scale drawn on the counts people read
        "total_counts": {
            k: (float(np.expm1(v)) if v is not None else None)
            for k, v in thresholds["log1p_total_counts"].items()
            if k in ("lower", "upper")
        },
        "n_genes_by_counts": {
            k: (float(np.expm1(v)) if v is not None else None)
            for k, v in thresholds["log1p_n_genes_by_counts"].items()
            if k in ("lower", "upper")
        },
        "pct_counts_mt": {
            "upper": min(
                x
                for x in (
                    thresholds["pct_counts_mt"]["upper"],
                    thresholds["pct_counts_mt"]["hard_upper"],
                )
                if x is not None
            )
        },
        "pct_counts_in_top_20_genes": thresholds["pct_counts_in_top_20_genes"],
    }
    if thresholds["n_genes_by_counts"]["lower"]:
        lo = lin["n_genes_by_counts"].get("lower")
        lin["n_genes_by_counts"]["lower"] = max(
            x for x in (lo, thresholds["n_genes_by_counts"]["lower"]) if x is not None
        )
    return QCViolins(
        metrics={k: obs[k].to_numpy() for k in lin},
        thresholds=lin,
        title=f"Cell QC: {int(keep.sum())} of {adata.n_obs} cells kept (red: thresholds)",
    )


def _top_genes(adata: AnnData) -> TopGenes:
    """The 20 genes with the highest mean fraction of a cell's counts, and those fractions."""
    import scipy.sparse as sp

    # mean fraction of a cell's counts per gene = X^T (1/total): a sparse mat-vec, no normalised copy
    X = adata.X
    totals = np.asarray(X.sum(axis=1)).ravel()
    inv = np.divide(1.0, totals, out=np.zeros_like(totals, dtype=float), where=totals > 0)
    mean_frac = np.asarray(X.T @ inv).ravel() / max(adata.n_obs, 1)
    n_top = min(20, adata.n_vars)
    top = np.argsort(-mean_frac, kind="stable")[:n_top]
    cols = X[:, top]
    cols = cols.toarray() if sp.issparse(cols) else np.asarray(cols)
    return TopGenes(
        fractions=cols * inv[:, None],
        names=adata.var["feature_name"].astype(str).to_numpy()[top].tolist(),
    )


# --------------------------------------------------------------------------- cluster and write
@dataclass(slots=True)
class ClusterSummary:
    n_cells: int
    n_genes: int
    n_hvg: int
    n_pcs: int
    n_clusters: int
    cluster_sizes: dict[str, int]
    pca_variance_ratio_top: float
    n_markers_rows: int

    def to_dict(self) -> dict[str, Any]:
        return outputs.plain(asdict(self))


@dataclass(frozen=True, slots=True)
class Embedding:
    """What the UMAP plot draws: the cells' coordinates, their cluster labels and its title."""

    coords: np.ndarray
    labels: np.ndarray
    title: str


@dataclass(frozen=True, slots=True)
class Clustering:
    """The clustered cells (``adata.zarr``; its obs and var also as Parquet), the marker genes
    per cluster, the UMAP plot's data and the summary."""

    adata: AnnData
    markers: pd.DataFrame
    umap: Embedding
    summary: ClusterSummary


def cluster_cells(
    *,
    src: str | Path,
    adata_zarr: str | Path,
    obs_parquet: str | Path,
    var_parquet: str | Path,
    markers_parquet: str | Path,
    umap_png: str | Path,
    summary_json: str | Path,
    experiment: dict[str, Any],
) -> ClusterSummary:
    """:func:`cluster` the kept cells in ``src`` (.h5ad); write outputs.

    ``data/adata.zarr`` holds: ``X`` log1p-normalised (float32, sparse; features with
    ``var['feature_is_filtered']`` are 0), ``layers['counts']`` raw integer counts,
    ``obsm['X_pca' | 'X_umap']``, ``obs['leiden']``, ``uns`` entries of each scanpy step plus
    ``uns['binds']`` (format version, parameters, software versions).
    """
    import anndata as ad

    clustering = cluster(ad.read_h5ad(src), experiment=experiment)
    _write_clustering(
        clustering,
        adata_zarr=adata_zarr,
        obs_parquet=obs_parquet,
        var_parquet=var_parquet,
        markers_parquet=markers_parquet,
        umap_png=umap_png,
        summary_json=summary_json,
    )
    return clustering.summary


def cluster(adata: AnnData, *, experiment: dict[str, Any]) -> Clustering:
    """normalize_total, log1p, HVG, PCA, neighbors, UMAP, Leiden, rank_genes_groups on the
    kept cells, in place (the raw counts move to ``layers['counts']``)."""
    import scanpy as sc
    import scipy.sparse as sp

    params = params_from_experiment(experiment)
    X = adata.X
    # a full copy, not a view sharing X's index arrays: some scanpy steps compact X in place
    # (eliminate_zeros), which would silently misalign a layer that shared them
    adata.layers["counts"] = sp.csr_matrix(
        (X.data.astype(np.int32), X.indices.copy(), X.indptr.copy()), shape=X.shape
    )
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    filtered = adata.var["feature_is_filtered"].to_numpy(dtype=bool)
    n_usable = int((~filtered).sum())
    n_hvg = max(2, min(params.n_hvg, n_usable))
    sc.pp.highly_variable_genes(adata, n_top_genes=n_hvg, flavor="seurat")
    hv = adata.var["highly_variable"].to_numpy(dtype=bool) & ~filtered
    if hv.sum() < 2:
        hv = ~filtered
    adata.var["highly_variable"] = hv
    _zero_filtered_features(adata.X, filtered)
    adata.X.eliminate_zeros()
    n_pcs = int(max(2, min(params.n_pcs, adata.n_obs - 1, int(hv.sum()) - 1)))
    sc.pp.pca(
        adata,
        n_comps=n_pcs,
        mask_var="highly_variable",
        random_state=params.seed,
        svd_solver="arpack",
    )
    n_neighbors = int(min(params.n_neighbors, adata.n_obs - 1))
    sc.pp.neighbors(
        adata,
        n_neighbors=n_neighbors,
        n_pcs=n_pcs,
        random_state=params.seed,
        transformer=knn_transformer(adata.n_obs, n_neighbors=n_neighbors, random_state=params.seed),
    )
    sc.tl.umap(adata, random_state=params.seed)
    sc.tl.leiden(
        adata,
        resolution=params.leiden_resolution,
        flavor="igraph",
        n_iterations=2,
        directed=False,
        random_state=params.seed,
    )
    markers = _markers(adata, params)
    adata.uns["binds"] = outputs.provenance(
        params=params.as_dict(),
        kind=str(adata.uns["input"]["kind"]),
        extra={"n_hvg": int(hv.sum()), "n_pcs": n_pcs},
    )
    sizes = adata.obs["leiden"].value_counts().sort_index()
    summary = ClusterSummary(
        n_cells=int(adata.n_obs),
        n_genes=int(adata.n_vars),
        n_hvg=int(hv.sum()),
        n_pcs=n_pcs,
        n_clusters=len(sizes),
        cluster_sizes={str(k): int(v) for k, v in sizes.items()},
        pca_variance_ratio_top=float(adata.uns["pca"]["variance_ratio"][0]),
        n_markers_rows=len(markers),
    )
    log.info("clustered %d cells into %d Leiden clusters", adata.n_obs, len(sizes))
    umap = Embedding(
        coords=adata.obsm["X_umap"],
        labels=adata.obs["leiden"].astype(str).to_numpy(),
        title=f"UMAP, Leiden clusters (resolution {params.leiden_resolution:g}, {adata.n_obs} cells)",
    )
    return Clustering(adata=adata, markers=markers, umap=umap, summary=summary)


def _write_clustering(
    clustering: Clustering,
    *,
    adata_zarr: str | Path,
    obs_parquet: str | Path,
    var_parquet: str | Path,
    markers_parquet: str | Path,
    umap_png: str | Path,
    summary_json: str | Path,
) -> None:
    adata = clustering.adata
    outputs.write_zarr(adata, adata_zarr)
    outputs.table_parquet(adata.obs, obs_parquet, index_name="obs_name")
    outputs.table_parquet(adata.var, var_parquet, index_name="var_name")
    outputs.table_parquet(clustering.markers, markers_parquet, index_name=None)
    umap = clustering.umap
    plots.embedding(coords=umap.coords, labels=umap.labels, dest=Path(umap_png), title=umap.title)
    write_json(summary_json, clustering.summary.to_dict())


# --------------------------------------------------------------------------- the workflow's step
@dataclass(frozen=True, slots=True)
class SingleCellResult:
    """A processed single-cell library: what its header says and where experiment.yaml
    disagrees (``_meta/facts.json``), what QC found, and the clustered cells."""

    facts: dict[str, Any]
    conflicts: list[dict[str, Any]]
    qc: CellQC
    clustering: Clustering


def process_single_cell(*, run_dir: str | Path, experiment: dict[str, Any]) -> SingleCellResult:
    """:func:`read_library`, :func:`cell_qc` and :func:`cluster` in one process: the workflow's
    single-cell rule (:func:`write_single_cell` writes the result).

    One process rather than three saves writing and re-reading the matrix twice and two
    interpreter starts with scanpy's imports (together ~15% of the time at 100k cells); the
    unfiltered matrix is released as soon as QC has copied the kept cells.
    """
    library = read_library(run_dir=run_dir, experiment=experiment)
    facts, conflicts = library.facts, library.conflicts
    qc, kept = cell_qc(library.adata, experiment=experiment)
    del library
    return SingleCellResult(
        facts=facts,
        conflicts=conflicts,
        qc=qc,
        clustering=cluster(kept, experiment=experiment),
    )


def write_single_cell(
    result: SingleCellResult,
    *,
    facts_json: str | Path,
    cells_parquet: str | Path,
    violin_png: str | Path,
    top_genes_png: str | Path,
    qc_summary_json: str | Path,
    adata_zarr: str | Path,
    obs_parquet: str | Path,
    var_parquet: str | Path,
    markers_parquet: str | Path,
    umap_png: str | Path,
    cluster_summary_json: str | Path,
) -> ClusterSummary:
    """Write a processed library to the outputs of the workflow's single-cell rule: the facts,
    the cell QC table, plots and summary, the AnnData Zarr with its obs, var and markers
    tables, the UMAP plot and the cluster summary."""
    write_json(facts_json, {"facts": result.facts, "conflicts": result.conflicts})
    _write_cell_qc(
        result.qc,
        cells_parquet=cells_parquet,
        violin_png=violin_png,
        top_genes_png=top_genes_png,
        summary_json=qc_summary_json,
    )
    _write_clustering(
        result.clustering,
        adata_zarr=adata_zarr,
        obs_parquet=obs_parquet,
        var_parquet=var_parquet,
        markers_parquet=markers_parquet,
        umap_png=umap_png,
        summary_json=cluster_summary_json,
    )
    return result.clustering.summary


# scanpy switches from exact sklearn kNN to pynndescent at this many cells
PYNNDESCENT_FROM = 8192


def knn_transformer(n_obs: int, *, n_neighbors: int, random_state: int) -> Any:
    """None (scanpy's exact kNN) below 8192 cells; above, scanpy's own pynndescent settings in
    a transformer that returns ``csr_matrix``.

    pynndescent 0.7 returns ``csr_array``, on which scanpy 1.11.5 calls ``getnnz`` (removed from
    scipy's sparse arrays): 'csr_array' object has no attribute 'getnnz' on any dataset over
    8192 cells.  Converting the kNN graph (n_obs x n_neighbors values) is cheap and harmless
    with older pynndescent that already returns csr_matrix.
    """
    if n_obs < PYNNDESCENT_FROM:
        return None
    import scanpy as sc

    return _csr_matrix_pynndescent()(
        n_neighbors=n_neighbors,
        metric="euclidean",
        metric_kwds={},
        random_state=random_state,
        n_jobs=sc.settings.n_jobs,
        n_trees=min(64, 5 + round(n_obs**0.5 / 20.0)),
        n_iters=max(5, round(np.log2(n_obs))),
    )


@cache
def _csr_matrix_pynndescent() -> type:
    import scipy.sparse as sp
    from pynndescent import PyNNDescentTransformer

    class CsrMatrixPyNNDescentTransformer(PyNNDescentTransformer):
        def transform(self, X, y=None):
            return sp.csr_matrix(super().transform(X, y))

        def fit_transform(self, X, y=None, **fit_params):
            return sp.csr_matrix(super().fit_transform(X, y, **fit_params))

    return CsrMatrixPyNNDescentTransformer


def _zero_filtered_features(X: Any, filtered: np.ndarray, chunk: int = 16_000_000) -> None:
    """Set X to 0 for filtered features (CELLxGENE's feature_is_filtered), in place and by
    slices of the stored values (no full-size temporary mask)."""
    if not filtered.any():
        return
    for start in range(0, X.data.shape[0], chunk):
        idx = X.indices[start : start + chunk]
        X.data[start : start + chunk][filtered[idx]] = 0


MARKER_COLUMNS = (
    "cluster",
    "rank",
    "var_name",
    "feature_name",
    "gene_ids",
    "score",
    "logfoldchange",
    "pval",
    "pval_adj",
    "pct_in_cluster",
    "pct_in_rest",
)


def _markers(adata: AnnData, params: Params):
    """Top marker genes per Leiden cluster as a long table (empty when there is one cluster)."""
    import pandas as pd
    import scanpy as sc

    sizes = adata.obs["leiden"].value_counts()
    groups = sorted((str(g) for g, n in sizes.items() if n >= 2), key=lambda g: (len(g), g))
    if len(sizes) < 2 or not groups:
        return pd.DataFrame(
            {
                c: pd.Series(
                    dtype="float64"
                    if c
                    in (
                        "score",
                        "logfoldchange",
                        "pval",
                        "pval_adj",
                        "pct_in_cluster",
                        "pct_in_rest",
                    )
                    else ("int64" if c == "rank" else "object")
                )
                for c in MARKER_COLUMNS
            }
        )
    sc.tl.rank_genes_groups(
        adata,
        "leiden",
        groups=groups,
        reference="rest",
        method=params.marker_method,
        pts=True,
        use_raw=False,
        n_genes=min(params.n_markers, adata.n_vars),
    )
    df = sc.get.rank_genes_groups_df(adata, group=None)
    if "group" not in df:
        df.insert(0, "group", groups[0])
    df = df.rename(
        columns={
            "group": "cluster",
            "names": "var_name",
            "scores": "score",
            "logfoldchanges": "logfoldchange",
            "pvals": "pval",
            "pvals_adj": "pval_adj",
            "pct_nz_group": "pct_in_cluster",
            "pct_nz_reference": "pct_in_rest",
        }
    )
    df["cluster"] = df["cluster"].astype(str)
    df["rank"] = df.groupby("cluster").cumcount() + 1
    var = adata.var
    df["feature_name"] = var.loc[df["var_name"], "feature_name"].astype(str).to_numpy()
    df["gene_ids"] = var.loc[df["var_name"], "gene_ids"].astype(str).to_numpy()
    for c in MARKER_COLUMNS:
        if c not in df:
            df[c] = np.nan
    return df[list(MARKER_COLUMNS)].reset_index(drop=True)
