"""Features against pyopenms FeatureFinderMetabo on the real LC-MS files; targets; chemistry."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.errors import InputError
from pipelines.modalities.metabolomics.chem import adduct_mz, formula_mass
from pipelines.modalities.metabolomics.convert import convert_mzml
from pipelines.modalities.metabolomics.features import centroid_profile, detect_features, match_fraction
from pipelines.modalities.metabolomics.targets import read_targets

# file, profile?, floor of the fraction of OpenMS features we match at default parameters
# (S/N >= 5), and with the S/N filter off (FeatureFinderMetabo itself has none).  Measured:
# 0.242 / 0.720 and 0.226 / 0.524 (see docs/formats/metabolomics.md).
FFM_CASES = [
    ("171103_PMA_TK_QC_04-4to5min.mzML", False, 0.20, 0.65),
    ("FeatureFinderMetaboIdent_1_input.mzML", True, 0.18, 0.40),
]


def _openms_features(path, *, profile: bool):
    oms = pytest.importorskip("pyopenms")
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(path), exp)
    ms1 = oms.MSExperiment()
    for s in exp.getSpectra():
        if s.getMSLevel() == 1:
            ms1.addSpectrum(s)
    if profile:
        ms1 = oms.PeakPickerHiRes().pickExperiment(ms1, True)
    ms1.sortSpectra(True)
    mtd = oms.MassTraceDetection()
    p = mtd.getDefaults()
    p.setValue("mass_error_ppm", 10.0)
    p.setValue("noise_threshold_int", 1000.0)     # our min_height
    mtd.setParameters(p)
    epd = oms.ElutionPeakDetection()
    p = epd.getDefaults()
    p.setValue("width_filtering", "fixed")
    epd.setParameters(p)
    ffm = oms.FeatureFindingMetabo()
    p = ffm.getDefaults()
    # one feature per chromatographic peak, like ours (no isotope grouping)
    p.setValue("isotope_filtering_model", "none")
    p.setValue("remove_single_traces", "false")
    p.setValue("mz_scoring_13C", "false")
    ffm.setParameters(p)
    fmap = oms.FeatureMap()
    ffm.run(epd.detectPeaks(mtd.run(ms1, 0)), fmap)
    return np.array([f.getMZ() for f in fmap]), np.array([f.getRT() for f in fmap])


@pytest.mark.parametrize("name, profile, floor_default, floor_no_snr", FFM_CASES, ids=[c[0][:12] for c in FFM_CASES])
def test_features_match_feature_finder_metabo(real_dir, tmp_path, name, profile, floor_default, floor_no_snr):
    convert_mzml(src=real_dir / name, spectra_out=tmp_path / "s.parquet", chromatograms_out=tmp_path / "c.parquet")
    ref_mz, ref_rt = _openms_features(real_dir / name, profile=profile)
    assert len(ref_mz) > 100
    fractions = []
    for params in ({}, {"min_snr": 0}):
        detect_features(spectra=tmp_path / "s.parquet", out=tmp_path / "f.parquet", params=params)
        ours = pq.read_table(tmp_path / "f.parquet").to_pandas()
        fractions.append(match_fraction(ours["mz"].to_numpy(), ours["rt_apex_s"].to_numpy(), ref_mz, ref_rt,
                                        ppm=10, rt_s=10))
        # every feature is self-consistent
        assert (ours["rt_start_s"] <= ours["rt_apex_s"]).all() and (ours["rt_apex_s"] <= ours["rt_end_s"]).all()
        assert (ours["fwhm_s"] > 0).all() and (ours["area"] > 0).all() and (ours["n_scans"] >= 5).all()
    assert fractions[0] >= floor_default, fractions
    assert fractions[1] >= floor_no_snr, fractions


def test_centroiding_a_gaussian_profile_peak():
    mz = np.linspace(199.99, 200.01, 41)
    inten = (1e6 * np.exp(-0.5 * ((mz - 200.0021) / 0.002) ** 2)).astype(np.float32)
    c_mz, c_int = centroid_profile(mz, inten)
    assert len(c_mz) == 1
    assert abs(c_mz[0] - 200.0021) / 200 * 1e6 < 1.0 and c_int[0] == inten.max()


@pytest.mark.parametrize("formula, adduct, expected", [
    ("C8H10N4O2", "[M+H]+", 195.087652),      # caffeine
    ("C6H12O6", "[M+Na]+", 203.052609),       # glucose
    ("C6H12O6", "[M-H]-", 179.056112),
    ("C9H11NO2", "[M+2H]2+", 83.546766),      # phenylalanine
])
def test_adduct_mz_against_published_values(formula, adduct, expected):
    assert adduct_mz(formula_mass(formula), adduct) == pytest.approx(expected, abs=2e-6)


def test_targets_csv_errors_are_all_reported_with_lines(tmp_path):
    csv = tmp_path / "targets.csv"
    csv.write_text("name,formula,adduct,mz,rt_start_s,rt_end_s,ppm\n"
                   "caffeine,C8H10N4O2,[M+H]+,,130,170,10\n"
                   "mystery,,,,,,\n"
                   "bad,C8Xx,[M+H]+,,,,\n"
                   "late,,,200.1,90,60,\n"
                   "caffeine,,,195.0877,,,\n")
    with pytest.raises(InputError) as info:
        read_targets(csv)
    text = [str(p) for p in info.value.problems]
    assert text[0].startswith("targets.csv: line 3: 'mystery': neither mz nor formula + adduct given")
    assert text[1].startswith("targets.csv: line 4: ") and "C8Xx" in text[1]
    assert text[2].startswith("targets.csv: line 5: 'late': RT window 90.0-60.0 s is empty")
    assert text[3].startswith("targets.csv: line 6: duplicate target name 'caffeine'")
    assert len(text) == 4


def test_targets_default_ppm_and_open_window(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("name,mz\nx,150.5\n")
    (t,) = read_targets(csv, default_ppm=7.0)
    assert (t.mz, t.ppm, t.rt_start_s, t.rt_end_s) == (150.5, 7.0, None, None)
