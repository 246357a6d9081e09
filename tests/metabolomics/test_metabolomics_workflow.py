"""Real Snakemake runs of workflows/metabolomics into tmp_path: the demo run and the real files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.describe.metadata import load_experiment, write_experiment_json
from pipelines.errors import InputError
from pipelines.modalities.metabolomics.demo import DEMO_COMPOUNDS, DEMO_SAMPLES, DEMO_TARGETS
from pipelines.run.privacy_gate import run_ids
from pipelines.run.workflow import run_workflow
from pipelines.toolkit.stage import StagedDataset
from tests.metabolomics.conftest import MINIMAL_YAML, REAL_FILES, copy_demo, linked_run

# the demo's samples are human: its raw files travel under run ids (keys, tables, logs), in
# file-name order, the same function as the workflow (pipelines.run.privacy_gate.run_ids)
RUN = {p.stem: rid for rid, p in run_ids(Path(f"{s}.mzML") for s in DEMO_SAMPLES).items()}
RUNS = [RUN[s] for s in DEMO_SAMPLES]


def _run(run_dir, work):
    exp = load_experiment(run_dir)
    stage = StagedDataset(work / "stage")
    write_experiment_json(exp, stage.meta_dir / "experiment.json")
    run_workflow(run_dir=run_dir, stage=stage, modality=exp.modality, cores=2)
    return stage


def _digest(stage: StagedDataset) -> dict[str, str]:
    return {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in stage.published_files()}


@pytest.fixture(scope="module")
def demo_stage(demo_run, tmp_path_factory):
    return _run(demo_run, tmp_path_factory.mktemp("demo-work"))


def test_demo_run_publishes_every_output(demo_stage):
    published = [rel for rel, _ in demo_stage.published_files()]
    assert published == sorted(
        [f"data/spectra.parquet/{r}.parquet" for r in RUNS]
        + [f"data/chromatograms.parquet/{r}.parquet" for r in RUNS]
        + [
            "data/feature_peaks.parquet",
            "data/features.parquet",
            "data/targets.parquet",
            "qc/metrics.json",
            "qc/runs.parquet",
            "qc/target_mass_errors.png",
            "qc/tic_bpc.png",
        ]
    )
    m = demo_stage.metrics
    # 270 MS1 scans per run, an MS2 after every 4th
    assert (m["n_runs"], m["n_spectra_ms1"], m["n_spectra_ms2"]) == (3, 810, 201)
    assert m["polarity"] == "positive" and m["spectrum_representation"] == "centroid"
    assert m["targets_detected_fraction"] == 1.0 and m["target_max_abs_mass_error_ppm"] < 3.0
    assert 1.0 <= m["max_abs_rt_drift_s"] <= 4.0  # the demo shifts runs by 1.5 s steps
    facts = demo_stage.facts
    assert facts["facts"]["instrument_models"] == ["Q Exactive"] and facts["conflicts"] == []
    assert [f["name"] for f in facts["facts"]["source_files"]] == [f"{r}.mzML" for r in RUNS]


def test_demo_features_find_every_compound_in_every_run(demo_stage):
    from pipelines.modalities.metabolomics.chem import adduct_mz, formula_mass

    feats = pq.read_table(demo_stage.data_dir / "features.parquet").to_pylist()
    for name, formula, rt, *_ in DEMO_COMPOUNDS:
        mz = adduct_mz(formula_mass(formula), "[M+H]+")
        hits = [
            f
            for f in feats
            if abs(f["exp_mass_to_charge"] - mz) / mz * 1e6 < 5
            and abs(f["retention_time_in_seconds"] - rt) < 5
        ]
        assert len(hits) == 1, (name, hits)
        assert hits[0]["n_runs"] == 3 and all(hits[0][f"abundance_assay[{r}]"] > 0 for r in RUNS)


def test_demo_tables_carry_the_sample_of_each_run(demo_stage):
    """experiment.yaml samples[].files -> sample_id in spectra, feature peaks and runs."""
    data = demo_stage.data_dir
    for s in DEMO_SAMPLES:
        spectra = pq.read_table(
            data / "spectra.parquet" / f"{RUN[s]}.parquet", columns=["sample_id"]
        )
        assert set(spectra.column("sample_id").to_pylist()) == {s}
    peaks = pq.read_table(data / "feature_peaks.parquet", columns=["run", "sample_id"])
    assert {(r["run"], r["sample_id"]) for r in peaks.to_pylist()} == {
        (RUN[s], s) for s in DEMO_SAMPLES
    }
    runs = pq.read_table(demo_stage.qc_dir / "runs.parquet", columns=["run", "sample_id"])
    assert runs.to_pylist() == [{"run": RUN[s], "sample_id": s} for s in DEMO_SAMPLES]
    schema = pq.read_schema(data / "features.parquet")
    assert json.loads(schema.metadata[b"binds:samples"]) == {RUN[s]: s for s in DEMO_SAMPLES}
    assert schema.field(f"abundance_assay[{RUN['S2']}]").metadata[b"sample_id"] == b"S2"
    assert schema.metadata[b"binds.format"] == b"binds-metabolomics-features"


def test_demo_targets_quantified_in_every_run(demo_stage):
    rows = pq.read_table(demo_stage.data_dir / "targets.parquet").to_pylist()
    assert {r["target"] for r in rows} == set(DEMO_TARGETS) | {"leucine"}
    assert len(rows) == 5 * 3 and all(r["detected"] for r in rows)
    assert all(abs(r["mass_error_ppm"]) < 3 for r in rows)
    caffeine_rt = next(c[2] for c in DEMO_COMPOUNDS if c[0] == "caffeine")
    assert all(abs(r["rt_apex_s"] - caffeine_rt) < 5 for r in rows if r["target"] == "caffeine")
    # the area of a target and of its feature agree (same signal, same integration)
    feats = pq.read_table(demo_stage.data_dir / "feature_peaks.parquet").to_pylist()
    for r in rows:
        peak = min(
            (f for f in feats if f["run"] == r["run"]),
            key=lambda f: abs(f["mz"] - r["theoretical_mz"]) + abs(f["rt_apex_s"] - r["rt_apex_s"]),
        )
        assert peak["area"] == pytest.approx(r["area"], rel=0.15), r["target"]


def test_parquet_columns_carry_their_cv_accessions(demo_stage):
    pf = pq.ParquetFile(demo_stage.data_dir / "spectra.parquet" / f"{RUN['S1']}.parquet")
    docs = json.loads(pf.schema_arrow.metadata[b"binds:columns"])
    assert (
        docs["mz"]["accession"] == "MS:1000514" and docs["intensity"]["accession"] == "MS:1000515"
    )
    assert docs["rt_s"] == {
        "accession": "MS:1000016",
        "unit": "UO:0000010",
        "description": "scan start time, converted to seconds",
    }
    assert pf.schema_arrow.field("mz").type.value_type.bit_width == 64
    assert pf.schema_arrow.field("intensity").type.value_type.bit_width == 32
    # the whole experiment reads as one table
    import pyarrow.dataset as ds

    table = ds.dataset(demo_stage.data_dir / "spectra.parquet").to_table(
        columns=["run", "ms_level"]
    )
    assert table.num_rows == 1011 and sorted(set(table.column("run").to_pylist())) == sorted(RUNS)


def _single_run_folder(demo_run, dest, *, polarity="negative", targets=True, features=True):
    """Demo run S1 alone: the same rules on one file, quick enough to run twice."""
    run_dir = copy_demo(demo_run, dest, with_targets=targets)
    for extra in ("S2.mzML", "S3.mzML"):
        (run_dir / extra).unlink()
    text = (
        (run_dir / "experiment.yaml")
        .read_text()
        .replace("polarity: positive", f"polarity: {polarity}")
        # the samples of the removed runs keep no files (a listed file must exist)
        .replace(" files: [S2.mzML],", "")
        .replace(" files: [S3.mzML],", "")
    )
    if not features:
        text += "  features: {enabled: false}\n"
    (run_dir / "experiment.yaml").write_text(text)
    return run_dir


def test_rerun_gives_identical_bytes_and_reports_a_polarity_conflict(demo_run, tmp_path):
    # features and targets off keeps this to two jobs per run; their own determinism is checked
    # in-process below (test_feature_and_target_outputs_are_deterministic)
    run_dir = _single_run_folder(demo_run, tmp_path / "run", targets=False, features=False)
    first = _run(run_dir, tmp_path / "a")
    second = _run(run_dir, tmp_path / "b")
    digests = _digest(first)
    assert sorted(digests) == [
        "data/chromatograms.parquet/run-001.parquet",  # S1.mzML alone: the first run id
        "data/spectra.parquet/run-001.parquet",
        "qc/metrics.json",
        "qc/runs.parquet",
        "qc/tic_bpc.png",
    ]
    assert _digest(second) == digests
    assert "n_targets" not in first.metrics and "n_features" not in first.metrics
    assert first.metrics["n_spectra"] == 337
    (conflict,) = first.facts["conflicts"]
    assert conflict["field"] == "metabolomics.polarity"
    assert (conflict["yaml"], conflict["file"]) == ("negative", "positive")


def test_feature_and_target_outputs_are_deterministic(demo_stage, demo_run, tmp_path):
    """The grouping, targets and QC functions rerun on the demo's own inputs give the same bytes."""
    from pipelines.modalities.metabolomics import group_features, quantify_targets, write_qc

    meta = demo_stage.meta_dir / "metabolomics"
    runs = RUNS
    group_features(
        peak_tables=[meta / "features" / f"{r}.parquet" for r in runs],
        features_out=tmp_path / "features.parquet",
        peaks_out=tmp_path / "feature_peaks.parquet",
    )
    quantify_targets(
        spectra=[demo_stage.data_dir / "spectra.parquet" / f"{r}.parquet" for r in runs],
        runs=runs,
        targets_csv=demo_run / "targets.csv",
        out=tmp_path / "targets.parquet",
        qc_out=tmp_path / "targets_qc.json",
    )
    write_qc(
        conversions=[meta / "runs" / f"{r}.json" for r in runs],
        chromatograms=[
            demo_stage.data_dir / "chromatograms.parquet" / f"{r}.parquet" for r in runs
        ],
        experiment=demo_stage.experiment,
        metrics_out=tmp_path / "metrics.json",
        runs_out=tmp_path / "runs.parquet",
        tic_png=tmp_path / "tic_bpc.png",
        facts_out=tmp_path / "facts.json",
        features_qc=meta / "features_qc.json",
        targets_qc=tmp_path / "targets_qc.json",
        targets=tmp_path / "targets.parquet",
        target_png=tmp_path / "target_mass_errors.png",
    )
    for rel in (
        "data/features.parquet",
        "data/feature_peaks.parquet",
        "data/targets.parquet",
        "qc/metrics.json",
        "qc/runs.parquet",
        "qc/tic_bpc.png",
        "qc/target_mass_errors.png",
    ):
        mine = tmp_path / rel.split("/")[1]
        assert mine.read_bytes() == (demo_stage.root / rel).read_bytes(), rel


