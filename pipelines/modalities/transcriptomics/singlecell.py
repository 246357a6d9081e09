"""Single-cell steps: load -> QC (MAD outliers, optional doublets) -> cluster and write.

Each step is one keyword-only function called by one Snakemake rule.  Intermediate AnnData
travel as ``.h5ad`` under ``_meta/work`` (not published).  The matrix stays sparse throughout;
the only dense arrays are per-cell / per-gene vectors, the PCA/UMAP embeddings, and the counts
of a few top genes for a plot.
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
    adata, facts = read_library(run_dir=run_dir, experiment=experiment, facts_json=facts_json)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(dest)
    return facts


def read_library(
    *, run_dir: str | Path, experiment: dict[str, Any], facts_json: str | Path
) -> tuple[AnnData, dict[str, Any]]:
    """The checked, annotated library in memory (see :func:`load_single_cell`); writes facts_json."""
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
    write_json(facts_json, {"facts": facts, "conflicts": conflicts})
    log.info(
        "loaded %s: %d barcodes x %d genes (%s)",
        adata.uns["input"]["file"],
        adata.n_obs,
        adata.n_vars,
        spec.kind,
    )
    return adata, facts


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
    """QC metrics, MAD-based outlier removal (sc-best-practices), optional Scrublet doublets.

    Writes ``dest`` (.h5ad of the kept cells, raw counts in X), ``cells_parquet`` (every input
    barcode with its metrics, ``passed_qc`` and ``qc_fail_reasons``), the two QC plots and
    ``summary_json`` (:class:`QCSummary`).

    Raises
    ------
    InputError
        When QC removes every cell (or leaves too few to cluster), saying which threshold removed
        how many cells and which parameter to change.
    """
    import anndata as ad

    summary, _ = _qc(
        ad.read_h5ad(src),
        dest=dest,
        cells_parquet=cells_parquet,
        violin_png=violin_png,
        top_genes_png=top_genes_png,
        summary_json=summary_json,
        experiment=experiment,
    )
    return summary


def process_single_cell(
    *,
    run_dir: str | Path,
    experiment: dict[str, Any],
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
    """:func:`load_single_cell`, :func:`qc_cells` and :func:`cluster_cells` in one process: the
    workflow's single-cell rule.

    One process rather than three saves writing and re-reading the matrix twice and two
    interpreter starts with scanpy's imports (together ~15% of the time at 100k cells); the
    unfiltered matrix is released as soon as QC has copied the kept cells.
    """
    adata, _ = read_library(run_dir=run_dir, experiment=experiment, facts_json=facts_json)
    _, kept = _qc(
        adata,
        dest=None,
        cells_parquet=cells_parquet,
        violin_png=violin_png,
        top_genes_png=top_genes_png,
        summary_json=qc_summary_json,
        experiment=experiment,
    )
    del adata
    return _cluster(
        kept,
        adata_zarr=adata_zarr,
        obs_parquet=obs_parquet,
        var_parquet=var_parquet,
        markers_parquet=markers_parquet,
        umap_png=umap_png,
        summary_json=cluster_summary_json,
        experiment=experiment,
    )


def _qc(
    adata: AnnData,
    *,
    dest: str | Path | None,
    cells_parquet: str | Path,
    violin_png: str | Path,
    top_genes_png: str | Path,
    summary_json: str | Path,
    experiment: dict[str, Any],
) -> tuple[QCSummary, AnnData]:
    import pandas as pd
    import scanpy as sc

    params = params_from_experiment(experiment)
    n_in = adata.n_obs
    groups = annotate.gene_groups(annotate.organism(experiment))
    names = adata.var["feature_name"].astype(str)
    for key, rx in (("mt", groups.mt), ("ribo", groups.ribo), ("hb", groups.hb)):
        adata.var[key] = names.str.contains(rx, regex=True).to_numpy()
    top = [20] if adata.n_vars > 20 else []
    sc.pp.calculate_qc_metrics(
        adata, qc_vars=["mt", "ribo", "hb"], percent_top=top, log1p=True, inplace=True
    )
    if not top:
        adata.obs["pct_counts_in_top_20_genes"] = 100.0
    obs = adata.obs
    q = params.qc
    fails, thresholds = _qc_rules(obs, q)
    keep = ~np.logical_or.reduce(list(fails.values()))
    doublet_rate = None
    if params.doublets.enabled and keep.sum() >= MIN_CELLS_TO_CLUSTER:
        doublet = _doublets(adata, keep, params)
        doublet_rate = float(doublet[keep].mean())
        if params.doublets.remove:
            fails["doublet"] = doublet
            keep &= ~doublet
    removed_by = {k: int(v.sum()) for k, v in fails.items()}
    reasons = _reasons(fails, n_in)
    obs["passed_qc"] = keep
    obs["qc_fail_reasons"] = pd.Categorical(reasons)
    n_kept = int(keep.sum())
    if n_kept < MIN_CELLS_TO_CLUSTER:
        raise _too_few_cells(n_kept, n_in, removed_by, thresholds)
    metrics_cols = [
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
    ]
    metrics_cols += [c for c in ("doublet_score", "predicted_doublet") if c in obs]
    outputs.table_parquet(obs[metrics_cols], cells_parquet, index_name="obs_name")
    _qc_plots(
        adata, thresholds, keep, violin_png=Path(violin_png), top_genes_png=Path(top_genes_png)
    )
    kept = adata[keep].copy()
    del adata
    # genes seen in fewer than min_cells kept cells: bincount of column indices avoids a CSC copy
    n_cells_gene = np.bincount(kept.X.indices, minlength=kept.n_vars)
    kept.var["n_cells"] = n_cells_gene
    kept.var["feature_is_filtered"] = n_cells_gene < q.min_cells
    kept.obs.drop(columns=["passed_qc", "qc_fail_reasons"], inplace=True)
    kept.uns["qc"] = outputs.plain(
        {
            "thresholds": thresholds,
            "removed_by": removed_by,
            "n_cells_input": n_in,
            "gene_groups": asdict(groups),
        }
    )
    if dest is not None:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        kept.write_h5ad(dest)
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
    write_json(summary_json, summary.to_dict())
    log.info("QC kept %d of %d cells; removed by rule: %s", n_kept, n_in, removed_by)
    return summary, kept


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


def _qc_plots(
    adata: AnnData, thresholds: dict, keep: np.ndarray, *, violin_png: Path, top_genes_png: Path
) -> None:
    import scipy.sparse as sp

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
    metrics = {k: obs[k].to_numpy() for k in lin}
    plots.qc_violins(
        metrics=metrics,
        thresholds=lin,
        dest=violin_png,
        title=f"Cell QC: {int(keep.sum())} of {adata.n_obs} cells kept (red: thresholds)",
    )
    # mean fraction of a cell's counts per gene = X^T (1/total): a sparse mat-vec, no normalised copy
    X = adata.X
    totals = np.asarray(X.sum(axis=1)).ravel()
    inv = np.divide(1.0, totals, out=np.zeros_like(totals, dtype=float), where=totals > 0)
    mean_frac = np.asarray(X.T @ inv).ravel() / max(adata.n_obs, 1)
    n_top = min(20, adata.n_vars)
    top = np.argsort(-mean_frac, kind="stable")[:n_top]
    cols = X[:, top]
    cols = cols.toarray() if sp.issparse(cols) else np.asarray(cols)
    plots.highest_expressed(
        fractions=cols * inv[:, None],
        names=adata.var["feature_name"].astype(str).to_numpy()[top].tolist(),
        dest=top_genes_png,
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
    """normalize_total, log1p, HVG, PCA, neighbors, UMAP, Leiden, rank_genes_groups; write outputs.

    ``data/adata.zarr`` holds: ``X`` log1p-normalised (float32, sparse; features with
    ``var['feature_is_filtered']`` are 0), ``layers['counts']`` raw integer counts,
    ``obsm['X_pca' | 'X_umap']``, ``obs['leiden']``, ``uns`` entries of each scanpy step plus
    ``uns['binds']`` (format version, parameters, software versions).
    """
    import anndata as ad

    return _cluster(
        ad.read_h5ad(src),
        adata_zarr=adata_zarr,
        obs_parquet=obs_parquet,
        var_parquet=var_parquet,
        markers_parquet=markers_parquet,
        umap_png=umap_png,
        summary_json=summary_json,
        experiment=experiment,
    )


def _cluster(
    adata: AnnData,
    *,
    adata_zarr: str | Path,
    obs_parquet: str | Path,
    var_parquet: str | Path,
    markers_parquet: str | Path,
    umap_png: str | Path,
    summary_json: str | Path,
    experiment: dict[str, Any],
) -> ClusterSummary:
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
    outputs.write_zarr(adata, adata_zarr)
    outputs.table_parquet(adata.obs, obs_parquet, index_name="obs_name")
    outputs.table_parquet(adata.var, var_parquet, index_name="var_name")
    outputs.table_parquet(markers, markers_parquet, index_name=None)
    labels = adata.obs["leiden"].astype(str).to_numpy()
    plots.embedding(
        coords=adata.obsm["X_umap"],
        labels=labels,
        dest=Path(umap_png),
        title=f"UMAP, Leiden clusters (resolution {params.leiden_resolution:g}, {adata.n_obs} cells)",
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
    write_json(summary_json, summary.to_dict())
    log.info("clustered %d cells into %d Leiden clusters", adata.n_obs, len(sizes))
    return summary


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
