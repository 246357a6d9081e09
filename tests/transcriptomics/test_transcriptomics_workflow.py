"""Real Snakemake runs of workflows/transcriptomics on the shared files and the demo generator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from tx_helpers import link_files, run, write_experiment

from pipelines.errors import InputError
from pipelines.modalities import transcriptomics as tx
from pipelines.modalities.transcriptomics import readers
from pipelines.toolkit.stage import StagedDataset

CELLXGENE_OBS = (
    "assay_ontology_term_id",
    "tissue_ontology_term_id",
    "cell_type_ontology_term_id",
    "donor_id",
    "suspension_type",
    "organism_ontology_term_id",
    "sample_id",
    "sex_ontology_term_id",
    "disease_ontology_term_id",
    "development_stage_ontology_term_id",
    "self_reported_ethnicity_ontology_term_id",
    "tissue_type",
    "is_primary_data",
)


def _digest(stage: StagedDataset) -> dict[str, str]:
    return {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in stage.published_files()}


def _png_chunks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, names = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        names.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return names


def test_real_v3_run_writes_anndata_zarr_with_raw_counts(v3_stage, tx_data):
    adata = ad.read_zarr(v3_stage.data_dir / "adata.zarr")
    assert (
        json.loads((v3_stage.data_dir / "adata.zarr" / "zarr.json").read_text())["zarr_format"] == 3
    )
    source = readers.read_10x_h5(
        tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5"
    ).adata
    counts = adata.layers["counts"]
    assert np.issubdtype(counts.dtype, np.integer)
    expected = source[adata.obs_names, adata.var_names].X
    assert (counts != expected).nnz == 0  # raw counts kept exactly, for the cells QC kept
    metrics = v3_stage.metrics
    assert metrics["n_cells_input"] == 1107 and metrics["n_cells"] == adata.n_obs > 900
    assert metrics["n_clusters"] == adata.obs["leiden"].nunique() >= 2
    assert metrics["chemistry"] == "Single Cell 3' v3" and metrics["input_kind"] == "10x_h5"
    assert adata.uns["binds"]["format_version"] == "1"
    assert adata.uns["binds"]["parameters"]["n_pcs"] == 15
    assert "scanpy" in adata.uns["binds"]["software"]
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2) and adata.obsm["X_pca"].shape[1] == 15


def test_real_v3_run_fills_cellxgene_fields_from_experiment_yaml(v3_stage):
    obs = pd.read_parquet(v3_stage.data_dir / "obs.parquet")
    var = pd.read_parquet(v3_stage.data_dir / "var.parquet")
    assert obs.columns[0] == "obs_name" and var.columns[0] == "var_name"
    first = obs.iloc[0]
    assert (
        first["assay_ontology_term_id"],
        first["tissue_ontology_term_id"],
        first["donor_id"],
        first["cell_type_ontology_term_id"],
        first["suspension_type"],
        first["sample_id"],
    ) == ("EFO:0009922", "UBERON:0000178", "D07", "unknown", "cell", "LIB-21")
    assert all(c in obs for c in (*CELLXGENE_OBS, "leiden", "total_counts", "pct_counts_mt"))
    # not given in the experiment.yaml: unknown (human donor), per CELLxGENE 5.x
    assert (obs.sex_ontology_term_id == "unknown").all()
    assert (obs.self_reported_ethnicity_ontology_term_id == "unknown").all()
    assert obs.is_primary_data.dtype == bool and obs.is_primary_data.all()
    assert var["feature_is_filtered"].dtype == bool and var["feature_is_filtered"].any()
    assert {"gene_ids", "feature_name", "feature_types", "highly_variable"} <= set(var.columns)
    adata = ad.read_zarr(v3_stage.data_dir / "adata.zarr")
    filtered = adata.var["feature_is_filtered"].to_numpy()
    assert adata.X[:, filtered].sum() == 0  # CELLxGENE meaning: filtered features are 0 in X
    assert adata.layers["counts"][:, filtered].sum() > 0  # ... and still counted in the raw layer


def test_real_v3_run_markers_qc_and_plots(v3_stage):
    markers = pd.read_parquet(v3_stage.data_dir / "markers.parquet")
    assert list(markers.columns) == list(tx.singlecell.MARKER_COLUMNS)
    assert len(markers) > 0 and markers.groupby("cluster")["rank"].min().eq(1).all()
    assert markers["feature_name"].notna().all()
    cells = pd.read_parquet(v3_stage.qc_dir / "cell_qc.parquet")
    assert len(cells) == 1107 and int(cells["passed_qc"].sum()) == v3_stage.metrics["n_cells"]
    for png in ("qc_violin.png", "highest_expressed_genes.png", "umap_leiden.png"):
        chunks = _png_chunks(v3_stage.qc_dir / png)
        assert b"tIME" not in chunks and b"tEXt" not in chunks, png  # no timestamp, no version tag
    facts = v3_stage.facts
    assert facts["facts"]["library_ids"] == "test2" and facts["conflicts"] == []


def test_same_input_gives_the_same_bytes(v3_stage, v3_run_dir, tmp_path):
    again = run(v3_run_dir, tmp_path)
    assert _digest(again) == _digest(v3_stage)
    assert any(rel.startswith("data/adata.zarr/") for rel in _digest(again))


def test_pasilla_bulk_run_with_the_suffix_rule(pasilla_stage, tx_data):
    adata = ad.read_zarr(pasilla_stage.data_dir / "adata.zarr")
    assert adata.n_obs == 7 and adata.n_vars == 14599
    assert list(adata.obs_names[:3]) == ["treated1", "treated2", "treated3"]
    assert adata.obs.loc["treated1", "sample_sheet_name"] == "treated1fb"
    assert adata.obs.loc["treated1", "assay_ontology_term_id"] == "EFO:0008896"
    assert adata.obs.loc["treated1", "organism_ontology_term_id"] == "NCBITaxon:7227"
    source = pd.read_csv(
        tx_data / "bulk_pasilla" / "pasilla_gene_counts.tsv", sep="\t", index_col=0
    )
    counts = pd.read_parquet(pasilla_stage.data_dir / "counts.parquet").set_index("gene_id")
    assert counts.equals(source[counts.columns])
    assert np.array_equal(
        adata.layers["counts"][adata.obs_names.get_loc("untreated2")],
        source["untreated2"].to_numpy(),
    )
    assert adata.obs.loc["untreated2", "library_size"] == source["untreated2"].sum()
    m = pasilla_stage.metrics
    assert m["n_samples"] == 7 and 0 < m["n_genes_kept"] < 14599
    assert 0.9 < m["min_sample_correlation"] < 1
    corr = pd.read_parquet(pasilla_stage.qc_dir / "sample_correlation.parquet")
    assert corr.shape == (7, 8) and np.allclose(np.diag(corr.iloc[:, 1:].to_numpy()), 1)
    assert adata.obsm["X_pca"].shape == (7, 6)
    # treated and untreated separate on PC1 or PC2 (pasilla knock-down)
    treated = adata.obs["condition"] == "treated"
    pcs = adata.obsm["X_pca"][:, :2]
    assert any(
        pcs[treated, k].max() < pcs[~treated, k].min()
        or pcs[treated, k].min() > pcs[~treated, k].max()
        for k in range(2)
    )


def test_pasilla_without_a_rule_fails_with_the_names_and_publishes_nothing(tmp_path, tx_data):
    run_dir = tmp_path / "run"
    link_files(run_dir, sorted((tx_data / "bulk_pasilla").glob("pasilla_*")))
    write_experiment(run_dir)
    with pytest.raises(InputError) as err:
        run(run_dir, tmp_path / "work")
    text = str(err.value)
    assert (
        "pasilla_sample_annotation.csv: column 'file', row 2: sample 'treated1fb' is not a column of "
        "pasilla_gene_counts.tsv (the count table has 'treated1'" in text
    )
    stage = StagedDataset(tmp_path / "work" / "stage")
    assert stage.published_files() == []


def test_corrupt_h5_stops_the_run_with_exit_2_problem(tmp_path, tx_data):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    src = (tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5").read_bytes()
    (run_dir / "filtered_feature_bc_matrix.h5").write_bytes(src[:20000])
    write_experiment(run_dir)
    with pytest.raises(InputError) as err:
        run(run_dir, tmp_path / "work")
    assert err.value.exit_code == 2
    p = err.value.problems[0]
    assert p.file == "filtered_feature_bc_matrix.h5" and "not a readable HDF5 file" in p.message
    assert StagedDataset(tmp_path / "work" / "stage").published_files() == []