# profile + uncompressed + seconds, and centroid + zlib + minutes + MS2; every real file is also
# converted one by one in test_metabolomics_convert.py (without the Snakemake overhead)
WORKFLOW_REAL_FILES = ["171103_PMA_TK_QC_04-4to5min.mzML", "FeatureFinderMetaboIdent_1_input.mzML"]


def test_real_files_run_through_the_workflow_in_place(real_dir, tmp_path):
    run_dir = linked_run(real_dir, tmp_path / "run", WORKFLOW_REAL_FILES)
    stage = _run(run_dir, tmp_path / "work")
    runs = pq.read_table(stage.qc_dir / "runs.parquet").to_pylist()
    # human samples (MINIMAL_YAML): each raw file travels under its run id, in name order
    renamed = {p.name: rid for rid, p in run_ids(Path(n) for n in WORKFLOW_REAL_FILES).items()}
    by_file = {r["file"]: r for r in runs}
    assert sorted(by_file) == sorted(f"{rid}.mzML" for rid in renamed.values())
    by_file = {name: by_file[f"{renamed[name]}.mzML"] for name in WORKFLOW_REAL_FILES}
    for name in WORKFLOW_REAL_FILES:
        exp = REAL_FILES[name]
        r = by_file[name]
        assert (r["n_spectra"], r["n_spectra_ms1"], r.get("n_spectra_ms2", 0)) == (
            exp["n"],
            exp["ms1"],
            exp["ms2"],
        )
        assert r["spectrum_representation"] == ("centroid" if exp["centroid"] else "profile")
        assert r["sha256"] == hashlib.sha256((real_dir / name).read_bytes()).hexdigest()
        assert (
            pq.read_metadata(stage.data_dir / "spectra.parquet" / f"{r['run']}.parquet").num_rows
            == exp["n"]
        )
    assert stage.metrics["n_spectra"] == sum(REAL_FILES[n]["n"] for n in WORKFLOW_REAL_FILES)
    assert stage.metrics["spectrum_representation"] == "mixed"
    assert (
        stage.facts["facts"]["instrument_models"] == ["Q Exactive"]
        and stage.facts["conflicts"] == []
    )
    assert stage.metrics["n_features"] > 100
    # 171103's slice has three ion-suppression dips (14 MS1 scans), the profile file one under
    # its strongest compound (8 scans at 218.6-221.0 s) and a single sparse scan
    assert by_file[WORKFLOW_REAL_FILES[0]]["n_ion_suppressed_scans"] == 14
    assert by_file[WORKFLOW_REAL_FILES[1]]["n_ion_suppressed_scans"] == 9
    assert stage.metrics["n_runs_with_ion_suppression"] == 2
    first = by_file[WORKFLOW_REAL_FILES[0]]
    assert first["ion_suppression_start_s"] == pytest.approx([253.8, 274.5, 291.7], abs=0.1)
    assert first["ion_suppression_end_s"] == pytest.approx([253.8, 275.9, 295.2], abs=0.1)
    # the report's check: 23 of the 506 MS1 scans (4.5 %) pass the 5 % rule; 6 % would not
    from pipelines.describe.verdict import evaluate

    (ion,) = [
        c for c in evaluate("metabolomics", stage.metrics).checks if c.name == "ion suppression"
    ]
    assert ion.passed and ion.shown == "4.5%", ion
    (worse,) = [
        c
        for c in evaluate("metabolomics", {**stage.metrics, "n_ion_suppressed_scans": 31}).checks
        if c.name == "ion suppression"
    ]
    assert worse.passed is False


def test_bad_file_stops_the_run_with_file_and_spectrum(real_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    example = (real_dir / "example.mzML").read_bytes()
    start = example.index(b'<spectrum index="7"')
    (run_dir / "S4.mzML").write_bytes(example[: start + 400])
    (run_dir / "experiment.yaml").write_text(MINIMAL_YAML.format(title="A cut file"))
    with pytest.raises(InputError) as info:
        _run(run_dir, tmp_path / "work")
    (problem,) = info.value.problems
    assert (problem.file, problem.where) == ("S4.mzML", "spectrum index 7")
    assert problem.message == "the file ends inside spectrum index 7"
    assert not (tmp_path / "work" / "stage" / "data" / "spectra.parquet" / "S4.parquet").exists()
    assert not (tmp_path / "work" / "stage" / "qc" / "metrics.json").exists()
