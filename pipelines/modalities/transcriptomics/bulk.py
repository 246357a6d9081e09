"""Bulk RNA-seq: a genes x samples count table plus a sample sheet -> AnnData, log-CPM, PCA.

Matching rule (documented in the schema and docs/formats/transcriptomics.md): every sample-sheet
name must equal a count-table column after the configured transformation (``exact``;
``strip_suffix`` removes ``suffix`` from sheet names; ``case_insensitive``).  A mismatch is an
error naming each sheet row with the column it most likely means and the setting that would match
them; nothing is matched silently.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError, Problem
from pipelines.toolkit.stage import write_json

from . import annotate, outputs, plots
from .discover import input_name, resolve_input
from .params import BulkParams, Params, params_from_experiment

log = logging.getLogger(__name__)

# non-numeric annotation columns a count table may carry next to the counts
ANNOTATION_COLUMNS = {
    "gene_name",
    "gene_symbol",
    "symbol",
    "name",
    "description",
    "gene_biotype",
    "biotype",
    "chr",
    "chromosome",
    "gene_type",
}
GROUP_COLUMNS = ("condition", "group", "treatment")
N_TOP_VARIABLE = 500  # genes for the sample PCA, as DESeq2's plotPCA
ASSAY_BULK = "EFO:0008896"


def _read_table(path: Path, **kwargs: Any):
    import pandas as pd

    name = path.name.lower().removesuffix(".gz")
    sep = "," if name.endswith(".csv") else ("\t" if name.endswith(".tsv") else None)
    try:
        return pd.read_csv(path, sep=sep, engine="python" if sep is None else "c", **kwargs)
    except pd.errors.EmptyDataError:
        raise InputError(Problem("the table is empty", file=path.name)) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as err:
        raise InputError(
            Problem(
                f"cannot read it as a table: {str(err).splitlines()[0][:200]}",
                file=path.name,
                hint="a TSV or CSV with one header line",
            )
        ) from None


def read_count_table(path: str | Path):
    """(counts, annotation): counts as int64 DataFrame genes x samples, plus annotation columns.

    HTSeq's summary rows (``__no_feature``, ``__ambiguous`` ...) are dropped: they are not genes.
    """
    import pandas as pd

    path = Path(path)
    table = _read_table(path, dtype=str, keep_default_na=False)
    if table.shape[1] < 2:
        raise InputError(
            Problem(
                f"only {table.shape[1]} column(s): expected gene ids then one column per sample",
                file=path.name,
                where="header",
            )
        )
    id_col = table.columns[0]
    table = table[~table[id_col].str.startswith("__")]
    genes = table[id_col].astype(str).str.strip()
    dup = genes[genes.duplicated()]
    if len(dup):
        raise InputError(
            Problem(
                f"gene id {dup.iloc[0]!r} appears more than once ({len(dup)} repeats in all)",
                file=path.name,
                where=f"column '{id_col}', line {int(dup.index[0]) + 2}",
                hint="one row per gene: sum or remove the repeated rows",
            )
        )
    counts: dict[str, np.ndarray] = {}
    annotation: dict[str, Any] = {}
    for col in table.columns[1:]:
        raw = table[col].str.strip()
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna()
        if bad.all() and str(col).lower().replace(" ", "_") in ANNOTATION_COLUMNS:
            annotation[str(col)] = raw.to_numpy()
            continue
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            value = raw.iloc[i]
            raise InputError(
                Problem(
                    f"{value!r} is not a count" if value else "missing count",
                    file=path.name,
                    where=f"column '{col}', gene {genes.iloc[i]}",
                    hint="every sample column holds integer read counts; remove annotation columns or "
                    f"name them one of {', '.join(sorted(ANNOTATION_COLUMNS))}",
                )
            )
        values = num.to_numpy(dtype=float)
        wrong = (values < 0) | (np.mod(values, 1) != 0)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            what = "negative" if values[i] < 0 else "not an integer"
            raise InputError(
                Problem(
                    f"value {raw.iloc[i]} is {what}: raw read counts are expected",
                    file=path.name,
                    where=f"column '{col}', gene {genes.iloc[i]}",
                    hint="give the integer count table (featureCounts / HTSeq / STAR), not TPM or "
                    "normalised values; estimated counts from salmon/RSEM must be rounded first",
                )
            )
        counts[str(col)] = values.astype(np.int64)
    if not counts:
        raise InputError(Problem("no sample columns with counts", file=path.name, where="header"))
    index = pd.Index(genes.to_numpy(), name=None)
    return pd.DataFrame(counts, index=index), pd.DataFrame(annotation, index=index)


def read_sample_sheet(path: str | Path, *, sample_column: str | None):
    """The sample sheet as strings, and the name of its sample column."""
    path = Path(path)
    sheet = _read_table(path, dtype=str, keep_default_na=False)
    col = sample_column or str(sheet.columns[0])
    if col not in sheet.columns:
        raise InputError(
            Problem(
                f"no column {col!r}; columns are {', '.join(map(str, sheet.columns))}",
                file=path.name,
                where="header",
                hint="set transcriptomics.bulk.sample_column to the column of sample names",
            )
        )
    sheet[col] = sheet[col].astype(str).str.strip()
    dup = sheet[col][sheet[col].duplicated()]
    if len(dup):
        raise InputError(
            Problem(
                f"sample {dup.iloc[0]!r} appears more than once",
                file=path.name,
                where=f"column '{col}', row {int(dup.index[0]) + 2}",
            )
        )
    return sheet, col


def _key(name: str, bp: BulkParams) -> str:
    if bp.match == "strip_suffix" and bp.suffix and name.endswith(bp.suffix):
        return name[: -len(bp.suffix)]
    if bp.match == "case_insensitive":
        return name.lower()
    return name


def match_samples(
    sheet_names: list[str],
    columns: list[str],
    *,
    bp: BulkParams,
    sheet_file: str,
    counts_file: str,
    sample_column: str,
) -> list[str]:
    """The count column of each sample-sheet name, in sheet order; InputError naming each mismatch."""
    col_key = {(_key(c, bp) if bp.match == "case_insensitive" else c): c for c in columns}
    matched: list[str] = []
    problems: list[Problem] = []
    paired: set[str] = set()
    for row, name in enumerate(sheet_names, start=2):
        key = _key(name, bp)
        if key in col_key:
            matched.append(col_key[key])
            continue
        hint, partner = _suggest(name, columns)
        if partner:
            paired.add(partner)
        problems.append(
            Problem(
                f"sample '{name}' is not a column of {counts_file}",
                file=sheet_file,
                where=f"column '{sample_column}', row {row}",
                hint=hint,
            )
        )
    for c in columns:
        if c not in matched and c not in paired:
            problems.append(
                Problem(
                    f"count column '{c}' has no row in the sample sheet {sheet_file}",
                    file=counts_file,
                    where=f"column '{c}'",
                    hint="add the sample to the sheet, or remove the column",
                )
            )
    if problems:
        raise InputError(problems)
    return matched


def _suggest(name: str, columns: list[str]) -> tuple[str, str | None]:
    for c in columns:
        if name.startswith(c) and len(name) > len(c):
            return (
                f"the count table has '{c}': set transcriptomics.bulk.match: strip_suffix and "
                f"transcriptomics.bulk.suffix: '{name[len(c) :]}' to match them, or rename one"
            ), c
    for c in columns:
        if c.lower() == name.lower():
            return f"the count table has '{c}': set transcriptomics.bulk.match: case_insensitive", c
    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'? the names must match exactly", close[0]
    return f"count columns are {', '.join(columns)}", None


@dataclass(slots=True)
class BulkSummary:
    n_samples: int
    n_genes: int
    n_genes_kept: int
    min_count: int
    min_samples: int
    library_size_min: int
    library_size_median: float
    library_size_max: int
    min_sample_correlation: float | None
    pca_variance_ratio: list[float]

    def to_dict(self) -> dict[str, Any]:
        return outputs.plain(asdict(self))


def load_bulk(*, run_dir: str | Path, experiment: dict[str, Any]):
    """Read and check the count table and sample sheet; an AnnData (samples x genes) of counts."""
    import anndata as ad
    import pandas as pd

    params = params_from_experiment(experiment)
    problems = annotate.experiment_privacy_problems(experiment)
    spec = resolve_input(run_dir, params)
    if spec.kind != "bulk_counts":
        raise InputError(
            Problem(
                f"{spec.path.name} is a {spec.kind} input, not a bulk count table",
                file="experiment.yaml",
                where="transcriptomics.input.kind",
            )
        )
    sheet = None
    if spec.sample_sheet is not None:
        sheet, col = read_sample_sheet(spec.sample_sheet, sample_column=params.bulk.sample_column)
        problems += annotate.table_privacy_problems(sheet, file=spec.sample_sheet.name)
    if problems:
        raise InputError(problems)
    counts, annotation = read_count_table(spec.path)
    columns = list(counts.columns)
    if sheet is not None:
        order = match_samples(
            sheet[col].tolist(),
            columns,
            bp=params.bulk,
            sheet_file=spec.sample_sheet.name,
            counts_file=spec.path.name,
            sample_column=col,
        )
        obs = sheet.rename(columns={col: "sample_sheet_name"})
        obs.index = pd.Index(order)
    else:
        order = columns
        obs = pd.DataFrame(index=pd.Index(order))
    obs.columns = [str(c) for c in obs.columns]
    X = counts[order].to_numpy().T
    var = pd.DataFrame(index=counts.index.astype(str))
    var["gene_ids"] = var.index.to_numpy()
    name_col = next(
        (
            c
            for c in annotation.columns
            if c.lower().replace(" ", "_") in ("gene_name", "gene_symbol", "symbol", "name")
        ),
        None,
    )
    var["feature_name"] = (
        annotation[name_col].astype(str).to_numpy() if name_col else var.index.to_numpy()
    )
    var["feature_types"] = "Gene Expression"
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["input"] = {
        "kind": "bulk_counts",
        "file": input_name(run_dir, experiment, spec, spec.path),
        "sample_sheet": input_name(run_dir, experiment, spec, spec.sample_sheet),
    }
    _annotate_samples(adata, experiment, params)
    return adata, params


def _annotate_samples(adata, experiment: dict[str, Any], params: Params) -> None:
    assay = params.assay_ontology_term_id or ASSAY_BULK
    exp_samples = annotate.samples(experiment)
    rows = {
        str(s.get("id")): annotate.sample_fields(s, assay=assay, suspension_type="na")
        for s in exp_samples
    }
    common = {}
    if exp_samples:
        all_rows = list(rows.values())
        common = {k: v for k, v in all_rows[0].items() if all(r[k] == v for r in all_rows)}
    import pandas as pd

    # a sample named like the count-table column is that sample; with one sample, all are its
    only = str(exp_samples[0].get("id")) if len(exp_samples) == 1 else None
    if "sample_id" not in adata.obs:
        adata.obs["sample_id"] = pd.Categorical(
            [str(n) if str(n) in rows else only for n in adata.obs_names]
        )
    default = annotate.sample_fields({}, assay=assay, suspension_type="na")
    for field_name in default:
        if field_name == "sample_id":
            continue
        values = []
        for name in adata.obs_names:
            src = rows.get(str(name)) or common
            values.append(src.get(field_name, default[field_name]))
        adata.obs[field_name] = values
    adata.obs["suspension_type"] = "na"


def normalise_bulk(
    adata: Any, *, bulk: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, str | None]:
    """Library sizes, low-count filter and log2-CPM, in place: ``X`` becomes log2(CPM + 1)
    (filtered genes 0, as CELLxGENE asks), raw counts go to ``layers['counts']``.

    Returns (counts, library sizes, kept-gene mask, log2-CPM of the kept genes in float64,
    min_samples used, group column or None).
    """
    import pandas as pd

    counts = adata.X.astype(np.int64)
    lib = counts.sum(axis=1)
    zero = np.flatnonzero(lib == 0)
    if zero.size:
        raise InputError(
            Problem(
                f"sample '{adata.obs_names[zero[0]]}' has no counts at all",
                file=adata.uns["input"]["file"],
                where=f"column '{adata.obs_names[zero[0]]}'",
                hint="remove the empty sample or check the quantification",
            )
        )
    group_col = bulk.group_column or next((c for c in GROUP_COLUMNS if c in adata.obs), None)
    if bulk.group_column and bulk.group_column not in adata.obs:
        raise InputError(
            Problem(
                f"no column {bulk.group_column!r} in the sample sheet",
                file="experiment.yaml",
                where="transcriptomics.bulk.group_column",
                hint=f"columns: {', '.join(map(str, adata.obs.columns))}",
            )
        )
    groups = adata.obs[group_col].astype(str).tolist() if group_col else None
    min_samples = bulk.min_samples or (min(pd.Series(groups).value_counts()) if groups else 2)
    min_samples = int(min(min_samples, adata.n_obs))
    expressed = (counts >= bulk.min_count).sum(axis=0)
    keep = expressed >= min_samples
    if not keep.any():
        raise InputError(
            Problem(
                f"no gene has >= {bulk.min_count} counts in >= {min_samples} samples",
                file="experiment.yaml",
                where="transcriptomics.bulk.min_count",
                hint="lower bulk.min_count or bulk.min_samples",
            )
        )
    logcpm = np.log2(counts / lib[:, None] * 1e6 + 1.0)
    logcpm[:, ~keep] = 0.0  # CELLxGENE: filtered features are 0 in X
    adata.layers["counts"] = counts
    adata.X = logcpm.astype(np.float32)
    adata.obs["library_size"] = lib
    adata.obs["n_genes_detected"] = (counts > 0).sum(axis=1)
    adata.var["total_counts"] = counts.sum(axis=0)
    adata.var["n_samples_expressed"] = expressed
    adata.var["feature_is_filtered"] = ~keep
    return counts, lib, keep, logcpm[:, keep].astype(np.float64), min_samples, group_col


def _sample_pca(adata: Any, kept: np.ndarray, *, seed: int) -> list[float]:
    """PCA of the samples on the most variable kept genes (``obsm['X_pca']``, ``uns['pca']``);
    its explained variance ratios, or [] with fewer than 3 samples."""
    from sklearn.decomposition import PCA

    if adata.n_obs < 3:
        return []
    var_genes = np.argsort(-kept.var(axis=0), kind="stable")[:N_TOP_VARIABLE]
    n_comp = min(adata.n_obs - 1, len(var_genes), 10)
    pca = PCA(n_components=n_comp, svd_solver="full", random_state=seed)
    adata.obsm["X_pca"] = pca.fit_transform(kept[:, var_genes])
    variance_ratio = [float(x) for x in pca.explained_variance_ratio_]
    adata.uns["pca"] = {"variance_ratio": np.asarray(variance_ratio), "n_top_genes": len(var_genes)}
    return variance_ratio


@dataclass(slots=True)
class BulkResult:
    """A processed count table: the samples x genes AnnData (log2-CPM in ``X``, raw counts in
    ``layers['counts']``, the PCA in ``obsm``, the sample correlation in ``obsp``), the facts of
    ``_meta/facts.json``, the sample groups (None without a group column) and the summary."""

    adata: Any
    facts: dict[str, Any]
    groups: list[str] | None
    summary: BulkSummary


def process_bulk(*, run_dir: str | Path, experiment: dict[str, Any]) -> BulkResult:
    """Library sizes, low-count filter, log2-CPM, PCA (top variable genes), sample correlation:
    the workflow's bulk rule (:func:`write_bulk` writes the result)."""
    adata, params = load_bulk(run_dir=run_dir, experiment=experiment)
    bp = params.bulk
    _, lib, keep, kept, min_samples, group_col = normalise_bulk(adata, bulk=bp)
    groups = adata.obs[group_col].astype(str).tolist() if group_col else None
    corr = np.corrcoef(kept) if adata.n_obs > 1 else np.ones((1, 1))
    adata.obsp["correlation"] = corr
    variance_ratio = _sample_pca(adata, kept, seed=params.seed)
    adata.uns["binds"] = outputs.provenance(
        params=params.as_dict(),
        kind="bulk_counts",
        extra={"min_samples": min_samples, "group_column": group_col or ""},
    )
    off_diag = corr[~np.eye(len(corr), dtype=bool)]
    summary = BulkSummary(
        n_samples=int(adata.n_obs),
        n_genes=int(adata.n_vars),
        n_genes_kept=int(keep.sum()),
        min_count=bp.min_count,
        min_samples=min_samples,
        library_size_min=int(lib.min()),
        library_size_median=float(np.median(lib)),
        library_size_max=int(lib.max()),
        min_sample_correlation=float(off_diag.min()) if off_diag.size else None,
        pca_variance_ratio=variance_ratio,
    )
    facts = {
        "input_kind": "bulk_counts",
        "layout": "bulk_counts",
        "n_samples": int(adata.n_obs),
        "n_features": int(adata.n_vars),
        "group_column": group_col or "",
    }
    log.info("bulk: %d samples x %d genes, %d kept", adata.n_obs, adata.n_vars, keep.sum())
    return BulkResult(adata=adata, facts=facts, groups=groups, summary=summary)


