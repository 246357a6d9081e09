"""mzML -> Parquet on every real file: rows, values, row groups, determinism; the demo generator."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow.parquet as pq
import pymzml
import pytest

from pipelines.modalities.metabolomics import find_runs, make_demo_run, resolve_params
from pipelines.modalities.metabolomics.convert import SPECTRA_SCHEMA, convert_mzml, run_name
from tests.metabolomics.conftest import REAL_FILES


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_every_real_file_converts_to_parquet(real_dir, tmp_path, name):
    exp = REAL_FILES[name]
    qc = convert_mzml(
        src=real_dir / name,
        spectra_out=tmp_path / "s.parquet",
        chromatograms_out=tmp_path / "c.parquet",
        qc_out=tmp_path / "qc.json",
    )
    assert (
        qc.n_spectra,
        qc.spectra_per_ms_level.get("ms1", 0),
        qc.spectra_per_ms_level.get("ms2", 0),
    ) == (exp["n"], exp["ms1"], exp["ms2"])
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.schema.equals(SPECTRA_SCHEMA, check_metadata=False)
    assert table.num_rows == exp["n"] and set(table.column("run").to_pylist()) == {run_name(name)}
    assert qc.sha256 == hashlib.sha256((real_dir / name).read_bytes()).hexdigest()
    # values in the Parquet equal pymzml's (spot check: first, middle and last spectrum)
    ref = list(pymzml.run.Reader(str(real_dir / name)))
    rows = table.to_pylist()
    for i in sorted({0, len(rows) // 2, len(rows) - 1}):
        np.testing.assert_array_equal(
            np.asarray(rows[i]["mz"]), np.asarray(ref[i].mz, dtype=np.float64)
        )
        np.testing.assert_array_equal(
            np.asarray(rows[i]["intensity"], dtype=np.float32),
            np.asarray(ref[i].i).astype(np.float32),
        )
        assert rows[i]["n_peaks"] == len(ref[i].mz)
    chrom = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [c["chromatogram_id"] for c in chrom[:2]] == ["TIC", "BPC"]
    assert len(chrom[0]["time_s"]) == exp["ms1"]
    assert len(chrom) == 2 + qc.n_chromatograms_in_file


def test_computed_tic_is_the_sum_of_ms1_intensities(real_dir, tmp_path):
    convert_mzml(
        src=real_dir / "FeatureFinderMetaboIdent_1_input.mzML",
        spectra_out=tmp_path / "s.parquet",
        chromatograms_out=tmp_path / "c.parquet",
    )
    spectra = pq.read_table(tmp_path / "s.parquet", columns=["rt_s", "intensity"]).to_pylist()
    tic = pq.read_table(tmp_path / "c.parquet").to_pylist()[0]
    np.testing.assert_allclose(tic["time_s"], [s["rt_s"] for s in spectra])
    np.testing.assert_allclose(
        tic["intensity"], [np.sum(s["intensity"], dtype=np.float64) for s in spectra], rtol=1e-6
    )


def test_conversion_is_byte_identical_and_row_groups_bounded(real_dir, tmp_path, monkeypatch):
    import threading

    from pipelines.modalities.metabolomics import mzml

    src = real_dir / "171103_PMA_TK_QC_04-4to5min.mzML"
    digests = []
    # decoded here, on two threads, then on two worker processes (as a large file would be)
    for k, (threads, min_bytes) in enumerate([(1, 0), (2, 1 << 60), (2, 0)]):
        monkeypatch.setattr(mzml, "PROCESS_MIN_BYTES", min_bytes)
        monkeypatch.setattr(threading, "active_count", lambda: 1)
        convert_mzml(
            src=src,
            spectra_out=tmp_path / f"s{k}.parquet",
            chromatograms_out=tmp_path / f"c{k}.parquet",
            row_group_bytes=1 << 20,
            threads=threads,
        )
        digests.append(
            (
                hashlib.sha256((tmp_path / f"s{k}.parquet").read_bytes()).hexdigest(),
                hashlib.sha256((tmp_path / f"c{k}.parquet").read_bytes()).hexdigest(),
            )
        )
    assert digests[0] == digests[1] == digests[2]  # wherever decoded: the same bytes
    meta = pq.read_metadata(tmp_path / "s0.parquet")
    assert meta.num_row_groups > 1 and meta.num_rows == 507


def test_run_names_stay_unique(real_dir):
    runs = find_runs(real_dir)
    assert len(runs) == len(REAL_FILES)
    # example.mzML, .gz and .idx.gz would all be "example": they keep their full names
    assert {"example_mzML", "example_mzML_gz", "example_mzML_idx_gz"} <= set(runs)
    assert runs["InternalCalibration_2_lockmass"].name == "InternalCalibration_2_lockmass.mzML.gz"


def test_minimal_block_gets_every_default(tmp_path):
    params = resolve_params({}, run_dir=tmp_path)
    assert params["polarity"] == "auto" and params["targets"] is None and params["target_ppm"] == 10
    assert params["features"]["enabled"] is True and params["features"]["min_scans"] == 5
    (tmp_path / "targets.csv").write_text("name,mz\nx,100\n")
    assert resolve_params({}, run_dir=tmp_path)["targets"] == str(
        (tmp_path / "targets.csv").resolve()
    )
    # the defaults are not shared state between calls
    assert resolve_params({}, run_dir=tmp_path / "elsewhere")["targets"] is None


def test_demo_run_is_deterministic_and_valid(demo_run, tmp_path):
    from pipelines.describe.metadata import load_experiment

    again = make_demo_run(tmp_path / "again", seed=0)
    for f in sorted(p.name for p in demo_run.iterdir()):
        assert (again / f).read_bytes() == (demo_run / f).read_bytes(), f
    exp = load_experiment(again)
    assert exp.modality == "metabolomics" and exp.block["targets"] == "targets.csv"
    assert [s["id"] for s in exp.data["samples"]] == list(find_runs(again))
