"""Peak detection and isotope grouping: ground truth (synthetic mzML runs) and the cases of issue 14."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.modalities.metabolomics.compare import match_one_to_one, score_against_truth
from pipelines.modalities.metabolomics.convert import convert_mzml
from pipelines.modalities.metabolomics.features import (
    PEAK_SCHEMA,
    FeatureParams,
    MS1Peaks,
    detect_features,
    find_features,
)
from pipelines.modalities.metabolomics.groundtruth import write_run
from pipelines.modalities.metabolomics.isotopes import C13_SPACING
from pipelines.modalities.metabolomics.peaks import merge_unresolved, suppressed_scans

# (scan cycle, floors of recall on the compounds >= 10x the noise floor and of precision): the
# issue's goals.  Measured (seed 1, 40 compounds + isomers, 180 s): 0.5 s cycle 1.000 / 0.979
# (pyopenms FFM 0.902 / 0.955); 1.0 s cycle 0.976 / 1.000 (pyopenms 0.878 / 0.932; 0.951 / 0.977
# before the merge of unresolved centroids and the 1 s-cycle changes of peak detection).
GROUND_TRUTH_CASES = [(0.5, 0.95, 0.90), (1.0, 0.95, 0.90)]


@pytest.mark.parametrize("cycle_s, min_recall, min_precision", GROUND_TRUTH_CASES)
def test_ground_truth_recall_and_precision(tmp_path, cycle_s, min_recall, min_precision):
    truth = write_run(
        tmp_path / "gt.mzML", seed=1, n_compounds=40, run_s=180.0, cycle_s=cycle_s, n_background=20
    )
    assert truth.strong.sum() >= 35 and (truth.height.max() / truth.height.min()) > 1000
    convert_mzml(
        src=tmp_path / "gt.mzML",
        spectra_out=tmp_path / "s.parquet",
        chromatograms_out=tmp_path / "c.parquet",
    )
    detect_features(spectra=tmp_path / "s.parquet", out=tmp_path / "f.parquet")
    ours = pq.read_table(tmp_path / "f.parquet")
    got = score_against_truth(
        ours["mz"].to_numpy(), ours["rt_apex_s"].to_numpy(), truth.mz, truth.rt, truth.strong
    )
    assert got["recall"] >= min_recall and got["precision"] >= min_precision, got
    # the charge-2 compounds are reported with charge 2 and their monoisotopic m/z
    pairs = match_one_to_one(
        ours["mz"].to_numpy(), ours["rt_apex_s"].to_numpy(), truth.mz, truth.rt, rt_s=5
    )
    charge = ours["charge"].to_numpy(zero_copy_only=False)
    z2 = [i for i, j in pairs if truth.charge[j] == 2 and truth.strong[j]]
    assert z2 and np.mean([charge[i] == 2 for i in z2]) >= 0.75


@pytest.mark.parametrize("cycle_s", [0.5, 1.0])
def test_ground_truth_against_openms(tmp_path, cycle_s):
    """The same run through pyopenms FFM: ours is below it neither on recall nor on precision."""
    pytest.importorskip("pyopenms")
    from pipelines.modalities.metabolomics.compare import openms_features

    truth = write_run(
        tmp_path / "gt.mzML", seed=1, n_compounds=40, run_s=180.0, cycle_s=cycle_s, n_background=20
    )
    convert_mzml(
        src=tmp_path / "gt.mzML",
        spectra_out=tmp_path / "s.parquet",
        chromatograms_out=tmp_path / "c.parquet",
    )
    detect_features(spectra=tmp_path / "s.parquet", out=tmp_path / "f.parquet")
    ours = pq.read_table(tmp_path / "f.parquet")
    mine = score_against_truth(
        ours["mz"].to_numpy(), ours["rt_apex_s"].to_numpy(), truth.mz, truth.rt, truth.strong
    )
    ref = openms_features(tmp_path / "gt.mzML")
    theirs = score_against_truth(ref.mz, ref.rt, truth.mz, truth.rt, truth.strong)
    assert mine["recall"] >= theirs["recall"] and mine["precision"] >= theirs["precision"], (
        mine,
        theirs,
    )


@pytest.mark.parametrize("cycle_s", [0.5, 1.0])
def test_ground_truth_with_ion_suppression_dips(tmp_path, cycle_s):
    """The same run with three ion-suppression dips (every ion at 0.5-10 % for 2-4 s): the goal
    holds and ours stays above pyopenms FFM, which reports the background ions' segments
    between the dips (measured: 0.5 s 1.000 / 0.978, OpenMS 0.878 / 0.625; 1 s 0.976 / 1.000,
    OpenMS 0.878 / 0.683).  Without the bridge (``suppressed_fraction: 0``) precision was
    0.42 and 0.56."""
    pytest.importorskip("pyopenms")
    from pipelines.modalities.metabolomics.compare import openms_features

    truth = write_run(
        tmp_path / "gt.mzML",
        seed=1,
        n_compounds=40,
        run_s=180.0,
        cycle_s=cycle_s,
        n_background=20,
        suppression_dips=3,
    )
    convert_mzml(
        src=tmp_path / "gt.mzML",
        spectra_out=tmp_path / "s.parquet",
        chromatograms_out=tmp_path / "c.parquet",
    )
    scores = {}
    for name, params in (
        ("ours", {}),
        ("no bridge", {"suppressed_fraction": 0.0, "baseline_margin": -1.0}),
    ):
        detect_features(spectra=tmp_path / "s.parquet", out=tmp_path / "f.parquet", params=params)
        ours = pq.read_table(tmp_path / "f.parquet")
        scores[name] = score_against_truth(
            ours["mz"].to_numpy(), ours["rt_apex_s"].to_numpy(), truth.mz, truth.rt, truth.strong
        )
    ref = openms_features(tmp_path / "gt.mzML")
    theirs = score_against_truth(ref.mz, ref.rt, truth.mz, truth.rt, truth.strong)
    mine = scores["ours"]
    assert mine["recall"] >= 0.95 and mine["precision"] >= 0.90, scores
    assert mine["recall"] >= theirs["recall"] and mine["precision"] >= theirs["precision"], (
        mine,
        theirs,
    )
    assert scores["no bridge"]["precision"] < 0.7, scores  # the dips do make artifacts


def test_the_qc_reports_each_runs_ion_suppressed_scans(tmp_path):
    """Per run: how many MS1 scans were ion-suppressed and where (the QC's runs table)."""
    import json

    from pipelines.modalities.metabolomics.features import group_features

    tables = []
    for name, dips in (("dipped", 2), ("clean", 0)):
        write_run(
            tmp_path / f"{name}.mzML",
            seed=2,
            n_compounds=20,
            run_s=120.0,
            n_background=10,
            suppression_dips=dips,
        )
        convert_mzml(
            src=tmp_path / f"{name}.mzML",
            spectra_out=tmp_path / f"{name}.parquet",
            chromatograms_out=tmp_path / f"{name}c.parquet",
        )
        detect_features(
            spectra=tmp_path / f"{name}.parquet", out=tmp_path / f"{name}f.parquet", run=name
        )
        tables.append(tmp_path / f"{name}f.parquet")
    group_features(
        peak_tables=tables,
        features_out=tmp_path / "features.parquet",
        peaks_out=tmp_path / "peaks.parquet",
        qc_out=tmp_path / "qc.json",
    )
    qc = json.loads((tmp_path / "qc.json").read_text())
    stretches = qc["ion_suppression_rt_s"]["dipped"]
    assert len(stretches) == 2 and all(1.0 <= b - a <= 4.0 for a, b in stretches), stretches
    # a 0.5 s cycle: the scans of 2-4 s dips
    assert 2 * 3 <= qc["ion_suppressed_scans"]["dipped"] <= 2 * 8
    assert qc["ion_suppressed_scans"]["clean"] == 0 and qc["ion_suppression_rt_s"]["clean"] == []


# --------------------------------------------------------------------------- hand-made traces
def _run(ions, *, cycle_s=0.5, n_scans=240, floor=1000.0, seed=0, suppressed=(0.0, 0.0, 1.0)):
    """MS1 centroids of Gaussian ions [(m/z, apex RT, FWHM, height)], 3 % noise, plus random centroids.

    Ions at one m/z (isomers) make one centroid per scan, their sum, as on an instrument.
    ``suppressed`` = (from, to, factor): every intensity in scans from <= RT < to is
    multiplied by factor (ion suppression) before the instrument's threshold.
    """
    rng = np.random.default_rng(seed)
    rt = np.arange(n_scans) * cycle_s
    ion_mz = sorted({m for m, *_ in ions})
    scans, mzs, ints = [], [], []
    for s, t in enumerate(rt):
        mz = [m * (1 + 1e-6 * rng.standard_normal()) for m in ion_mz]
        signal = dict.fromkeys(ion_mz, 0.0)
        for m, r, w, h in ions:
            signal[m] += h * np.exp(-0.5 * ((t - r) / (w / 2.3548)) ** 2)
        it = [signal[m] * (1 + 0.03 * rng.standard_normal()) for m in ion_mz]
        mz += list(rng.uniform(100, 900, 30))
        it += list(floor * np.exp(np.abs(rng.normal(0, 0.5, 30))))
        mz, it = np.asarray(mz), np.asarray(it)
        if suppressed[0] <= t < suppressed[1]:
            it = it * suppressed[2]
        keep = it >= floor
        o = np.argsort(mz[keep])
        mzs.append(mz[keep][o])
        ints.append(it[keep][o])
        scans.append(np.full(len(o), s))
    return MS1Peaks(
        np.concatenate(scans).astype(np.int32),
        np.concatenate(mzs),
        np.concatenate(ints).astype(np.float32),
        rt,
    )


def _features(ms1, **params):
    from pipelines.modalities.metabolomics.features import feature_table

    pk, feats = find_features(ms1, FeatureParams(**params))
    return feature_table(pk, feats, run="r").to_pandas()


def test_neighbouring_peaks_at_one_mz_do_not_inflate_the_noise():
    """Issue 14's case: isomers at one m/z (5e6 high) each kept with a high S/N."""
    ions = [
        (300.1, 40.0, 4.0, 5e6),
        (300.1, 50.0, 4.0, 3e6),
        (300.1, 62.0, 5.0, 5e6),
        (300.1, 75.0, 4.0, 1e6),
    ]
    f = _features(_run(ions))
    hits = f[(f["mz"] - 300.1).abs() < 300.1 * 5e-6]
    assert len(hits) == 4, hits
    assert np.allclose(np.sort(hits["rt_apex_s"]), [40, 50, 62, 75], atol=1.0)
    assert (hits["snr"] > 50).all(), hits["snr"]


def test_narrow_peak_at_a_one_second_cycle_keeps_its_width():
    """A 1.5 s FWHM peak sampled every 0.9 s: found, FWHM measured within 25 %."""
    ms1 = _run([(250.2, 60.0, 1.5, 4e6)], cycle_s=0.9, n_scans=150)
    f = _features(ms1)
    hit = f[(f["mz"] - 250.2).abs() < 250.2 * 5e-6]
    assert len(hit) == 1
    assert hit["fwhm_s"].iloc[0] == pytest.approx(1.5, rel=0.25)


def test_two_narrow_isomers_at_a_one_second_cycle_keep_their_valley():
    """FWHM 2.2 s, 5.2 s apart, one twice the other, sampled every second: both found.  A
    smoothing kernel of one scan (1 s) filled the valley and the smaller one was lost."""
    ions = [(304.658, 60.0, 2.2, 1.5e6), (304.658, 65.2, 2.2, 3e6)]
    f = _features(_run(ions, cycle_s=1.0, n_scans=120))
    near = f[(f["mz"] - 304.658).abs() < 304.658 * 1e-5]
    assert np.allclose(np.sort(near["rt_apex_s"]), [60.0, 65.2], atol=1.0), near


def test_a_short_trace_of_two_narrow_isomers_is_not_taken_for_noise():
    """Ground truth seed 27 at a 1 s cycle, m/z 390.04: FWHM 2.2 and 2.0 s, 4.6 s (2 FWHM) apart,
    on a trace that is all peak.  In linear intensity the quadratic cannot follow peaks 2 scans
    wide, and the misfit gave a relative scatter of 0.43 (for 3 % noise), so the prominence of
    the smaller one (> 60 % of it) failed S/N 5; measured in log intensity it is not inflated."""
    ions = [(390.04, 60.0, 2.2, 3.4e7), (390.04, 64.6, 2.0, 6e7)]
    f = _features(_run(ions, cycle_s=1.0, n_scans=120))
    near = f[(f["mz"] - 390.04).abs() < 390.04 * 1e-5]
    assert np.allclose(np.sort(near["rt_apex_s"]), [60.0, 64.6], atol=1.0), near


def test_a_compound_cut_by_the_start_of_the_run_is_kept_a_background_slope_is_not():
    """Both peaks run into the run's start above half height, on traces lasting the whole run.

    The compound's profile then falls to 7 % of its apex (kept: the acquisition cut it); the
    hump on a background ion falls only to 44 % (dropped: the ion's slope, not a peak).
    """
    background = 2000.0  # FWHM of the "ions" that stand for a constant background level (s)
    ions = [
        (330.26, 2.0, 8.0, 2e5),
        (330.26, 60.0, background, 1.5e4),
        (331.2, 3.0, 20.0, 1e5),
        (331.2, 60.0, background, 8e4),
    ]
    f = _features(_run(ions))
    near = lambda mz: f[(f["mz"] - mz).abs() < mz * 5e-6]  # noqa: E731
    assert len(near(330.26)) == 1 and near(330.26)["rt_apex_s"].iloc[0] < 5.0
    assert (near(331.2)["rt_apex_s"] > 10.0).all(), near(331.2)


def test_background_ions_across_an_ion_suppression_dip_are_not_peaks():
    """171103_PMA_TK_QC_04 at 291.7-295.2 s: a strong compound fills the trap, every other ion
    falls below the threshold for 8 scans.  A background ion's level after the dip, short and
    cut by the dip and the end of the run, was reported as a peak (254 such features on that
    file).  The dip's scans are now bridged: the background gives no peak, while a compound
    eluting just after the dip and one before it are found."""
    background = 2000.0  # FWHM (s) of the "ions" that stand for a constant background level
    ions = [(m, 60.0, background, h) for m, h in ((210.1, 3e4), (320.2, 6e4), (455.3, 1.2e5))]
    ions += [(380.19, 112.0, 2.5, 3e5), (510.27, 96.0, 3.0, 2e5)]
    ms1 = _run(ions, suppressed=(105.0, 109.0, 0.01))
    dip = suppressed_scans(ms1.scan, ms1.rt)
    assert np.flatnonzero(dip).tolist() == list(range(210, 218))
    f = _features(ms1)
    near = lambda mz: f[(f["mz"] - mz).abs() < mz * 5e-6]  # noqa: E731
    for mz, *_ in ions[:3]:
        assert near(mz).empty, near(mz)
    for mz, rt, *_ in ions[3:]:
        assert len(near(mz)) == 1 and near(mz)["rt_apex_s"].iloc[0] == pytest.approx(rt, abs=1.5)
    # without the bridge (`suppressed_fraction: 0`), the levels after the dip are "peaks"
    off = _features(ms1, suppressed_fraction=0.0, baseline_margin=-1.0)
    after = off[off["rt_apex_s"] > 109.0]
    assert np.isin(after["mz"].round(1), [210.1, 320.2, 455.3]).any(), after


def test_two_centroids_of_one_ion_in_a_scan_make_one_trace_not_a_zigzag():
    """A compound 2 ppm from a background ion, written as two centroids per scan (as the
    ground-truth generator does; an Orbitrap gives one): the trace took one in a scan and the
    other in the next, and the zigzag cut the compound into 3-4 "peaks" (58-63 s)."""
    ions = [(300.1, 60.0, 6.0, 1e6), (300.1 * (1 + 2e-6), 60.0, 2000.0, 1e5)]
    ms1 = _run(ions)
    pair = ms1.mz[(np.abs(ms1.mz - 300.1) < 300.1 * 5e-6) & (ms1.scan == 120)]
    assert len(pair) == 2 and np.ptp(pair) < 300.1 * 4e-6  # the close pair is in the input
    f = _features(ms1)
    near = f[(f["mz"] - 300.1).abs() < 300.1 * 10e-6]
    assert len(near) == 1 and near["rt_apex_s"].iloc[0] == pytest.approx(60.0, abs=1.0), near
    # the merged centroid: summed intensity, m/z between the two
    assert near["height"].iloc[0] > 1e6


def test_merge_unresolved_sums_close_centroids_of_one_scan_only():
    scan = np.array([0, 0, 0, 0, 1, 1], np.int32)
    mz = np.array([200.0, 200.0006, 200.0012, 200.01, 200.0, 200.0004])
    inten = np.array([1.0, 3.0, 1.0, 5.0, 2.0, 2.0], np.float32)
    # 200.0 / 200.0006 / 200.0012: a chain of 3 ppm steps is one ion; 200.01 (50 ppm) is not
    s, m, i = merge_unresolved(scan, mz, inten, ppm=4.0)
    assert s.tolist() == [0, 0, 1] and i.tolist() == [5.0, 5.0, 4.0]
    assert m[0] == pytest.approx(200.0006) and m[1] == 200.01 and m[2] == pytest.approx(200.0002)
    assert merge_unresolved(scan, mz, inten, ppm=0.0)[1] is mz  # 0: every centroid kept


def test_isotopes_grouped_by_charge_with_the_monoisotopic_mz():
    c1, c2 = 400.2, 350.15
    ions = [
        (c1, 50.0, 5.0, 2e6),
        (c1 + C13_SPACING, 50.0, 5.0, 2e6 * 0.22),
        (c1 + 2 * C13_SPACING, 50.0, 5.0, 2e5 * 0.3),
        (c2, 70.0, 5.0, 1e6),
        (c2 + C13_SPACING / 2, 70.0, 5.0, 1e6 * 0.38),
        (c2 + C13_SPACING, 70.0, 5.0, 1e6 * 0.08),
        # an unrelated ion 1.0034 above c1 but eluting 8 s later: not an isotope of c1
        (c1 + 3 * C13_SPACING, 58.0, 5.0, 5e5),
    ]
    f = _features(_run(ions))
    one = f[(f["mz"] - c1).abs() < 0.002].iloc[0]
    two = f[(f["mz"] - c2).abs() < 0.002].iloc[0]
    assert (one["charge"], one["n_isotopes"]) == (1, 3)
    assert (two["charge"], two["n_isotopes"]) == (2, 3)
    assert np.allclose(two["isotope_mz"], [c2, c2 + C13_SPACING / 2, c2 + C13_SPACING], atol=0.002)
    # no isotope is a feature of its own; the late ion is
    assert len(f) == 3 and ((f["mz"] - (c1 + 3 * C13_SPACING)).abs() < 0.002).sum() == 1


def test_schema_documents_every_column():
    assert PEAK_SCHEMA.metadata[b"binds.format_version"] == b"2"
    for field in PEAK_SCHEMA:
        assert field.metadata and field.metadata[b"description"], field.name
    assert PEAK_SCHEMA.field("rt_apex_s").metadata[b"unit"] == b"s"
    assert PEAK_SCHEMA.metadata[b"binds.format"] == b"binds-metabolomics-feature-peaks"


def test_targets_integrate_the_peak_not_the_window(tmp_path):
    """Two isomers in one target window: the target reports the taller one and its own area."""
    from pipelines.modalities.metabolomics.targets import quantify_targets

    truth = write_run(
        tmp_path / "gt.mzML", seed=1, n_compounds=40, run_s=180.0, cycle_s=0.5, n_background=20
    )
    convert_mzml(
        src=tmp_path / "gt.mzML",
        spectra_out=tmp_path / "s.parquet",
        chromatograms_out=tmp_path / "c.parquet",
    )
    same = np.abs(truth.mz[:, None] - truth.mz[None, :]) < 1e-9
    np.fill_diagonal(same, False)
    i, j = np.argwhere(same & truth.strong[:, None] & truth.strong[None, :])[0]
    tall = i if truth.height[i] >= truth.height[j] else j
    lo, hi = min(truth.rt[i], truth.rt[j]) - 15, max(truth.rt[i], truth.rt[j]) + 15
    (tmp_path / "t.csv").write_text(
        f"name,mz,rt_start_s,rt_end_s\npair,{truth.mz[i]:.6f},{lo:.1f},{hi:.1f}\n"
    )
    quantify_targets(
        spectra=[tmp_path / "s.parquet"],
        runs=["gt"],
        targets_csv=tmp_path / "t.csv",
        out=tmp_path / "targets.parquet",
    )
    table = pq.read_table(tmp_path / "targets.parquet")
    # the layout documented (peak columns) is version 2, and only the shared writer stamps it
    assert table.schema.metadata[b"binds.format_version"] == b"2"
    (row,) = table.to_pylist()
    assert row["detected"] and abs(row["rt_apex_s"] - truth.rt[tall]) < 2.0
    assert row["peak_start_s"] < row["rt_apex_s"] < row["peak_end_s"]
    assert 0 < row["area"] < row["area_window"] and abs(row["mass_error_ppm"]) < 3