def write_bulk(
    result: BulkResult,
    *,
    adata_zarr: str | Path,
    obs_parquet: str | Path,
    var_parquet: str | Path,
    counts_parquet: str | Path,
    correlation_parquet: str | Path,
    pca_png: str | Path,
    correlation_png: str | Path,
    summary_json: str | Path,
    facts_json: str | Path,
) -> BulkSummary:
    """Write a processed count table to the outputs of the workflow's bulk rule: the PCA and
    correlation plots, the AnnData Zarr with its obs and var tables, the counts (genes x
    samples) and correlation tables, the summary and the facts."""
    import pandas as pd

    adata = result.adata
    names = list(map(str, adata.obs_names))
    variance_ratio = result.summary.pca_variance_ratio
    plots.pca_samples(
        coords=adata.obsm["X_pca"] if "X_pca" in adata.obsm else np.zeros((adata.n_obs, 2)),
        names=names,
        groups=result.groups,
        variance_ratio=np.asarray(variance_ratio) if variance_ratio else np.zeros(2),
        dest=Path(pca_png),
    )
    corr = adata.obsp["correlation"]
    plots.correlation_heatmap(corr=corr, names=names, dest=Path(correlation_png))
    for col in adata.obs.columns:  # Zarr holds no Python objects
        if adata.obs[col].dtype == object:
            adata.obs[col] = adata.obs[col].astype(str)
    outputs.write_zarr(adata, adata_zarr)
    outputs.table_parquet(adata.obs, obs_parquet, index_name="obs_name")
    outputs.table_parquet(adata.var, var_parquet, index_name="var_name")
    wide = pd.DataFrame(adata.layers["counts"].T, index=adata.var_names, columns=names)
    outputs.table_parquet(wide, counts_parquet, index_name="gene_id")
    outputs.table_parquet(
        pd.DataFrame(corr, index=adata.obs_names, columns=names),
        correlation_parquet,
        index_name="sample",
    )
    write_json(summary_json, result.summary.to_dict())
    write_json(facts_json, {"facts": result.facts, "conflicts": []})
    return result.summary
