"""Catalog rows for selecting training data: typed columns, the null rule, `binds catalog` filters."""

from __future__ import annotations

import io
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from pipelines.access.catalog_schema import CATALOG_SCHEMA, parse_where
from pipelines.cli import app
from pipelines.describe.catalog import figures, read_catalog, rebuild_catalog
from pipelines.store import open_store


def binds(*args):
    return CliRunner().invoke(app, list(args))


def test_rows_are_typed_with_selection_columns_and_figures(demo_store):
    table = read_catalog(open_store(demo_store, read_only=True))
    assert table.schema.equals(CATALOG_SCHEMA, check_metadata=False)
    rows = {r["modality"]: r for r in table.to_pylist()}
    assert set(rows) == {"cryoem", "metabolomics", "transcriptomics", "screening"}
    for r in rows.values():
        assert r["organisms"] == ["NCBITaxon:9606"] and r["licence"] in ("CC0-1.0", "CC-BY-4.0")
        assert (
            r["acquired"].isoformat() == "2026-11-20"
            and r["instrument_model"]
            and r["support_unit"]
        )
        # metabolomics: spectra / chromatograms format 1, the feature tables format 2
        want = "1/2" if r["modality"] == "metabolomics" else "1"
        assert r["format_version"] == want and r["data_formats"] and isinstance(r["qc_pass"], bool)
        assert r["metadata_path"] == r["path"] + "metadata.jsonld" and r["data_bytes"] <= r["bytes"]
        assert r["report_path"] is None or r["report_path"].endswith("qc/report.html")
    assert rows["metabolomics"]["tissues"] == ["UBERON:0001969"] and rows["metabolomics"][
        "sample_ids"
    ] == ["S1", "S2", "S3"]
    assert "binds-metabolomics-features/2" in rows["metabolomics"]["data_formats"]
    assert rows["metabolomics"]["compounds"] == ["CHEBI:27732"]
    # a screen's compounds come from its plate map (the wells' id columns), not from samples
    assert rows["screening"]["compounds"] == [
        "CHEBI:15738",
        "CHEBI:27732",
        "CHEBI:28262",
        "PUBCHEM.COMPOUND:2519",
        "PUBCHEM.COMPOUND:44259",
        "PUBCHEM.COMPOUND:679",
    ]
    assert (
        isinstance(rows["cryoem"]["resolution_angstrom"], float)
        and rows["cryoem"]["resolution_beyond_nyquist"] is False
    )
    assert (
        isinstance(rows["transcriptomics"]["n_cells"], int)
        and rows["transcriptomics"]["n_cells"] > 100
    )
    assert rows["metabolomics"]["n_spectra"] > 0 and rows["screening"]["z_prime_median"] > 0
    # the null rule: a figure another modality does not have is null, not 0 or ""
    assert rows["screening"]["n_cells"] is None and rows["cryoem"]["z_prime_median"] is None


def test_text_figure_is_null_in_a_number_column():
    f = figures(
        {
            "resolution_fsc0143_angstrom": "beyond Nyquist",
            "meets_expected_resolution": 0,
            "n_cells": 12.0,
            "z_prime_median": float("nan"),
        }
    )
    assert f["resolution_angstrom"] is None and f["resolution_beyond_nyquist"] is True
    assert f["qc_pass"] is False and f["n_cells"] == 12 and f["z_prime_median"] is None


def test_binds_catalog_filters_on_the_selection_columns(demo_store):
    def ids(*args):
        out = binds("catalog", "--store", str(demo_store), "--json", *args)
        assert out.exit_code == 0, out.output
        return sorted(r["modality"] for r in json.loads(out.stdout))

    assert ids("--organism", "NCBITaxon:9606") == [
        "cryoem",
        "metabolomics",
        "screening",
        "transcriptomics",
    ]
    assert ids("--tissue", "UBERON:0001969") == ["metabolomics"]
    # caffeine: the plasma samples given it, and the screen that tested it (its plate map)
    assert ids("--compound", "CHEBI:27732") == ["metabolomics", "screening"]
    assert ids("--where", "z_prime_median>=0.5") == ["screening"]
    assert ids("--where", "resolution_angstrom<=10", "--qc", "pass") == ["cryoem"]
    assert ids("--licence", "CC0-1.0") == ["cryoem"]
    assert ids("--where", "n_cells>=100000") == []
    assert ids("--where", "acquired>=2026-11-01", "--where", "modality=cryoem,screening") == [
        "cryoem",
        "screening",
    ]
    row = json.loads(
        binds("catalog", "--store", str(demo_store), "--json", "--modality", "screening").stdout
    )[0]
    assert row["organisms"] == ["NCBITaxon:9606"] and row["qc"]["n_hits"] == row["n_hits"]
    table = binds("catalog", "--store", str(demo_store))
    assert table.exit_code == 0 and "NCBITaxon:9606" in table.stdout
    for bad in (
        ["--where", "nonsense"],
        ["--where", "no_such_column=1"],
        ["--qc", "maybe"],
        ["--format", "xml"],
    ):
        out = binds("catalog", "--store", str(demo_store), *bad)
        assert out.exit_code == 2, (bad, out.output)


