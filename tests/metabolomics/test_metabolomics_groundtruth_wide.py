"""Features against the widened ground truth (issue 27): one ion, one trace; no peaks on
background ions; compounds on background found; floors over seeds, both scan cycles, with and
without ion-suppression dips; not below pyopenms at its most favourable settings."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.modalities.metabolomics.compare import score_against_run_truth
from pipelines.modalities.metabolomics.convert import convert_mzml
from pipelines.modalities.metabolomics.features import (
    FeatureParams,
    MS1Peaks,
    detect_features,
    feature_table,
    features_of_run,
    find_features,
)
from pipelines.modalities.metabolomics.groundtruth import (
    _resolve,
    isotopologues,
    simulate_run,
    write_mzml,
)
from pipelines.modalities.metabolomics.peaks import track_traces

BEFORE_ISSUE_27 = {"baseline_margin": -1.0, "trace_linking": "scan-to-scan"}


# --------------------------------------------------------------------------- hand-made runs
def _resolved_run(ions, *, cycle_s=0.3, run_s=240.0, rp=230_000.0, floor=2000.0, seed=0):
    """Centroids of ``ions`` [(m/z, f(t) -> intensity)] as a resolution-limited instrument
    writes them (ions closer than the peak width merged in a scan), 5 % intensity noise, 2.5 ppm
    m/z scatter, 400 random centroids a scan (as dense as a real scan, so that the run's noise
    floor is the threshold's, not a background ion's level), nothing below ``floor``."""
    rng = np.random.default_rng(seed)
    rt = np.arange(0.0, run_s, cycle_s)
    ion_mz = np.array([m for m, _ in ions])
    order = np.argsort(ion_mz)
    scans, mzs, ints = [], [], []
    for s, t in enumerate(rt):
        inten = np.array([f(t) for _, f in ions])[order]
        inten = inten * (1 + 0.05 * rng.standard_normal(len(inten)))
        c_mz, c_int, _ = _resolve(ion_mz[order], np.maximum(inten, 1.0), rp)
        mz = np.concatenate([c_mz, rng.uniform(100, 900, 400)])
        it = np.concatenate([c_int, floor * np.exp(np.abs(rng.normal(0, 0.4, 400)))])
        mz = mz * (1 + 2.5e-6 * rng.standard_normal(len(mz)))
        keep = it >= floor
        o = np.argsort(mz[keep])
        scans.append(np.full(len(o), s, np.int32))
        mzs.append(mz[keep][o])
        ints.append(it[keep][o].astype(np.float32))
    return MS1Peaks(np.concatenate(scans), np.concatenate(mzs), np.concatenate(ints), rt)


def _features(ms1, **params):
    pk, feats = find_features(ms1, FeatureParams(**params))
    return feature_table(pk, feats, run="r").to_pandas()


def _near(f, mz, ppm=20.0):
    return f[(f["mz"] - mz).abs() < mz * ppm * 1e-6]


def _gauss(rt, fwhm, height):
    return lambda t: height * np.exp(-4 * np.log(2) * ((t - rt) / fwhm) ** 2)


def test_two_background_ions_11_ppm_apart_give_no_feature():
    """The issue's first symptom: two steady background ions 11 ppm apart at 230k resolving
    power, merged into one centroid in some scans and resolved in others; the scan-to-scan
    traces alternated between them and every piece was a "peak" (here 20-40 features)."""
    m = 412.2
    ions = [(m, lambda t: 4e4), (m * (1 + 11e-6), lambda t: 3e4 * (1 + 0.3 * t / 240.0))]
    ms1 = _resolved_run(ions)
    before = _near(_features(ms1, **BEFORE_ISSUE_27), m)
    assert len(before) >= 5, before  # the symptom, on the code before issue 27
    assert _near(_features(ms1), m).empty


def test_one_ion_one_trace_when_a_neighbour_is_merged_in_some_scans():
    """Traces follow each of two ions 9 ppm apart (resolved in some scans, one centroid in
    others): each trace's centroids stay on its own ion, none alternates between the two."""
    m = 300.1
    ions = [(m, lambda t: 5e4), (m * (1 + 9e-6), lambda t: 6e4)]
    ms1 = _resolved_run(ions, rp=240_000.0, run_s=60.0)
    order, starts = track_traces(
        ms1.scan, ms1.mz, n_scans=len(ms1.rt), ppm=10.0, max_gap=2, min_points=5
    )
    long = [order[a:b] for a, b in itertools.pairwise(starts) if b - a > 0.5 * len(ms1.rt)]
    assert len(long) == 2, [len(t) for t in long]
    centre = m * (1 + 4.5e-6)
    sides = [np.mean(ms1.mz[t] > centre) for t in long]
    # each trace on one side of the midpoint (merged centroids fall near it, a few either way)
    assert sorted(sides)[0] < 0.25 and sorted(sides)[1] > 0.75, sides


