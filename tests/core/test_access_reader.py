"""pipelines.access: the catalog as a DataFrame and each version as its standard lazy object,
from a local folder and from S3 (moto on loopback), without Snakemake or Prefect."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipelines import access

ROOT = Path(__file__).resolve().parents[2]


def _ids(df):
    return {r.modality: r.dataset_id for r in df.itertuples()}


def test_catalog_dataframe_and_filters(demo_store):
    df = access.catalog(demo_store)
    assert (
        len(df) == 4
        and str(df["n_cells"].dtype) == "Int64"
        and str(df["qc_pass"].dtype) == "boolean"
    )
    assert list(
        access.catalog(demo_store, organisms="NCBITaxon:9606", z_prime_median__min=0.5)["modality"]
    ) == ["screening"]
    assert set(access.catalog(demo_store, modality=["cryoem", "metabolomics"])["modality"]) == {
        "cryoem",
        "metabolomics",
    }
    assert access.catalog(demo_store, n_spectra=lambda s: s > 0)["modality"].tolist() == [
        "metabolomics"
    ]
    assert len(access.catalog(demo_store, acquired__min="2026-11-20", latest=True)) == 4
    with pytest.raises(KeyError, match="no catalog column"):
        access.catalog(demo_store, colour="red")


def test_open_returns_the_standard_objects_lazily(demo_store):
    import anndata
    import pyarrow.dataset as ds
    import zarr

    ids = _ids(access.catalog(demo_store))
    root = access.open(ids["cryoem"], store=demo_store)
    assert isinstance(root, zarr.Group) and root.attrs["ome"]["multiscales"][0]["name"] == "map"
    level0 = root["0"]
    assert level0.ndim == 3 and level0[0, :4, :4].shape == (4, 4)
    adata = access.open(ids["transcriptomics"], version=1, store=demo_store)
    assert isinstance(adata, anndata.AnnData) and adata.n_obs > 100
    assert type(adata.X).__name__.endswith("Dataset"), "X stays on the store (backed)"
    assert adata.X[:5].shape == (5, adata.n_vars) and "organism_ontology_term_id" in adata.obs
    wells = access.open(ids["screening"], store=demo_store)
    assert isinstance(wells, ds.Dataset) and wells.to_table(columns=["well"]).num_rows > 0
    hits = access.open(ids["screening"], store=demo_store, path="hits")
    assert hits.count_rows() > 0
    spectra = access.open(ids["metabolomics"], store=demo_store, check_sha256=True)
    ms1 = spectra.to_table(columns=["run", "mz"], filter=ds.field("ms_level") == 1)
    assert ms1.num_rows > 0 and len(set(ms1["run"].to_pylist())) == 3
    assert access.manifest(ids["cryoem"], store=demo_store)["files"]
    with pytest.raises(access.DatasetNotFound):
        access.open("no-such-dataset", store=demo_store)
    with pytest.raises(access.DatasetNotFound):
        access.open(ids["cryoem"], version=7, store=demo_store)


def test_check_sha256_names_a_damaged_file(demo_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(demo_store, store)
    ds_id = _ids(access.catalog(store))["screening"]
    row = access.catalog(store, dataset_id=ds_id).iloc[0]
    target = store / row["path"] / "data" / "hits.parquet"
    target.write_bytes(target.read_bytes()[:-1] + b"\0")
    access.open(ds_id, store=store, path="wells", check_sha256=True)  # other files are fine
    with pytest.raises(ValueError, match=r"hits\.parquet differs"):
        access.open(ds_id, store=store, path="hits", check_sha256=True)


def test_reader_imports_without_snakemake_prefect_or_boto3(demo_store):
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('snakemake', 'prefect', 'boto3', 'typer', 'jsonschema'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        from pipelines import access
        df = access.catalog({str(demo_store)!r})
        for r in df.itertuples():
            obj = access.open(r.dataset_id, store={str(demo_store)!r})
            print(r.modality, type(obj).__name__)
        assert not [m for m in sys.modules if m.split('.')[0] in ('snakemake', 'prefect', 'boto3')]
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(out.stdout.split("\n")[:-1]) == [
        "cryoem Group",
        "metabolomics FileSystemDataset",
        "screening FileSystemDataset",
        "transcriptomics AnnData",
    ]


def test_reading_from_s3_with_the_standard_aws_endpoint_variable(
    demo_store, s3_bucket, s3_endpoint, monkeypatch
):
    import boto3

    bucket = s3_bucket.removeprefix("s3://")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for path in demo_store.rglob("*"):
        if path.is_file():
            client.upload_file(
                str(path), bucket, "curated/" + path.relative_to(demo_store).as_posix()
            )
    monkeypatch.delenv("BINDS_S3_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    url = f"{s3_bucket}/curated"
    df = access.catalog(url)
    assert len(df) == 4
    ids = _ids(df)
    root = access.open(ids["cryoem"], store=url, check_sha256=True)
    local = access.open(ids["cryoem"], store=demo_store)
    np.testing.assert_array_equal(root["0"][10:20], local["0"][10:20])
    adata = access.open(ids["transcriptomics"], store=url)
    assert adata.X[:3].shape[0] == 3
    spectra = access.open(ids["metabolomics"], store=url)
    assert spectra.count_rows() == access.open(ids["metabolomics"], store=demo_store).count_rows()
    # BINDS_S3_ENDPOINT_URL alone is still honoured
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", s3_endpoint)
    assert len(access.catalog(url)) == 4


def test_samples_table_joins_across_modalities(demo_store):
    df = access.samples(demo_store)
    assert set(df.columns) >= {
        "sample_id",
        "organism",
        "tissue",
        "cell_type",
        "compound",
        "dataset_id",
        "modality",
    }
    assert sorted(df[df.modality == "metabolomics"].sample_id) == ["S1", "S2", "S3"]
    human = access.samples(demo_store, organism="NCBITaxon:9606")
    assert set(human.modality) == {"cryoem", "metabolomics", "screening", "transcriptomics"}
    assert list(access.samples(demo_store, tissue="UBERON:0001969").modality.unique()) == [
        "metabolomics"
    ]


def test_one_compound_joins_across_two_modalities(demo_store):
    """The demo's caffeine: metabolomics samples given it (catalog samples table, sample_id on
    the spectra and feature peaks) and the screening wells that tested it (plate-map ChEBI)."""
    import pyarrow.dataset as ds

    caffeine = "CHEBI:27732"
    exposed = access.samples(demo_store, compound=caffeine)
    assert sorted(exposed.sample_id) == ["S2", "S3"] and set(exposed.modality) == {"metabolomics"}
    ids = _ids(access.catalog(demo_store, latest=True))
    spectra = access.open(ids["metabolomics"], store=demo_store)
    runs = spectra.to_table(columns=["run", "sample_id"]).to_pandas().drop_duplicates()
    # human samples: each run is named by its run id (run-001 = S1.mzML, in file-name order)
    assert dict(zip(runs.run, runs.sample_id, strict=True)) == {
        "run-001": "S1",
        "run-002": "S2",
        "run-003": "S3",
    }
    peaks = access.open(ids["metabolomics"], path="feature_peaks", store=demo_store)
    peak_samples = set(peaks.to_table(columns=["sample_id"]).column("sample_id").to_pylist())
    assert peak_samples == {"S1", "S2", "S3"}
    wells = access.open(ids["screening"], store=demo_store).to_table(
        filter=ds.field("compound_chebi") == caffeine
    )
    assert wells.num_rows > 0 and set(wells.column("compound").to_pylist()) == {"DR-01"}
    assert set(wells.column("experiment_sample_id").to_pylist()) == {"DOSE-KIN-01"}
    screen = access.samples(demo_store, modality="screening")
    assert "DOSE-KIN-01" in set(screen.sample_id)
    joined = exposed.merge(
        wells.to_pandas()[["compound_chebi", "compound_inchikey"]].drop_duplicates(),
        left_on="compound",
        right_on="compound_chebi",
    )
    assert len(joined) == 2 and set(joined.compound_inchikey) == {"RYYVLZVUVIJVGH-UHFFFAOYSA-N"}
    obs = access.open(ids["transcriptomics"], store=demo_store).obs
    assert set(obs.sex_ontology_term_id) == {"PATO:0000383"} and obs.is_primary_data.all()
