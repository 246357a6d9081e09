"""Features against pyopenms FeatureFinderMetabo on the real LC-MS files; targets; chemistry.

Ground truth (synthetic runs) and the peak / isotope units: test_metabolomics_peaks.py.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.errors import InputError
from pipelines.modalities.metabolomics.chem import adduct_mz, formula_mass
from pipelines.modalities.metabolomics.convert import convert_mzml
from pipelines.modalities.metabolomics.features import centroid_profile, detect_features
from pipelines.modalities.metabolomics.targets import read_targets

# Agreement with pyopenms MassTraceDetection (10 ppm, noise 1000) -> ElutionPeakDetection
# (FWHM 1-60 s) -> FeatureFindingMetabo on the real files is a diagnostic, not a goal (issue 27:
# meeting agreement floors meant reporting OpenMS's artifacts, flat traces and background
# segments, and dropping real narrow peaks).  The figures are in docs/formats/metabolomics.md;
# the floors of recall and precision are on ground truth (test_metabolomics_groundtruth_wide.py).
FFM_CASES = [
    ("171103_PMA_TK_QC_04-4to5min.mzML", False, {}),
    ("FeatureFinderMetaboIdent_1_input.mzML", True, {}),
]


@pytest.fixture(scope="module")
def openms_reference(real_dir):
    pytest.importorskip("pyopenms")
    from pipelines.modalities.metabolomics.compare import openms_features

    cache = {}

    def get(name, profile):
        if name not in cache:
            cache[name] = openms_features(real_dir / name, profile=profile)
        return cache[name]

    return get


@pytest.mark.parametrize("name, profile, params", FFM_CASES, ids=[c[0][:12] for c in FFM_CASES])
def test_agreement_with_feature_finder_metabo_is_measured(
    real_dir, tmp_path, openms_reference, name, profile, params
):
    """The agreement figures are computed (a diagnostic, no floor) and every feature is
    self-consistent."""
    from pipelines.modalities.metabolomics.compare import agreement_with_openms

    convert_mzml(
        src=real_dir / name,
        spectra_out=tmp_path / "s.parquet",
        chromatograms_out=tmp_path / "c.parquet",
    )
    ref = openms_reference(name, profile)
    assert len(ref.mz) > 100
    detect_features(spectra=tmp_path / "s.parquet", out=tmp_path / "f.parquet", params=params)
    ours = pq.read_table(tmp_path / "f.parquet").to_pandas()
    # every isotope peak of our features is a chromatographic peak OpenMS may have as a feature
    iso_mz = np.concatenate(ours["isotope_mz"].to_numpy())
    iso_rt = np.repeat(ours["rt_apex_s"].to_numpy(), ours["n_isotopes"].to_numpy())
    got = agreement_with_openms(
        ours["mz"].to_numpy(), ours["rt_apex_s"].to_numpy(), iso_mz, iso_rt, ref
    )
    figures = {
        k: round(got[k], 4)
        for k in (
            "found_fwhm_le_20s",
            "found_top25_fwhm_le_20s",
            "ours_in_openms_mass_traces",
            "ours_at_openms_elution_peaks",
        )
    }
    assert all(0.0 <= g <= 1.0 for g in figures.values()), figures
    assert got["n_ours"] == len(ours)
    # every feature is self-consistent
    assert (ours["rt_start_s"] <= ours["rt_apex_s"]).all() and (
        ours["rt_apex_s"] <= ours["rt_end_s"]
    ).all()
    assert (ours["fwhm_s"] > 0).all() and (ours["area"] > 0).all() and (ours["n_scans"] >= 5).all()
    assert (ours["area_isotopes"] >= ours["area"]).all()
    assert set(ours["charge"].dropna().unique()) <= {1, 2, 3}


def test_the_disagreement_with_feature_finder_metabo_is_explained(
    real_dir, tmp_path, openms_reference
):
    """Every OpenMS feature we miss on 171103 has a trace of ours; most are peaks our S/N drops.

    The most intense of them are background ions; most of ours outside OpenMS's elution peaks
    are inside its mass traces or on traces shorter than its 5 s minimum (the counts are in
    docs/formats/metabolomics.md, "Why the gaps remain").
    """
    from pipelines.modalities.metabolomics.compare import agreement_with_openms, explain_agreement
    from pipelines.modalities.metabolomics.features import FeatureParams, find_features, read_ms1

    name = "171103_PMA_TK_QC_04-4to5min.mzML"
    convert_mzml(
        src=real_dir / name,
        spectra_out=tmp_path / "s.parquet",
        chromatograms_out=tmp_path / "c.parquet",
    )
    ref = openms_reference(name, False)
    ms1 = read_ms1(tmp_path / "s.parquet")
    why = explain_agreement(ms1, FeatureParams(), ref)
    missed, outside = why["openms_missed"], why["ours_outside"]
    pk, feats = find_features(ms1, FeatureParams())
    iso = np.concatenate(feats.members)
    got = agreement_with_openms(
        pk.mz[feats.mono], pk.rt_apex[feats.mono], pk.mz[iso], pk.rt_apex[iso], ref
    )
    n_narrow = got["n_fwhm_le_20s"]
    assert sum(missed.values()) == round(n_narrow * (1 - got["found_fwhm_le_20s"]))
    assert "nothing of ours" not in missed, missed
    by_snr = sum(v for k, v in missed.items() if k.startswith("a peak of ours dropped by S/N"))
    assert by_snr >= 0.8 * sum(missed.values()), missed
    assert sum(outside.values()) == round(got["n_ours"] * (1 - got["ours_at_openms_elution_peaks"]))
    # ours outside OpenMS's elution peaks but inside one of its mass traces are the difference
    # between the two figures
    assert outside["inside an OpenMS mass trace"] >= round(
        got["n_ours"] * (got["ours_in_openms_mass_traces"] - got["ours_at_openms_elution_peaks"])
    )
    assert outside["trace shorter than 5 s"] >= 0.5 * sum(outside.values()), outside
    # OpenMS's most intense features we miss are background ions: a segment between two
    # ion-suppression dips of a trace lasting the slice, or its level after the last dip (a
    # trace of ours with no peak there), or a peak that does not rise above the ion current's
    # baseline at its m/z (issue 27)
    top = why["openms_missed_top25"]
    background = sum(
        v
        for k, v in top.items()
        if k.endswith("(long trace)") or k.startswith("a trace of ours") or "baseline" in k
    )
    assert background >= sum(top.values()) - 2, top


def test_ours_in_openms_mass_traces_is_inside_a_trace_by_mz_and_rt_span():
    """The issue's third figure: within 10 ppm of a trace's m/z, apex inside its RT span; a trace
    holds several of ours (not one to one), where the apex figure pairs one of them."""
    from pipelines.modalities.metabolomics.compare import (
        ReferenceFeatures,
        agreement_with_openms,
        in_mass_traces,
    )

    one = np.ones(1)
    ref = ReferenceFeatures(
        mz=np.array([300.0]),
        rt=np.array([50.0]),
        intensity=1e6 * one,
        fwhm_s=5 * one,
        charge=one,
        trace_mz=np.array([300.0]),
        trace_rt=np.array([50.0]),
        seconds=0.0,
        mtd_mz=np.array([300.0, 500.0]),
        mtd_rt_start=np.array([20.0, 10.0]),
        mtd_rt_end=np.array([80.0, 15.0]),
    )
    mz = np.array([300.0, 300.0 * (1 + 8e-6), 300.0 * (1 + 12e-6), 300.0, 500.0, 500.0])
    rt = np.array([50.0, 75.0, 50.0, 81.0, 10.0, 16.0])
    assert in_mass_traces(mz, rt, ref).tolist() == [True, True, False, False, True, False]
    got = agreement_with_openms(mz, rt, mz, rt, ref)
    assert got["ours_in_openms_mass_traces"] == pytest.approx(3 / 6)
    assert got["ours_at_openms_elution_peaks"] == pytest.approx(1 / 6)


def test_centroiding_a_gaussian_profile_peak():
    mz = np.linspace(199.99, 200.01, 41)
    inten = (1e6 * np.exp(-0.5 * ((mz - 200.0021) / 0.002) ** 2)).astype(np.float32)
    c_mz, c_int = centroid_profile(mz, inten)
    assert len(c_mz) == 1
    assert abs(c_mz[0] - 200.0021) / 200 * 1e6 < 1.0 and c_int[0] == inten.max()


@pytest.mark.parametrize(
    "formula, adduct, expected",
    [
        ("C8H10N4O2", "[M+H]+", 195.087652),  # caffeine
        ("C6H12O6", "[M+Na]+", 203.052609),  # glucose
        ("C6H12O6", "[M-H]-", 179.056112),
        ("C9H11NO2", "[M+2H]2+", 83.546766),  # phenylalanine
    ],
)
def test_adduct_mz_against_published_values(formula, adduct, expected):
    assert adduct_mz(formula_mass(formula), adduct) == pytest.approx(expected, abs=2e-6)


def test_targets_csv_errors_are_all_reported_with_lines(tmp_path):
    csv = tmp_path / "targets.csv"
    csv.write_text(
        "name,formula,adduct,mz,rt_start_s,rt_end_s,ppm\n"
        "caffeine,C8H10N4O2,[M+H]+,,130,170,10\n"
        "mystery,,,,,,\n"
        "bad,C8Xx,[M+H]+,,,,\n"
        "late,,,200.1,90,60,\n"
        "caffeine,,,195.0877,,,\n"
    )
    with pytest.raises(InputError) as info:
        read_targets(csv)
    text = [str(p) for p in info.value.problems]
    assert text[0].startswith(
        "targets.csv: line 3: 'mystery': neither mz nor formula + adduct given"
    )
    assert text[1].startswith("targets.csv: line 4: ") and "C8Xx" in text[1]
    assert text[2].startswith("targets.csv: line 5: 'late': RT window 90.0-60.0 s is empty")
    assert text[3].startswith("targets.csv: line 6: duplicate target name 'caffeine'")
    assert len(text) == 4


def test_targets_default_ppm_and_open_window(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("name,mz\nx,150.5\n")
    (t,) = read_targets(csv, default_ppm=7.0)
    assert (t.mz, t.ppm, t.rt_start_s, t.rt_end_s) == (150.5, 7.0, None, None)
