"""Scoring feature lists: one-to-one matching, ground truth, and the pyopenms reference.

Used by the tests and by ``benchmarks/bench_metabolomics_features.py``; pyopenms is imported only
by :func:`openms_features` (it is a test extra, not a runtime dependency).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def match_one_to_one(
    a_mz: np.ndarray,
    a_rt: np.ndarray,
    b_mz: np.ndarray,
    b_rt: np.ndarray,
    *,
    ppm: float = 10.0,
    rt_s: float = 10.0,
) -> np.ndarray:
    """Pairs ``(i, j)`` of ``a`` and ``b`` within ``ppm`` and ``rt_s``, each element used once.

    Greedy on the cost |dm/z| / tolerance + |dRT| / tolerance, closest pairs first (so two isomers
    at one m/z need two of the other side's features to be both matched).
    """
    a_mz, a_rt, b_mz, b_rt = (np.asarray(x, dtype=np.float64) for x in (a_mz, a_rt, b_mz, b_rt))
    if not len(a_mz) or not len(b_mz):
        return np.zeros((0, 2), dtype=np.int64)
    order = np.argsort(b_mz, kind="stable")
    bm = b_mz[order]
    tol = a_mz * ppm * 1e-6
    lo = np.searchsorted(bm, a_mz - tol)
    hi = np.searchsorted(bm, a_mz + tol, side="right")
    n = hi - lo
    ia = np.repeat(np.arange(len(a_mz)), n)
    ib = order[np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))]
    drt = np.abs(a_rt[ia] - b_rt[ib])
    keep = drt <= rt_s
    ia, ib, drt = ia[keep], ib[keep], drt[keep]
    cost = np.abs(a_mz[ia] - b_mz[ib]) / tol[ia] + drt / rt_s
    used_a = np.zeros(len(a_mz), bool)
    used_b = np.zeros(len(b_mz), bool)
    pairs = []
    for k in np.argsort(cost, kind="stable"):
        i, j = ia[k], ib[k]
        if not used_a[i] and not used_b[j]:
            used_a[i] = used_b[j] = True
            pairs.append((i, j))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


@dataclass(slots=True)
class ReferenceFeatures:
    """pyopenms FeatureFinderMetabo output: features (monoisotopic) and the elution peaks (traces)."""

    mz: np.ndarray
    rt: np.ndarray
    intensity: np.ndarray
    fwhm_s: np.ndarray
    charge: np.ndarray
    trace_mz: np.ndarray
    trace_rt: np.ndarray
    seconds: float  # MassTraceDetection + ElutionPeakDetection + FFM (not loading)
    # the mass traces before ElutionPeakDetection: m/z and RT range (for explain_agreement)
    mtd_mz: np.ndarray | None = None
    mtd_rt_start: np.ndarray | None = None
    mtd_rt_end: np.ndarray | None = None


# the reference settings: MassTraceDetection 10 ppm, noise 1000; ElutionPeakDetection
# FWHM 1-60 s (fixed filter); FeatureFindingMetabo without isotope filtering, single traces kept
OPENMS_PARAMS = {
    "MassTraceDetection": {"mass_error_ppm": 10.0, "noise_threshold_int": 1000.0},
    "ElutionPeakDetection": {"width_filtering": "fixed", "min_fwhm": 1.0, "max_fwhm": 60.0},
    "FeatureFindingMetabo": {
        "isotope_filtering_model": "none",
        "remove_single_traces": "false",
        "mz_scoring_13C": "false",
    },
}


def openms_favourable_params(mzml: str | Path) -> dict:
    """pyopenms at its most favourable on a centroided run (issue 27): mass traces from 5 scans
    (``min_trace_length`` 5 cycles), the noise threshold at the run's lowest centroid, the
    metabolite isotope model (5 % RMS) to group isotopes, single traces kept."""
    import pyopenms as oms

    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(mzml), exp)
    spectra = [s for s in exp.getSpectra() if s.getMSLevel() == 1]
    rts = np.array([s.getRT() for s in spectra])
    lowest = min(float(np.min(s.get_peaks()[1])) for s in spectra if s.size())
    cycle = float(np.median(np.diff(rts))) if len(rts) > 1 else 1.0
    return {
        "MassTraceDetection": {
            "mass_error_ppm": 10.0,
            "noise_threshold_int": lowest,
            "min_trace_length": 5 * cycle,
        },
        "ElutionPeakDetection": {"width_filtering": "fixed", "min_fwhm": 1.0, "max_fwhm": 60.0},
        "FeatureFindingMetabo": {
            "isotope_filtering_model": "metabolites (5% RMS)",
            "remove_single_traces": "false",
            "mz_scoring_13C": "false",
        },
    }


def openms_features(
    mzml: str | Path, *, profile: bool = False, params: dict | None = None
) -> ReferenceFeatures:
    """Run pyopenms MassTraceDetection -> ElutionPeakDetection -> FeatureFindingMetabo on MS1."""
    import time

    import pyopenms as oms

    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(mzml), exp)
    t0 = time.perf_counter()
    ms1 = oms.MSExperiment()
    for s in exp.getSpectra():
        if s.getMSLevel() == 1:
            ms1.addSpectrum(s)
    if profile:
        ms1 = oms.PeakPickerHiRes().pickExperiment(ms1, True)
    ms1.sortSpectra(True)
    algos = {
        "MassTraceDetection": oms.MassTraceDetection(),
        "ElutionPeakDetection": oms.ElutionPeakDetection(),
        "FeatureFindingMetabo": oms.FeatureFindingMetabo(),
    }
    for name, algo in algos.items():
        p = algo.getDefaults()
        for k, v in (params or OPENMS_PARAMS)[name].items():
            p.setValue(k, v)
        algo.setParameters(p)
    traces = algos["MassTraceDetection"].run(ms1, 0)
    peaks = algos["ElutionPeakDetection"].detectPeaks(traces)
    fmap = oms.FeatureMap()
    algos["FeatureFindingMetabo"].run(peaks, fmap)
    seconds = time.perf_counter() - t0
    feats = list(fmap)
    hulls = [np.asarray(t.getConvexhull().getHullPoints())[:, 0] for t in traces]
    return ReferenceFeatures(
        mz=np.array([f.getMZ() for f in feats]),
        rt=np.array([f.getRT() for f in feats]),
        intensity=np.array([f.getIntensity() for f in feats]),
        fwhm_s=np.array([f.getWidth() for f in feats]),
        charge=np.array([f.getCharge() for f in feats]),
        trace_mz=np.array([t.getCentroidMZ() for t in peaks]),
        trace_rt=np.array([t.getCentroidRT() for t in peaks]),
        seconds=seconds,
        mtd_mz=np.array([t.getCentroidMZ() for t in traces]),
        mtd_rt_start=np.array([h.min() for h in hulls]),
        mtd_rt_end=np.array([h.max() for h in hulls]),
    )


def agreement_with_openms(
    ours_mz: np.ndarray,
    ours_rt: np.ndarray,
    peaks_mz: np.ndarray,
    peaks_rt: np.ndarray,
    ref: ReferenceFeatures,
    *,
    ppm: float = 10.0,
    rt_s: float = 10.0,
) -> dict:
    """The issue's three agreement figures.

    - ``found_fwhm_le_20s``: OpenMS features with FWHM <= 20 s that one of our chromatographic
      peaks (any isotope trace of our features: ``peaks_mz`` / ``peaks_rt``) matches one to one;
    - ``found_top25``: the same for OpenMS's 25 % most intense features (on a slice of a run
      these are mostly background ions present all along it, FWHM ~ the slice);
    - ``found_top25_fwhm_le_20s``: the 25 % most intense of those with FWHM <= 20 s;
    - ``ours_in_openms_mass_traces`` (the issue's "ours matching an OpenMS mass trace"): our
      features (monoisotopic m/z, apex RT) that lie in one of MassTraceDetection's mass traces:
      within ``ppm`` of its centroid m/z and apex between its first and last point's RT.  A
      trace can hold several of our features (isomers, a split background ion), so this is
      not one to one;
    - ``ours_at_openms_elution_peaks`` (the figure reported before, kept beside it): our
      features matched one to one to an OpenMS elution peak (a mass trace after
      ElutionPeakDetection's split) within ``ppm`` and ``rt_s`` of its smoothed apex.
    """
    narrow = ref.fwhm_s <= 20.0
    top = ref.intensity >= np.quantile(ref.intensity, 0.75) if len(ref.intensity) else narrow
    top_narrow = (
        narrow & (ref.intensity >= np.quantile(ref.intensity[narrow], 0.75))
        if narrow.any()
        else narrow
    )
    out = {}
    for key, sel in (
        ("found_fwhm_le_20s", narrow),
        ("found_top25", top),
        ("found_top25_fwhm_le_20s", top_narrow),
    ):
        pairs = match_one_to_one(ref.mz[sel], ref.rt[sel], peaks_mz, peaks_rt, ppm=ppm, rt_s=rt_s)
        out[key] = len(pairs) / max(int(sel.sum()), 1)
        out[f"n_{key.removeprefix('found_')}"] = int(sel.sum())
    inside = in_mass_traces(np.asarray(ours_mz), np.asarray(ours_rt), ref, ppm=ppm)
    out["ours_in_openms_mass_traces"] = float(inside.mean()) if len(inside) else 0.0
    pairs = match_one_to_one(ours_mz, ours_rt, ref.trace_mz, ref.trace_rt, ppm=ppm, rt_s=rt_s)
    out["ours_at_openms_elution_peaks"] = len(pairs) / max(len(ours_mz), 1)
    out["n_ours"], out["n_openms"], out["n_openms_elution_peaks"] = (
        len(ours_mz),
        len(ref.mz),
        len(ref.trace_mz),
    )
    out["n_openms_mass_traces"] = len(ref.mtd_mz) if ref.mtd_mz is not None else 0
    return out


def in_mass_traces(
    mz: np.ndarray, rt: np.ndarray, ref: ReferenceFeatures, *, ppm: float = 10.0
) -> np.ndarray:
    """Per (m/z, RT): inside one of OpenMS's mass traces (``ppm`` of its m/z, RT in its span)."""
    if ref.mtd_mz is None or not len(ref.mtd_mz) or not len(mz):
        return np.zeros(len(mz), bool)
    assert ref.mtd_rt_start is not None and ref.mtd_rt_end is not None
    order = np.argsort(ref.mtd_mz, kind="stable")
    t_mz, t_lo, t_hi = ref.mtd_mz[order], ref.mtd_rt_start[order], ref.mtd_rt_end[order]
    lo = np.searchsorted(t_mz, mz * (1 - ppm * 1e-6))
    hi = np.searchsorted(t_mz, mz * (1 + ppm * 1e-6), side="right")
    n = hi - lo
    cand = np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    of = np.repeat(np.arange(len(mz)), n)
    hit = (t_lo[cand] <= rt[of]) & (t_hi[cand] >= rt[of])
    return np.bincount(of[hit], minlength=len(mz)) > 0


@dataclass(frozen=True, slots=True)
class _OursAround:
    """What ours found, kept or dropped, that a missed OpenMS feature is explained by."""

    pk: Any  # features.Peaks: the peaks of our features
    loose: Any  # every peak of ours with every filter off
    loose_on_background: np.ndarray  # per loose peak: the baseline test drops it
    loose_trace_s: np.ndarray  # per trace of the loose peaks: first to last point (s)
    run_s: float
    # every trace of ours (min_points 1): mean m/z, RT of its first and last point
    trace_mz: np.ndarray
    trace_rt0: np.ndarray
    trace_rt1: np.ndarray


def _trace_seconds(peaks, rt: np.ndarray) -> np.ndarray:
    """Per trace of ``peaks``: the RT from its first to its last point."""
    return rt[peaks.trace_last_scan] - rt[peaks.trace_first_scan]


def _our_traces(
    merged, params, *, suppressed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every trace of ours, single points included: its mean m/z and the RT of its first and
    last point (linked as find_features links them)."""
    from pipelines.modalities.metabolomics.features import link_traces

    order, starts = link_traces(merged, params, suppressed=suppressed, min_points=1)
    of_trace = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    tr_mz = np.bincount(of_trace, weights=merged.mz[order]) / np.maximum(np.diff(starts), 1)
    rt, scan = merged.rt, merged.scan
    return tr_mz, rt[scan[order[starts[:-1]]]], rt[scan[order[starts[1:] - 1]]]


def _filters_failed(ours: _OursAround, j: int, params) -> list[str]:
    """The filters of find_features that loose peak ``j`` fails (none named: the prominence
    or the run's edge dropped it)."""
    loose = ours.loose
    return [
        name
        for name, bad in (
            ("S/N", loose.snr[j] < params.min_snr),
            ("height", loose.height[j] < params.min_height),
            ("scans", loose.n_scans[j] < params.min_scans),
            ("FWHM", not params.min_fwhm_s <= loose.fwhm[j] <= params.max_fwhm_s),
            ("the baseline test", ours.loose_on_background[j]),
        )
        if bad
    ] or ["prominence or run edge"]


def _missed_cause(mz, rt, ours: _OursAround, params, *, ppm: float, rt_s: float) -> str:
    """Why we miss the OpenMS feature at (``mz``, ``rt``): the first cause that applies (see
    :func:`explain_agreement`)."""

    def near(mz_b, rt_b):
        return (np.abs(mz_b - mz) <= mz * ppm * 1e-6) & (np.abs(rt_b - rt) <= rt_s)

    loose = ours.loose
    if near(ours.pk.mz, ours.pk.rt_apex).any():
        return "a peak of ours there, paired with another OpenMS feature"
    if (hit := np.flatnonzero(near(loose.mz, loose.rt_apex))).size:
        j = hit[np.argmin(np.abs(loose.rt_apex[hit] - rt))]
        fails = _filters_failed(ours, j, params)
        long = ours.loose_trace_s[loose.trace[j]] >= 0.5 * ours.run_s
        where = "long trace" if long else "short trace"
        return f"a peak of ours dropped by {' + '.join(fails)} ({where})"
    if (
        (np.abs(ours.trace_mz - mz) <= mz * ppm * 1e-6)
        & (ours.trace_rt0 - rt_s <= rt)
        & (ours.trace_rt1 + rt_s >= rt)
    ).any():
        return "a trace of ours, no peak within rt_s"
    return "nothing of ours"


def _why_outside(
    pk, mono: np.ndarray, ref: ReferenceFeatures, *, trace_s: np.ndarray, ppm: float, rt_s: float
) -> dict[str, int]:
    """Our features (``mono``: their monoisotopic peaks) outside OpenMS's elution peaks, by
    cause; ``trace_s``: per trace of ``pk``, its RT length."""
    pairs = match_one_to_one(
        pk.mz[mono], pk.rt_apex[mono], ref.trace_mz, ref.trace_rt, ppm=ppm, rt_s=rt_s
    )
    outside = np.setdiff1d(np.arange(len(mono)), pairs[:, 0])
    # ours outside OpenMS's elution peaks (the apex figure): inside one of its mass traces (the
    # mass-trace figure counts these as matching), else on a trace of ours shorter than
    # MassTraceDetection's 5 s minimum, else neither
    inside = in_mass_traces(pk.mz[mono[outside]], pk.rt_apex[mono[outside]], ref, ppm=ppm)
    short = trace_s[pk.trace[mono[outside]]] < 5.0
    return {
        "inside an OpenMS mass trace": int(inside.sum()),
        "trace shorter than 5 s": int((~inside & short).sum()),
        "no OpenMS mass trace": int((~inside & ~short).sum()),
    }


def explain_agreement(
    ms1, params, ref: ReferenceFeatures, *, ppm: float = 10.0, rt_s: float = 10.0
):
    """Why ours and OpenMS disagree: counts of the OpenMS features (FWHM <= 20 s) we miss, by cause
    (``openms_missed``; ``openms_missed_top25`` for the 25 % most intense of them), and of our
    features outside OpenMS's elution peaks, by cause (``ours_outside``).

    ``ms1`` (:class:`features.MS1Peaks`) and ``params`` (:class:`features.FeatureParams`) are
    what ours ran with.  A missed OpenMS feature is put under the first that applies: a peak of
    ours is there but paired with another OpenMS feature; a peak of ours is there with every
    filter off (``min_snr`` 0, no height, scan or width limit), listed with the filters it
    fails and whether its trace lasts half the run (a background ion) or less; a trace of ours
    is there but no peak within ``rt_s``; nothing.  Our features outside OpenMS's elution peaks:
    inside an OpenMS mass trace (apex more than ``rt_s`` from its elution peaks'); else on a
    trace of ours shorter than MassTraceDetection's 5 s ``min_trace_length``; else no OpenMS
    trace there.  The last two are ours outside OpenMS's mass traces.
    """
    from dataclasses import replace

    from pipelines.modalities.metabolomics.features import (
        find_features,
        on_ion_current,
        unresolved_merged,
    )
    from pipelines.modalities.metabolomics.peaks import suppressed_scans

    pk, feats = find_features(ms1, params)
    iso = np.concatenate(feats.members) if feats.members else np.zeros(0, np.int64)
    narrow = np.flatnonzero(ref.fwhm_s <= 20.0)
    pairs = match_one_to_one(
        ref.mz[narrow], ref.rt[narrow], pk.mz[iso], pk.rt_apex[iso], ppm=ppm, rt_s=rt_s
    )
    missed = np.setdiff1d(narrow, narrow[pairs[:, 0]])
    loose = replace(
        params,
        min_snr=0.0,
        min_height=0.0,
        min_scans=1,
        min_fwhm_s=0.0,
        max_fwhm_s=np.inf,
        baseline_margin=-1.0,
    )
    allpk, _ = find_features(ms1, loose)
    suppressed = suppressed_scans(ms1.scan, ms1.rt, fraction=params.suppressed_fraction)
    merged = unresolved_merged(ms1, params)  # the centroids find_features builds its traces of
    tr_mz, tr_rt0, tr_rt1 = _our_traces(merged, params, suppressed=suppressed)
    ours = _OursAround(
        pk=pk,
        loose=allpk,
        loose_on_background=~on_ion_current(allpk, merged, params, suppressed=suppressed),
        loose_trace_s=_trace_seconds(allpk, ms1.rt),
        run_s=float(ms1.rt[-1] - ms1.rt[0]) if len(ms1.rt) else 0.0,
        trace_mz=tr_mz,
        trace_rt0=tr_rt0,
        trace_rt1=tr_rt1,
    )
    why_missed: dict[str, int] = {}
    why_missed_top: dict[str, int] = {}  # the same, for the 25 % most intense of them
    top_level = np.quantile(ref.intensity[narrow], 0.75) if len(narrow) else np.inf
    for i in missed:
        cause = _missed_cause(ref.mz[i], ref.rt[i], ours, params, ppm=ppm, rt_s=rt_s)
        why_missed[cause] = why_missed.get(cause, 0) + 1
        if ref.intensity[i] >= top_level:
            why_missed_top[cause] = why_missed_top.get(cause, 0) + 1
    trace_s = _trace_seconds(pk, merged.rt)
    return {
        "openms_missed": why_missed,
        "openms_missed_top25": why_missed_top,
        "ours_outside": _why_outside(pk, feats.mono, ref, trace_s=trace_s, ppm=ppm, rt_s=rt_s),
    }


def score_against_truth(
    found_mz: np.ndarray,
    found_rt: np.ndarray,
    true_mz: np.ndarray,
    true_rt: np.ndarray,
    strong: np.ndarray,
    *,
    ppm: float = 10.0,
    rt_s: float = 5.0,
) -> dict:
    """Recall on the ``strong`` compounds, precision over every reported feature.

    A reported feature is right when it is matched (one to one) to a compound's monoisotopic ion,
    weak compounds included; a feature on an isotope, a background ion or noise is wrong.
    """
    pairs = match_one_to_one(found_mz, found_rt, true_mz, true_rt, ppm=ppm, rt_s=rt_s)
    hit = np.zeros(len(true_mz), bool)
    hit[pairs[:, 1]] = True
    return {
        "recall": float(hit[strong].mean()) if strong.any() else float("nan"),
        "precision": len(pairs) / len(found_mz) if len(found_mz) else float("nan"),
        "n_reported": len(found_mz),
        "n_true": len(true_mz),
        "n_strong": int(strong.sum()),
        "recall_all": float(hit.mean()) if len(hit) else float("nan"),
    }


def _match_with_rt_tolerance(
    a_mz: np.ndarray,
    a_rt: np.ndarray,
    b_mz: np.ndarray,
    b_rt: np.ndarray,
    b_rt_tol: np.ndarray,
    *,
    ppm: float,
) -> np.ndarray:
    """Pairs (i, j) of ``a`` and ``b`` within ``ppm`` and ``b_rt_tol[j]``, each used once,
    closest first (cost |dm/z| / tolerance + |dRT| / tolerance)."""
    if not len(a_mz) or not len(b_mz):
        return np.zeros((0, 2), np.int64)
    order = np.argsort(b_mz, kind="stable")
    bm = b_mz[order]
    tol = a_mz * ppm * 1e-6
    lo = np.searchsorted(bm, a_mz - tol)
    hi = np.searchsorted(bm, a_mz + tol, side="right")
    n = hi - lo
    ia = np.repeat(np.arange(len(a_mz)), n)
    ib = order[np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))]
    drt = np.abs(a_rt[ia] - b_rt[ib])
    keep = drt <= b_rt_tol[ib]
    ia, ib, drt = ia[keep], ib[keep], drt[keep]
    cost = np.abs(a_mz[ia] - b_mz[ib]) / tol[ia] + drt / b_rt_tol[ib]
    used_a = np.zeros(len(a_mz), bool)
    used_b = np.zeros(len(b_mz), bool)
    pairs = []
    for k in np.argsort(cost, kind="stable"):
        i, j = ia[k], ib[k]
        if not used_a[i] and not used_b[j]:
            used_a[i] = used_b[j] = True
            pairs.append((i, j))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def score_against_run_truth(found_mz, found_rt, truth, *, ppm: float = 10.0) -> dict:
    """Recall and precision of a feature list on a widened ground-truth run
    (:func:`.groundtruth.simulate_run`), one to one within ``ppm`` and max(5 s, 0.5 FWHM) of
    the true apex.

    Recall: of the target ions (``truth.target``: the monoisotopic ion of each compound x
    adduct, resolvable, >= 3x the detection threshold at its apex).  Precision: real signal /
    reported, where a feature matched to any ion of a compound (a target, a weaker or
    unresolvable one, an isotope or adduct reported on its own) is real, each ion once; a
    feature on a background ion or noise is not.  ``on_background``: the unmatched features
    within ``ppm`` of a background ion.
    """
    found_mz = np.asarray(found_mz, np.float64)
    found_rt = np.asarray(found_rt, np.float64)
    tol = np.maximum(5.0, 0.5 * truth.fwhm) + truth.rt_span
    target = np.flatnonzero(truth.target)
    pairs = _match_with_rt_tolerance(
        found_mz, found_rt, truth.mz[target], truth.rt[target], tol[target], ppm=ppm
    )
    hit = np.zeros(len(target), bool)
    hit[pairs[:, 1]] = True
    real = np.zeros(len(found_mz), bool)
    real[pairs[:, 0]] = True
    rest_f = np.flatnonzero(~real)
    rest_t = np.setdiff1d(np.arange(len(truth.mz)), target[pairs[:, 1]])
    more = _match_with_rt_tolerance(
        found_mz[rest_f], found_rt[rest_f], truth.mz[rest_t], truth.rt[rest_t], tol[rest_t], ppm=ppm
    )
    real[rest_f[more[:, 0]]] = True
    false = np.flatnonzero(~real)
    bg = np.sort(truth.background_mz)
    near_bg = np.zeros(len(false), bool)
    if len(bg) and len(false):
        pos = np.clip(np.searchsorted(bg, found_mz[false]), 1, len(bg) - 1)
        d = np.minimum(np.abs(bg[pos] - found_mz[false]), np.abs(bg[pos - 1] - found_mz[false]))
        near_bg = d <= found_mz[false] * ppm * 1e-6
    n = len(found_mz)
    return {
        "recall": float(hit.mean()) if len(hit) else float("nan"),
        "precision": float(real.sum() / n) if n else float("nan"),
        "n_reported": n,
        "n_targets": len(target),
        "n_found": int(hit.sum()),
        "n_false": len(false),
        "on_background": int(near_bg.sum()),
        "missed": target[~hit],
        "false": false,
    }