def test_parse_where():
    assert parse_where(["n_cells>=10", "licence=CC0-1.0,CC-BY-4.0", "qc_pass=true"]) == {
        "n_cells__min": 10,
        "licence": ["CC0-1.0", "CC-BY-4.0"],
        "qc_pass": True,
    }


def test_rows_of_the_previous_catalog_format_still_read(demo_store, tmp_path):
    store_dir = tmp_path / "store"
    shutil.copytree(demo_store, store_dir)
    # a store from before the catalog log: row files only (no _log/, no _snapshots/)
    for part in ("_log", "_snapshots"):
        shutil.rmtree(store_dir / "open" / "catalog" / part, ignore_errors=True)
    store = open_store(store_dir)
    key = next(i.key for i in store.list_prefix("open/catalog/") if "/_" not in i.key)
    old = pq.read_table(io.BytesIO(store.get(key))).select(
        ["dataset_id", "version", "modality", "access", "qc_json"]
    )
    buf = io.BytesIO()
    pq.write_table(old, buf)
    store.put(key, buf.getvalue())
    rows = read_catalog(store).to_pylist()
    assert len(rows) == 4 and sum(r["licence"] is None for r in rows) == 1
    assert rebuild_catalog(store)["rows"] == 1  # only the row that differs is rewritten
    assert all(r["licence"] for r in read_catalog(store).to_pylist()), (
        "rebuild fills the new columns"
    )
    assert pa.types.is_list(CATALOG_SCHEMA.field("compounds").type)


def test_experiment_schema_takes_sample_files_and_cellxgene_fields():
    import yaml
    from binds_testing import minimal_yaml

    from pipelines.describe.metadata import validate_experiment

    exp = yaml.safe_load(minimal_yaml("metabolomics"))
    exp["acquired"] = str(exp["acquired"])
    exp["samples"][0].update(
        files=["S1_pos.mzML", "plates/P1_*.csv"],
        sex="PATO:0000383",
        disease="PATO:0000461",
        development_stage="HsapDv:0000087",
    )
    assert validate_experiment(exp, file="experiment.yaml")[0] == []
    exp["samples"][0]["sex"] = "female"
    problems, _ = validate_experiment(exp, file="experiment.yaml")
    assert problems and "samples[0].sex" in str(problems[0])


def test_binds_catalog_samples_table(demo_store):
    out = binds(
        "catalog", "--store", str(demo_store), "--samples", "--json", "--tissue", "UBERON:0001969"
    )
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert (
        sorted(r["sample_id"] for r in rows) == ["S1", "S2", "S3"]
        and rows[0]["organism"] == "NCBITaxon:9606"
    )


def test_the_modalitys_main_data_is_listed_first_and_opened_without_a_path():
    """The reader's default entry comes from the modality's spec through the catalog row, so a
    fifth modality (not named anywhere in the reader) opens too (issue 20)."""
    from pipelines.access.reader import _resolve_path
    from pipelines.describe.catalog import data_entries

    files = [
        {"path": p, "size": 1}
        for p in ("data/dose_response.parquet", "data/wells.parquet", "data/hits.parquet/0.parquet")
    ]
    assert data_entries({"modality": "screening", "files": files})[0] == "data/wells.parquet"
    # a modality not installed here: sorted, nothing put first
    assert data_entries({"modality": "gone", "files": files}) == sorted(
        ["data/dose_response.parquet", "data/wells.parquet", "data/hits.parquet"]
    )
    row = {"dataset_id": "t", "version": 1, "modality": "toytable"}
    entries = ["data/zz_main.parquet", "data/aa_side.parquet"]  # the writer's order: main first
    assert _resolve_path(row | {"data_paths": entries}, None) == "data/zz_main.parquet"
    assert _resolve_path(row | {"data_paths": entries}, "aa_side") == "data/aa_side.parquet"
    # a built-in's row catalogued before the main entry went first: still its main entry
    old = {"modality": "screening", "data_paths": sorted(["data/wells.parquet", "data/a.parquet"])}
    assert _resolve_path(row | old, None) == "data/wells.parquet"