@pytest.mark.parametrize("behaviour", ["constant", "drift", "step", "oscillation"])
def test_background_levels_give_no_feature_a_compound_on_them_is_found(behaviour):
    """A background ion all run long (a level, a drift, a step, a slow oscillation) with a
    neighbour 12 ppm away: no feature on it, but a compound at its m/z that doubles the signal
    for a few seconds is found (issue 27, symptoms 1 and 4)."""
    m, run_s = 523.3, 240.0
    shape = {
        "constant": lambda t: 1.0,
        "drift": lambda t: 0.5 + 1.5 * t / run_s,
        "step": lambda t: 1.0 if t < 100 else 2.2,
        "oscillation": lambda t: 1.0 + 0.35 * np.sin(2 * np.pi * t / 180.0),
    }[behaviour]
    level = 3e4
    compound = _gauss(170.0, 6.0, 1.2 * level * shape(170.0))
    ions = [
        (m, lambda t: level * shape(t) + compound(t)),
        (m * (1 + 12e-6), lambda t: 0.7 * level * shape(t)),
    ]
    f = _features(_resolved_run(ions))
    near = _near(f, m)
    assert len(near) == 1 and abs(near["rt_apex_s"].iloc[0] - 170.0) < 3.0, near


@pytest.mark.parametrize("cycle_s", [0.3, 0.8])
def test_a_compound_rising_less_than_2x_on_a_background_ion_all_run_long_is_found(cycle_s):
    """A background ion from the run's first scan to its last with one compound on it that
    adds 0.8x its level (the current rises to 1.8x: clearly above the baseline test's margin).
    Measured from zero (the trace's ends), the compound's half height lay inside the ion's
    level, its FWHM was the whole trace and it was dropped as too wide; measured from the
    ion's level at the run's edges, it is a peak of its own width (issue 27: 14 of the 15
    compounds on a background ion missed over the benchmark's 12 runs)."""
    m, level = 523.3, 3e4
    for apex in (40.0, 120.0, 200.0):
        compound = _gauss(apex, 6.0, 0.8 * level)
        f = _features(_resolved_run([(m, lambda t, c=compound: level + c(t))], cycle_s=cycle_s))
        near = _near(f, m)
        assert len(near) == 1 and abs(near["rt_apex_s"].iloc[0] - apex) < 3.0, (apex, near)


def test_weak_narrow_peaks_at_3_to_5x_the_threshold_are_found():
    """Narrow peaks (FWHM 2.5 s, ~5 points above the threshold at a 0.8 s cycle) at 3.5-5x
    the detection threshold, on an empty m/z."""
    floor = 2000.0
    peaks = [(250.1 + 37 * k, 20.0 + 20 * k, 2.5, floor * (3.5 + 0.15 * k)) for k in range(10)]
    ions = [(m, _gauss(r, w, h)) for m, r, w, h in peaks]
    f = _features(_resolved_run(ions, cycle_s=0.8, floor=floor, seed=3))
    found = sum(1 for m, r, *_ in peaks if ((_near(f, m, 10)["rt_apex_s"] - r).abs() < 2.0).any())
    assert found >= 9, (found, f[["mz", "rt_apex_s"]])


def test_isotope_fine_structure_of_the_ground_truth():
    """34S and 13C2 of a sulfur compound are two ions 0.0109 Da apart (15-40 ppm)."""
    iso = dict(isotopologues({"C": 20, "H": 30, "N": 2, "O": 4, "S": 1}))
    s34 = next(a for s, a in iso.items() if abs(s - 1.9958) < 1e-3)
    c13_2 = next(a for s, a in iso.items() if abs(s - 2.0067) < 1e-3)
    assert s34 == pytest.approx(0.0447, rel=0.02) and c13_2 == pytest.approx(0.0218, rel=0.05)
    assert iso[0.0] == 1.0


