"""Processing functions in-process: QC, bulk matching, privacy, parameters, preflight, demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from tx_helpers import BASE_EXPERIMENT, link_files, write_experiment

from pipelines.errors import InputError
from pipelines.modalities import transcriptomics as tx
from pipelines.modalities.transcriptomics import annotate, bulk, params, readers
from pipelines.modalities.transcriptomics.demo import synthetic_counts


@pytest.mark.parametrize("path", ["sklearn-exact", "pynndescent"])
def test_neighbors_runs_on_both_knn_paths_with_the_locked_versions(path):
    """scanpy 1.11.5 calls .getnnz on the kNN graph: scipy 1.17's csr_matrix and pynndescent 0.7's
    csr_array lack it.  scanpy takes the pynndescent path from 8192 cells on; it is forced here
    on a small matrix through the transformer the workflow uses there."""
    import anndata as ad
    import scanpy as sc

    from pipelines.modalities.transcriptomics.singlecell import (
        _csr_matrix_pynndescent,
        knn_transformer,
    )

    X, _, _ = synthetic_counts(n_cells=300, n_genes=60, n_types=2, seed=4)
    a = ad.AnnData(X=X.astype(np.float32))
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=5, random_state=0)
    assert knn_transformer(300, n_neighbors=10, random_state=0) is None  # exact below 8192 cells
    assert knn_transformer(9000, n_neighbors=10, random_state=0).n_trees == 10
    transformer = (
        None
        if path == "sklearn-exact"
        else _csr_matrix_pynndescent()(n_neighbors=10, random_state=0)
    )
    sc.pp.neighbors(a, n_neighbors=10, random_state=0, transformer=transformer)
    conn = a.obsp["connectivities"]
    assert conn.shape == (300, 300) and conn.nnz >= 300 * 9


def test_schema_fields_all_have_description_and_default():
    def walk(node, path):
        for name, sub in (node.get("properties") or {}).items():
            assert "description" in sub, f"{path}{name} has no description"
            assert "default" in sub, f"{path}{name} has no default"
            walk(sub, f"{path}{name}.")

    walk(params.schema(), "")


def test_params_defaults_come_from_the_schema():
    p = tx.params_from_experiment(
        {"transcriptomics": {"qc": {"n_mads": 3}, "bulk": {"match": "strip_suffix"}}}
    )
    assert p.qc.n_mads == 3 and p.qc.mito_n_mads == 3 and p.qc.max_pct_mito == 20
    assert p.input_kind == "auto" and p.n_hvg == 2000 and p.doublets.enabled is False
    assert p.bulk.match == "strip_suffix" and p.bulk.suffix == ""


def test_qc_that_removes_every_cell_says_which_threshold(tmp_path, tx_data):
    loaded = readers.read_10x_h5(tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5")
    a = loaded.adata
    a.obs["sample_id"] = "S1"
    a.write_h5ad(tmp_path / "in.h5ad")
    exp = {**BASE_EXPERIMENT, "transcriptomics": {"qc": {"min_genes": 5000}}}
    with pytest.raises(InputError) as err:
        tx.qc_cells(
            src=tmp_path / "in.h5ad",
            dest=tmp_path / "out.h5ad",
            cells_parquet=tmp_path / "c.parquet",
            violin_png=tmp_path / "v.png",
            top_genes_png=tmp_path / "t.png",
            summary_json=tmp_path / "s.json",
            experiment=exp,
        )
    p = err.value.problems[0]
    assert p.message.startswith("QC kept 0 of 1107 cells (min_genes removed 1107")
    assert p.where == "transcriptomics.qc" and "lower qc.min_genes" in p.hint
    assert not (tmp_path / "out.h5ad").exists()


def test_qc_mad_rule_removes_damaged_cells_and_records_why(tmp_path):
    import anndata as ad

    X, symbols, _ = synthetic_counts(
        n_cells=400, n_genes=300, n_types=3, seed=1, damaged_fraction=0.1
    )
    a = ad.AnnData(X=X.astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(400)]
    a.var_names = [f"E{i}" for i in range(300)]
    a.var["feature_name"] = symbols
    a.obs["sample_id"] = "S1"
    a.write_h5ad(tmp_path / "in.h5ad")
    s = tx.qc_cells(
        src=tmp_path / "in.h5ad",
        dest=tmp_path / "out.h5ad",
        cells_parquet=tmp_path / "c.parquet",
        violin_png=tmp_path / "v.png",
        top_genes_png=tmp_path / "t.png",
        summary_json=tmp_path / "s.json",
        experiment=BASE_EXPERIMENT,
    )
    cells = pd.read_parquet(tmp_path / "c.parquet")
    assert len(cells) == 400 and s.n_cells_kept == int(cells["passed_qc"].sum())
    assert s.removed_by["pct_counts_mt"] >= 30  # ~10% damaged cells carry 25x mito reads
    failed = cells[~cells["passed_qc"]]
    assert (failed["qc_fail_reasons"].str.len() > 0).all()
    assert (
        cells.loc[cells["passed_qc"], "pct_counts_mt"].max()
        < s.thresholds["pct_counts_mt"]["upper"] + 1e-9
    )
    assert json.loads((tmp_path / "s.json").read_text())["n_cells_input"] == 400


# ----------------------------------------------------------------------------- bulk
def test_pasilla_sheet_names_mismatch_is_reported_pair_by_pair(tx_data):
    sheet, col = bulk.read_sample_sheet(
        tx_data / "bulk_pasilla" / "pasilla_sample_annotation.csv", sample_column=None
    )
    counts, _ = bulk.read_count_table(tx_data / "bulk_pasilla" / "pasilla_gene_counts.tsv")
    assert counts.shape == (14599, 7)
    with pytest.raises(InputError) as err:
        bulk.match_samples(
            sheet[col].tolist(),
            list(counts.columns),
            bp=tx.params_from_experiment({}).bulk,
            sheet_file="pasilla_sample_annotation.csv",
            counts_file="pasilla_gene_counts.tsv",
            sample_column=col,
        )
    problems = err.value.problems
    assert len(problems) == 7
    first = problems[0]
    assert first.file == "pasilla_sample_annotation.csv" and first.where == "column 'file', row 2"
    assert first.message == "sample 'treated1fb' is not a column of pasilla_gene_counts.tsv"
    assert "the count table has 'treated1'" in first.hint and "suffix: 'fb'" in first.hint


def test_pasilla_with_the_suffix_rule_matches_every_sample(tx_data):
    sheet, col = bulk.read_sample_sheet(
        tx_data / "bulk_pasilla" / "pasilla_sample_annotation.csv", sample_column=None
    )
    bp = tx.params_from_experiment(
        {"transcriptomics": {"bulk": {"match": "strip_suffix", "suffix": "fb"}}}
    ).bulk
    cols = [
        "untreated1",
        "untreated2",
        "untreated3",
        "untreated4",
        "treated1",
        "treated2",
        "treated3",
    ]
    order = bulk.match_samples(
        sheet[col].tolist(), cols, bp=bp, sheet_file="s", counts_file="c", sample_column=col
    )
    assert order == [
        "treated1",
        "treated2",
        "treated3",
        "untreated1",
        "untreated2",
        "untreated3",
        "untreated4",
    ]


def test_count_table_with_a_fractional_value_names_gene_and_sample(tmp_path):
    (tmp_path / "counts.tsv").write_text("gene_id\tA\tB\ng1\t3\t4\ng2\t5\t2.5\n")
    with pytest.raises(InputError) as err:
        bulk.read_count_table(tmp_path / "counts.tsv")
    p = err.value.problems[0]
    assert p.message == "value 2.5 is not an integer: raw read counts are expected"
    assert p.where == "column 'B', gene g2" and "TPM" in p.hint


def test_count_table_drops_htseq_summary_rows_and_keeps_symbols(tmp_path):
    (tmp_path / "counts.csv").write_text(
        "gene_id,gene_name,A,B\ng1,ACTB,3,4\ng2,GAPDH,5,2\n__no_feature,,9,9\n"
    )
    counts, annotation = bulk.read_count_table(tmp_path / "counts.csv")
    assert list(counts.index) == ["g1", "g2"] and list(counts.columns) == ["A", "B"]
    assert list(annotation["gene_name"]) == ["ACTB", "GAPDH"]


# ----------------------------------------------------------------------------- privacy
def test_sample_sheet_with_birth_dates_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "counts.tsv").write_text("gene_id\tP1\tP2\ng1\t3\t4\ng2\t50\t20\n")
    (run_dir / "samples.csv").write_text(
        "sample,condition,date_of_birth\nP1,a,1970-01-02\nP2,b,1980-03-04\n"
    )
    write_experiment(run_dir)
    with pytest.raises(InputError) as err:
        tx.load_bulk(run_dir=run_dir, experiment=_exp(run_dir))
    p = err.value.problems[0]
    assert p.file == "samples.csv" and p.where == "column 'date_of_birth'"
    assert "a date of birth" in p.message and "pseudonymous code" in p.hint
    assert "1970" not in str(err.value)


def test_h5ad_obs_with_patient_names_and_emails_is_refused(tmp_path):
    import anndata as ad

    a = ad.AnnData(X=sp.csr_matrix(np.ones((3, 2), dtype=np.float32)))
    a.obs_names = ["c1", "c2", "c3"]
    a.var_names = ["g1", "g2"]
    a.obs["patient_name"] = ["Ann Lee", "Bo Chan", "Cy Diaz"]
    a.obs["contact"] = ["x@example.org", "y@example.org", "z@example.org"]
    a.write_h5ad(tmp_path / "run.h5ad")
    problems = annotate.table_privacy_problems(a.obs, file="run.h5ad", what="obs column")
    assert [p.where for p in problems] == ["obs column 'patient_name'", "obs column 'contact'"]
    run_dir = write_experiment(tmp_path)
    with pytest.raises(InputError) as err:
        tx.load_single_cell(
            run_dir=run_dir,
            experiment=_exp(run_dir),
            dest=tmp_path / "o.h5ad",
            facts_json=tmp_path / "f.json",
        )
    assert {p.where for p in err.value.problems} == {
        "obs column 'patient_name'",
        "obs column 'contact'",
    }
    assert "example.org" not in str(err.value)


def test_donor_id_that_looks_like_a_name_fails_preflight(tmp_path, tx_data):
    run_dir = tmp_path / "run"
    link_files(run_dir, [tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5"])
    write_experiment(
        run_dir,
        samples=[
            {
                "id": "S1",
                "organism": "NCBITaxon:9606",
                "donor_id": "Maria_Lopez",
                "description": "PBMC, donor born 1961-04-02",
            }
        ],
    )
    problems = tx.preflight(run_dir, _exp(run_dir))
    assert [p.where for p in problems] == ["samples[0].donor_id", "samples[0].description"]
    assert "a personal name" in problems[0].message and "a date of birth" in problems[1].message
    assert "Lopez" not in " ".join(map(str, problems)) and "1961" not in " ".join(
        map(str, problems)
    )


def _exp(run_dir: Path) -> dict:
    from pipelines.describe.metadata import load_experiment

    return load_experiment(run_dir).data


# ----------------------------------------------------------------------------- preflight / discovery
def test_preflight_is_clean_on_the_real_folders(tmp_path, tx_data):
    for name, files in {
        "v3": [tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5"],
        "v2": sorted((tx_data / "10x_v2_pbmc_small").iterdir()),
    }.items():
        run_dir = tmp_path / name
        link_files(run_dir, files)
        write_experiment(run_dir)
        assert tx.preflight(run_dir, _exp(run_dir)) == []
    assert tx.resolve_input(tmp_path / "v2", tx.params_from_experiment({})).kind == "10x_mtx"


def test_preflight_reports_the_pasilla_mismatch_without_computing(tmp_path, tx_data):
    run_dir = tmp_path / "run"
    link_files(run_dir, sorted((tx_data / "bulk_pasilla").glob("pasilla_*")))
    write_experiment(run_dir)
    spec = tx.resolve_input(run_dir, tx.params_from_experiment({}))
    assert (spec.kind, spec.path.name, spec.sample_sheet.name) == (
        "bulk_counts",
        "pasilla_gene_counts.tsv",
        "pasilla_sample_annotation.csv",
    )
    problems = tx.preflight(run_dir, _exp(run_dir))
    assert len(problems) == 7 and "untreated4fb" in problems[-1].message


@pytest.mark.parametrize("key", ["counts", "sample_sheet"])
def test_bulk_file_named_in_experiment_yaml_must_exist(tmp_path, tx_data, key):
    from pipelines.errors import InputError

    run_dir = tmp_path / "run"
    link_files(run_dir, sorted((tx_data / "bulk_pasilla").glob("pasilla_*")))
    params = tx.params_from_experiment({"transcriptomics": {"bulk": {key: "missing.tsv"}}})
    with pytest.raises(InputError) as info:
        tx.resolve_input(run_dir, params)
    (problem,) = info.value.problems
    assert (problem.file, problem.where) == ("experiment.yaml", f"transcriptomics.bulk.{key}")
    assert problem.message == "missing.tsv does not exist in the run folder"


def test_two_libraries_in_one_folder_need_input_path(tmp_path, tx_data):
    h5 = tx_data / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5"
    run_dir = tmp_path / "run"
    link_files(run_dir, [h5], into="lib1")
    link_files(run_dir, [h5], into="lib2")
    write_experiment(run_dir)
    problems = tx.preflight(run_dir, _exp(run_dir))
    assert (
        problems[0].where == "transcriptomics.input.path"
        and "2 candidate inputs" in problems[0].message
    )
    p = tx.params_from_experiment(
        {"transcriptomics": {"input": {"path": "lib2/filtered_feature_bc_matrix.h5"}}}
    )
    assert tx.resolve_input(run_dir, p).path == run_dir / "lib2" / "filtered_feature_bc_matrix.h5"


def test_empty_run_folder_says_what_it_looked_for(tmp_path):
    run_dir = write_experiment(tmp_path / "run")
    problems = tx.preflight(run_dir, _exp(run_dir))
    assert (
        problems[0].message == "no transcriptomics input found"
        and "filtered_feature_bc_matrix.h5" in problems[0].hint
    )


def test_demo_run_is_deterministic_for_a_seed(tmp_path):
    a = tx.make_demo_run(tmp_path / "a", seed=3, n_cells=200, n_genes=120)
    b = tx.make_demo_run(tmp_path / "b", seed=3, n_cells=200, n_genes=120)
    ra = readers.read_10x_h5(a / "filtered_feature_bc_matrix.h5").adata
    rb = readers.read_10x_h5(b / "filtered_feature_bc_matrix.h5").adata
    assert (ra.X != rb.X).nnz == 0 and list(ra.obs_names) == list(rb.obs_names)
    assert (a / "experiment.yaml").read_text() == (b / "experiment.yaml").read_text()
    assert _exp(a)["modality"] == "transcriptomics"
    assert tx.preflight(a, _exp(a)) == []


def test_demo_run_steps_find_its_cell_types(tmp_path):
    """The demo's steps in-process (binds demo runs them through the workflow; the workflow
    itself is exercised on the real files in test_transcriptomics_workflow.py)."""
    import anndata as ad
    import zarr

    run_dir = tx.make_demo_run(tmp_path / "run", seed=0, n_cells=600, n_genes=400, n_types=4)
    exp = _exp(run_dir)
    w = tmp_path / "w"
    facts = tx.load_single_cell(
        run_dir=run_dir, experiment=exp, dest=w / "l.h5ad", facts_json=w / "facts.json"
    )
    assert facts["assay_ontology_term_id"] == "EFO:0009922"
    qc = tx.qc_cells(
        src=w / "l.h5ad",
        dest=w / "q.h5ad",
        cells_parquet=w / "c.parquet",
        violin_png=w / "v.png",
        top_genes_png=w / "t.png",
        summary_json=w / "qc.json",
        experiment=exp,
    )
    assert qc.removed_by["pct_counts_mt"] > 0 and qc.doublet_rate is not None
    cl = tx.cluster_cells(
        src=w / "q.h5ad",
        adata_zarr=w / "a.zarr",
        obs_parquet=w / "o.parquet",
        var_parquet=w / "var.parquet",
        markers_parquet=w / "m.parquet",
        umap_png=w / "u.png",
        summary_json=w / "cl.json",
        experiment=exp,
    )
    assert cl.n_clusters == 4, cl.cluster_sizes  # four well separated synthetic cell types
    metrics = tx.write_metrics(
        dest=w / "metrics.json",
        summaries=[w / "qc.json", w / "cl.json"],
        facts_json=w / "facts.json",
    )
    assert metrics["n_clusters"] == 4 and metrics["n_cells"] == qc.n_cells_kept
    adata = ad.read_zarr(w / "a.zarr")
    assert "doublet_score" in adata.obs and adata.obs["donor_id"].iloc[0] == "D01"
    assert zarr.open_group(w / "a.zarr", mode="r").attrs["encoding-type"] == "anndata"


def _cite_seq_run(run_dir: Path, *, n_cells: int = 300, n_empty: int = 12) -> Path:
    """A CITE-seq style export: Gene Expression + Antibody Capture features, barcodes that are
    not 10x-style (``L1_00000``), and a few barcodes with antibody counts but no gene counts
    (what made QC divide 0 by 0)."""
    import h5py

    X, symbols, _ = synthetic_counts(n_cells=n_cells, n_genes=400, n_types=3, seed=1)
    X = X.tolil()
    X[:n_empty, :] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    adt = sp.csr_matrix(np.random.default_rng(0).poisson(20, size=(n_cells, 5)).astype(np.int32))
    M = sp.hstack([X, adt], format="csr").T.tocsc()  # features x barcodes, as Cell Ranger writes it
    names = [*symbols.tolist(), "CD3", "CD4", "CD8", "CD19", "CD14"]
    ids = [f"ENSG{i:011d}" for i in range(400)] + [f"{n}_TotalSeqB" for n in names[400:]]
    types = ["Gene Expression"] * 400 + ["Antibody Capture"] * 5
    run_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(run_dir / "filtered_feature_bc_matrix.h5", "w") as f:  # the v3 layout, by hand
        g = f.create_group("matrix")
        g["data"], g["indices"], g["indptr"] = (
            M.data.astype(np.int32),
            M.indices.astype(np.int64),
            M.indptr,
        )
        g["shape"] = np.array(M.shape, dtype=np.int32)
        g["barcodes"] = np.array([f"L1_{i:05d}" for i in range(n_cells)], dtype="S")
        ft = g.create_group("features")
        ft["id"], ft["name"] = np.array(ids, dtype="S"), np.array(names, dtype="S")
        ft["feature_type"], ft["genome"] = (
            np.array(types, dtype="S"),
            np.array(["GRCh38"] * 405, dtype="S"),
        )
    return write_experiment(run_dir)


def test_cite_seq_export_with_gene_less_barcodes_is_processed(tmp_path):
    """Issue 9 item 7: the QC step crashed with 'Out of range float values are not JSON
    compliant: nan'.  Gene expression is processed, antibody counts kept in obsm, the barcodes
    without gene counts removed by their own QC rule, and every JSON written is valid."""
    import anndata as ad

    run_dir = _cite_seq_run(tmp_path / "run")
    w = tmp_path / "w"
    out = {
        k: w / v
        for k, v in dict(
            facts_json="facts.json",
            cells_parquet="cells.parquet",
            violin_png="violin.png",
            top_genes_png="top.png",
            qc_summary_json="qc.json",
            adata_zarr="adata.zarr",
            obs_parquet="obs.parquet",
            var_parquet="var.parquet",
            markers_parquet="markers.parquet",
            umap_png="umap.png",
            cluster_summary_json="cluster.json",
        ).items()
    }
    result = tx.process_single_cell(run_dir=run_dir, experiment=_exp(run_dir))
    summary = tx.write_single_cell(result, **out)
    metrics = tx.write_metrics(
        dest=w / "metrics.json",
        summaries=[out["qc_summary_json"], out["cluster_summary_json"]],
        facts_json=out["facts_json"],
    )
    qc = json.loads(out["qc_summary_json"].read_text())  # strict JSON: NaN would not parse back
    assert qc["removed_by"]["no_gene_counts"] == 12 and qc["n_cells_input"] == 300
    assert all(np.isfinite(t["median"]) for t in qc["thresholds"].values() if "median" in t)
    cells = pd.read_parquet(out["cells_parquet"])
    empty = cells[cells.obs_name.isin([f"L1_{i:05d}" for i in range(12)])]
    assert (~empty.passed_qc).all() and empty.qc_fail_reasons.str.contains("no_gene_counts").all()
    assert metrics["n_cells"] == summary.n_cells
    adata = ad.read_zarr(out["adata_zarr"])
    assert adata.n_vars == 400 and set(adata.var["feature_types"]) == {"Gene Expression"}
    protein = adata.obsm["antibody_capture"]
    assert list(protein.columns) == [
        "CD3_TotalSeqB",
        "CD4_TotalSeqB",
        "CD8_TotalSeqB",
        "CD19_TotalSeqB",
        "CD14_TotalSeqB",
    ]
    assert list(protein.index) == list(adata.obs_names) and protein.to_numpy().dtype.kind == "i"
    assert list(adata.uns["feature_types"]["antibody_capture"]["names"]) == [
        "CD3",
        "CD4",
        "CD8",
        "CD19",
        "CD14",
    ]
    assert (
        json.loads(out["facts_json"].read_text())["facts"]["other_feature_types"]
        == "Antibody Capture"
    )


def test_cellxgene_sample_fields_are_complete_with_unknown_and_na():
    from pipelines.modalities.transcriptomics.annotate import sample_fields

    human = sample_fields(
        {"id": "S1", "organism": "NCBITaxon:9606", "sex": "PATO:0000384"},
        assay="EFO:0009922",
        suspension_type="cell",
    )
    assert human["sex_ontology_term_id"] == "PATO:0000384"
    assert human["disease_ontology_term_id"] == "unknown"
    assert human["development_stage_ontology_term_id"] == "unknown"
    assert human["self_reported_ethnicity_ontology_term_id"] == "unknown"
    assert human["is_primary_data"] is True and human["tissue_type"] == "tissue"
    mouse = sample_fields(
        {"id": "M1", "organism": "NCBITaxon:10090", "development_stage": "MmusDv:0000110"},
        assay="EFO:0009922",
        suspension_type="nucleus",
    )
    assert mouse["self_reported_ethnicity_ontology_term_id"] == "na"
    assert mouse["development_stage_ontology_term_id"] == "MmusDv:0000110"