# --------------------------------------------------------------------------- floors
# (seed, cycle s, resolving power, suppression dips).  Measured at default parameters over
# these four: recall 0.972, precision 0.976 (before issue 27: 0.976 / 0.417); over the 12 runs
# of benchmarks/bench_metabolomics_groundtruth.py see benchmarks/README.md.
FLOOR_RUNS = [
    (1, 0.3, 100_000, 0),
    (2, 0.8, 230_000, 0),
    (3, 0.3, 250_000, 3),
    (4, 0.8, 140_000, 3),
]


def test_widened_ground_truth_floors():
    totals = {"binds": [0, 0, 0, 0], "before": [0, 0, 0, 0]}
    for seed, cycle, rp, dips in FLOOR_RUNS:
        run = simulate_run(seed=seed, cycle_s=cycle, resolving_power=rp, suppression_dips=dips)
        ms1 = MS1Peaks(run.scan, run.mz, run.intensity, run.rt)
        for name, params in (("binds", {}), ("before", BEFORE_ISSUE_27)):
            table, _ = features_of_run(ms1, FeatureParams(**params), run="gt")
            s = score_against_run_truth(
                table["mz"].to_numpy(), table["rt_apex_s"].to_numpy(), run.truth
            )
            if name == "binds":
                assert s["recall"] >= 0.90 and s["precision"] >= 0.94, (seed, s)
            t = totals[name]
            t[0] += s["n_found"]
            t[1] += s["n_targets"]
            t[2] += s["n_reported"] - s["n_false"]
            t[3] += s["n_reported"]
    recall = {k: t[0] / t[1] for k, t in totals.items()}
    precision = {k: t[2] / t[3] for k, t in totals.items()}
    assert recall["binds"] >= 0.96 and precision["binds"] >= 0.96, (recall, precision)
    assert precision["before"] < 0.6, precision  # the background artifacts the rules remove


def test_widened_ground_truth_through_mzml_not_below_favourable_openms(tmp_path):
    """One run per scan cycle written as mzML, through convert + detect_features and through
    pyopenms MTD + EPD + FFM at its most favourable settings: ours below it on neither."""
    pytest.importorskip("pyopenms")
    from pipelines.modalities.metabolomics.compare import (
        openms_favourable_params,
        openms_features,
    )

    for seed, cycle, rp, dips in ((5, 0.3, 180_000, 0), (8, 0.8, 100_000, 3)):
        run = simulate_run(seed=seed, cycle_s=cycle, resolving_power=rp, suppression_dips=dips)
        mzml = write_mzml(tmp_path / "gt.mzML", run)
        convert_mzml(
            src=mzml, spectra_out=tmp_path / "s.parquet", chromatograms_out=tmp_path / "c.parquet"
        )
        detect_features(spectra=tmp_path / "s.parquet", out=tmp_path / "f.parquet")
        f = pq.read_table(tmp_path / "f.parquet")
        mine = score_against_run_truth(f["mz"].to_numpy(), f["rt_apex_s"].to_numpy(), run.truth)
        ref = openms_features(mzml, params=openms_favourable_params(mzml))
        theirs = score_against_run_truth(ref.mz, ref.rt, run.truth)
        assert mine["recall"] >= theirs["recall"] - 0.01, (seed, mine, theirs)
        assert mine["precision"] >= theirs["precision"], (seed, mine, theirs)


def test_the_new_parameters_are_in_the_experiment_schema_with_the_same_defaults():
    """`features.baseline_margin` and `features.trace_linking` can be set in experiment.yaml
    (the block allows no unknown key) and every documented default is FeatureParams's."""
    import json
    from pathlib import Path

    import jsonschema

    root = Path(__file__).resolve().parents[2]
    schema = json.loads((root / "metadata/schemas/metabolomics.schema.json").read_text())
    block = schema["properties"]["features"]
    jsonschema.validate({"baseline_margin": -1, "trace_linking": "scan-to-scan"}, block)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"trace_linking": "nearest"}, block)
    defaults = FeatureParams()
    for key, spec in block["properties"].items():
        if "default" in spec and hasattr(defaults, key):
            assert getattr(defaults, key) == spec["default"], key
