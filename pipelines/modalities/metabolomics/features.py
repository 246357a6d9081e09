"""Untargeted feature detection on MS1 (in the manner of OpenMS FeatureFinderMetabo / XCMS centWave)
and grouping of the features of several runs into a feature x sample matrix.

Per run (:func:`detect_features`):

1. MS1 spectra are read from the run's spectra Parquet, profile spectra centroided first
   (local maxima, m/z = intensity-weighted mean of the apex and its two neighbours);
2. **mass traces**: centroids sorted by m/z are cut where consecutive m/z differ by more than
   ``mz_tolerance_ppm``; within a trace the most intense centroid of each scan is kept and the
   trace is split at gaps of more than ``max_gap_scans`` scans;
3. **chromatographic peaks**: each trace is smoothed (Gaussian, sigma one scan), its local maxima
   are bounded at the nearest minima, and kept when they span
   ``min_scans`` scans, reach ``min_height`` and ``min_snr`` and have a FWHM within bounds;
4. each peak is a **feature**: m/z (intensity-weighted), RT apex / start / end, height, area
   (trapezoid of the raw intensities over RT, in counts x s), FWHM, S/N.

Across runs (:func:`group_features`): greedy, most intense first: a feature takes the closest
unassigned feature of each other run within ``align_mz_tolerance_ppm`` and
``align_rt_tolerance_s``.  The result is mzTab-M SMF-like: one row per feature group with
``abundance_assay[<run>]`` columns.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.staging import write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """Parameters of feature detection and grouping (the ``features`` block of experiment.yaml)."""

    enabled: bool = True
    mz_tolerance_ppm: float = 10.0
    min_scans: int = 5
    max_gap_scans: int = 2
    min_snr: float = 5.0
    min_height: float = 1000.0
    min_fwhm_s: float = 1.0
    max_fwhm_s: float = 60.0
    align_rt_tolerance_s: float = 10.0
    align_mz_tolerance_ppm: float = 10.0

    @classmethod
    def from_block(cls, block: dict | None) -> "FeatureParams":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (block or {}).items() if k in known})


PEAK_COLUMNS = {
    "run": (pa.string(), "run name"),
    "peak_id": (pa.int32(), "peak number within the run (ordered by m/z, then RT)"),
    "mz": (pa.float64(), "intensity-weighted m/z of the peak's centroids (MS:1000040)"),
    "rt_apex_s": (pa.float64(), "retention time of the most intense point, seconds"),
    "rt_start_s": (pa.float64(), "retention time where the peak starts, seconds"),
    "rt_end_s": (pa.float64(), "retention time where the peak ends, seconds"),
    "height": (pa.float64(), "apex intensity (detector counts)"),
    "area": (pa.float64(), "trapezoidal area of the raw intensities over RT (counts x s)"),
    "fwhm_s": (pa.float64(), "full width at half maximum, seconds"),
    "snr": (pa.float64(), "(apex - baseline) / noise of the mass trace"),
    "n_scans": (pa.int32(), "MS1 scans with signal between start and end"),
}
PEAK_SCHEMA = pa.schema([pa.field(n, t) for n, (t, _) in PEAK_COLUMNS.items()],
                        metadata={b"binds:columns": json.dumps({n: d for n, (_, d) in PEAK_COLUMNS.items()},
                                                               sort_keys=True).encode()})


# --------------------------------------------------------------------------- reading MS1
def centroid_profile(mz: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid one profile spectrum: local maxima, m/z weighted over the apex and its neighbours."""
    if len(mz) < 3:
        return mz.astype(np.float64), intensity.astype(np.float32)
    y = intensity.astype(np.float64)
    apex = np.flatnonzero((y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:]) & (y[1:-1] > 0)) + 1
    w = y[apex - 1] + y[apex] + y[apex + 1]
    c_mz = (mz[apex - 1] * y[apex - 1] + mz[apex] * y[apex] + mz[apex + 1] * y[apex + 1]) / w
    return c_mz, y[apex].astype(np.float32)


@dataclass(slots=True)
class MS1Peaks:
    """All MS1 centroids of one run: scan number, m/z, intensity; and the RT of each scan."""

    scan: np.ndarray
    mz: np.ndarray
    intensity: np.ndarray
    rt: np.ndarray


def read_ms1(spectra: str | Path, *, centroid: bool = True) -> MS1Peaks:
    """MS1 centroids of one run's spectra Parquet, row group by row group."""
    pf = pq.ParquetFile(spectra)
    scans, mzs, ints, rts = [], [], [], []
    k = 0
    for rg in range(pf.num_row_groups):
        t = pf.read_row_group(rg, columns=["ms_level", "rt_s", "centroided", "mz", "intensity"])
        levels = t.column("ms_level").to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(levels == 1)
        if not len(rows):
            continue
        t = t.take(pa.array(rows))
        rt = t.column("rt_s").to_numpy(zero_copy_only=False)
        cent = t.column("centroided").to_pylist()
        mz_col, int_col = t.column("mz").combine_chunks(), t.column("intensity").combine_chunks()
        off = mz_col.offsets.to_numpy()
        mz_all, int_all = mz_col.values.to_numpy(), int_col.values.to_numpy()
        for i in range(len(rows)):
            mz = mz_all[off[i]:off[i + 1]]
            it = int_all[off[i]:off[i + 1]]
            if centroid and cent[i] is False:
                mz, it = centroid_profile(mz, it)
            keep = it > 0
            mzs.append(mz[keep])
            ints.append(it[keep].astype(np.float32))
            scans.append(np.full(int(keep.sum()), k, dtype=np.int32))
            rts.append(float(rt[i]) if rt[i] == rt[i] else float(k))
            k += 1
    if not mzs:
        return MS1Peaks(np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.float32), np.zeros(0))
    return MS1Peaks(np.concatenate(scans), np.concatenate(mzs), np.concatenate(ints), np.asarray(rts))


# --------------------------------------------------------------------------- detection
def _mass_traces(peaks: MS1Peaks, p: FeatureParams) -> list[np.ndarray]:
    """Index arrays (into ``peaks``) of each mass trace, scan-ordered, one centroid per scan."""
    if not len(peaks.mz):
        return []
    order = np.argsort(peaks.mz, kind="stable")
    mz = peaks.mz[order]
    gaps = np.diff(mz) / mz[1:] * 1e6 > p.mz_tolerance_ppm
    bin_id = np.concatenate([[0], np.cumsum(gaps)])
    scan = peaks.scan[order]
    inten = peaks.intensity[order]
    # within a bin and scan keep the most intense centroid: sort by (bin, scan, -intensity)
    o2 = np.lexsort((-inten, scan, bin_id))
    b, s = bin_id[o2], scan[o2]
    first = np.concatenate([[True], (b[1:] != b[:-1]) | (s[1:] != s[:-1])])
    o2, b, s = o2[first], b[first], s[first]
    # split a bin into traces where more than max_gap_scans scans are missing
    new_trace = np.concatenate([[True], (b[1:] != b[:-1]) | (s[1:] - s[:-1] > p.max_gap_scans + 1)])
    starts = np.flatnonzero(new_trace)
    ends = np.append(starts[1:], len(o2))
    idx = order[o2]
    return [idx[a:e] for a, e in zip(starts, ends) if e - a >= p.min_scans]


# Gaussian kernel, sigma = one scan (numpy instead of scipy: each rule is a fresh process and
# importing scipy.signal/ndimage costs seconds there)
_KERNEL = np.exp(-0.5 * np.arange(-4, 5) ** 2)
_KERNEL /= _KERNEL.sum()


def _noise_floor(intensity: np.ndarray) -> float:
    # the weakest centroids of a run are its noise (instruments threshold just above it)
    return float(np.percentile(intensity, 10)) if len(intensity) else 1.0


def _peaks_of_trace(tr: np.ndarray, peaks: MS1Peaks, p: FeatureParams, floor: float) -> list[dict]:
    scans = peaks.scan[tr]
    first, last = int(scans[0]), int(scans[-1])
    n = last - first + 1
    y = np.zeros(n)
    y[scans - first] = peaks.intensity[tr]
    mz_dense = np.zeros(n)
    mz_dense[scans - first] = peaks.mz[tr]
    rt = peaks.rt[first:last + 1]
    smooth = np.convolve(np.pad(y, _KERNEL.size // 2), _KERNEL, mode="valid") if n >= 3 else y
    baseline = float(np.percentile(y[y > 0], 25)) if (y > 0).sum() >= 10 else 0.0
    padded = np.concatenate([[0.0], smooth, [0.0]])
    # local maxima; a flat top counts once, at its first point
    cand = np.flatnonzero((padded[1:-1] > padded[:-2]) & (padded[1:-1] >= padded[2:]))
    out = []
    for apex_s in cand:
        lo = apex_s
        while lo > 0 and smooth[lo - 1] < smooth[lo] and y[lo - 1] > 0:
            lo -= 1
        hi = apex_s
        while hi < n - 1 and smooth[hi + 1] < smooth[hi] and y[hi + 1] > 0:
            hi += 1
        seg = y[lo:hi + 1]
        n_scans = int((seg > 0).sum())
        if n_scans < p.min_scans:
            continue
        apex = lo + int(np.argmax(seg))
        height = float(y[apex])
        outside = np.concatenate([y[:lo], y[hi + 1:]])
        outside = outside[outside > 0]
        mad_noise = 1.4826 * float(np.median(np.abs(outside - np.median(outside)))) if len(outside) >= 5 else 0.0
        noise = max(mad_noise, floor)
        snr = (height - baseline) / noise
        if height < p.min_height or snr < p.min_snr:
            continue
        fwhm = _fwhm(rt[lo:hi + 1], seg, baseline + (height - baseline) / 2, apex - lo)
        if fwhm is None or not (p.min_fwhm_s <= fwhm <= p.max_fwhm_s):
            continue
        w = seg[seg > 0]
        out.append({
            "mz": float(np.sum(mz_dense[lo:hi + 1][seg > 0] * w) / np.sum(w)),
            "rt_apex_s": float(rt[apex]), "rt_start_s": float(rt[lo]), "rt_end_s": float(rt[hi]),
            "height": height, "area": float(np.trapezoid(seg, rt[lo:hi + 1])) if hi > lo else 0.0,
            "fwhm_s": float(fwhm), "snr": float(snr), "n_scans": n_scans,
        })
    return out


def _fwhm(rt: np.ndarray, y: np.ndarray, half: float, apex: int) -> float | None:
    """Width at ``half`` by linear interpolation on both flanks (None if a flank never drops)."""
    left = apex
    while left > 0 and y[left - 1] >= half:
        left -= 1
    right = apex
    while right < len(y) - 1 and y[right + 1] >= half:
        right += 1
    if left == 0 and y[0] >= half:
        t_left = rt[0]
    else:
        x0, x1, y0, y1 = rt[left - 1], rt[left], y[left - 1], y[left]
        t_left = x0 + (half - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else x1
    if right == len(y) - 1 and y[-1] >= half:
        t_right = rt[-1]
    else:
        x0, x1, y0, y1 = rt[right], rt[right + 1], y[right], y[right + 1]
        t_right = x0 + (y0 - half) * (x1 - x0) / (y0 - y1) if y1 != y0 else x0
    width = float(t_right - t_left)
    return width if width > 0 else None


def detect_features(*, spectra: str | Path, out: str | Path, params: FeatureParams | dict | None = None,
                    run: str | None = None) -> int:
    """Detect chromatographic peaks (features) of one run; write them to ``out`` (Parquet).

    Returns the number of features.  Columns: :data:`PEAK_SCHEMA`.
    """
    p = params if isinstance(params, FeatureParams) else FeatureParams.from_block(params)
    spectra = Path(spectra)
    if run is None:
        names = pq.read_table(spectra, columns=["run"]).column("run")
        run = names[0].as_py() if len(names) else spectra.stem
    peaks = read_ms1(spectra)
    floor = _noise_floor(peaks.intensity)
    rows: list[dict] = []
    for tr in _mass_traces(peaks, p):
        rows.extend(_peaks_of_trace(tr, peaks, p, floor))
    rows.sort(key=lambda r: (r["mz"], r["rt_apex_s"]))
    for i, r in enumerate(rows):
        r["run"], r["peak_id"] = run, i
    schema = PEAK_SCHEMA.with_metadata({**PEAK_SCHEMA.metadata, b"binds:run": run.encode()})
    table = pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    log.info("%s: %d MS1 scans, %d centroids, %d features", run, len(peaks.rt), len(peaks.mz), len(rows))
    return len(rows)


# --------------------------------------------------------------------------- grouping
def group_features(*, peak_tables: list[str | Path], features_out: str | Path, peaks_out: str | Path,
                   params: FeatureParams | dict | None = None, qc_out: str | Path | None = None) -> dict:
    """Group the features of several runs; write the feature x run matrix and the long peak table.

    ``features_out`` (mzTab-M SMF-like): ``SMF_ID``, ``exp_mass_to_charge``,
    ``retention_time_in_seconds`` (median apex), ``retention_time_in_seconds_start`` / ``_end``,
    ``n_runs``, then ``abundance_assay[<run>]`` (peak area, null where not found) per run.
    ``peaks_out``: every run's peaks with the ``SMF_ID`` of their group.
    Returns QC figures (feature counts, RT drift of each run against the group medians), also
    written to ``qc_out`` as JSON when given.
    """
    p = params if isinstance(params, FeatureParams) else FeatureParams.from_block(params)
    tables = [pq.read_table(t) for t in peak_tables]
    # the run name travels in the table's metadata, so a run without any feature keeps its column
    runs = [(t.schema.metadata or {}).get(b"binds:run", Path(f).stem.encode()).decode()
            for t, f in zip(tables, peak_tables)]
    tables = [t.replace_schema_metadata(PEAK_SCHEMA.metadata) for t in tables]
    allp = pa.concat_tables(tables).to_pandas() if tables else PEAK_SCHEMA.empty_table().to_pandas()
    run_idx = {r: i for i, r in enumerate(runs)}
    n = len(allp)
    group = np.full(n, -1, dtype=np.int64)
    mz = allp["mz"].to_numpy() if n else np.zeros(0)
    rt = allp["rt_apex_s"].to_numpy() if n else np.zeros(0)
    height = allp["height"].to_numpy() if n else np.zeros(0)
    ridx = allp["run"].map(run_idx).to_numpy() if n else np.zeros(0, int)
    # per run: indices sorted by m/z, for a searchsorted window per seed
    by_run = {}
    for r in range(len(runs)):
        ii = np.flatnonzero(ridx == r)
        ii = ii[np.argsort(mz[ii], kind="stable")]
        by_run[r] = (ii, mz[ii])
    next_id = 0
    for seed in np.lexsort((rt, mz, -height)):
        if group[seed] >= 0:
            continue
        group[seed] = next_id
        tol = mz[seed] * p.align_mz_tolerance_ppm * 1e-6
        for r, (ii, mzs) in by_run.items():
            if r == ridx[seed]:
                continue
            a, b = np.searchsorted(mzs, mz[seed] - tol), np.searchsorted(mzs, mz[seed] + tol, side="right")
            cand = ii[a:b]
            cand = cand[(group[cand] < 0) & (np.abs(rt[cand] - rt[seed]) <= p.align_rt_tolerance_s)]
            if len(cand):
                d = np.abs(mz[cand] - mz[seed]) / tol + np.abs(rt[cand] - rt[seed]) / p.align_rt_tolerance_s
                group[cand[np.argmin(d)]] = next_id
        next_id += 1
    # number the groups by m/z then RT so SMF_IDs are stable and readable
    rows = []
    for g in range(next_id):
        m = group == g
        w = height[m]
        rows.append((g, float(np.sum(mz[m] * w) / np.sum(w)), float(np.median(rt[m]))))
    rows.sort(key=lambda x: (x[1], x[2]))
    renumber = np.zeros(max(next_id, 1), dtype=np.int64)
    for new, (g, _, _) in enumerate(rows, start=1):
        renumber[g] = new
    smf = renumber[group] if n else np.zeros(0, np.int64)
    allp["SMF_ID"] = smf
    cols: dict[str, list] = {"SMF_ID": [], "exp_mass_to_charge": [], "retention_time_in_seconds": [],
                             "retention_time_in_seconds_start": [], "retention_time_in_seconds_end": [],
                             "n_runs": []}
    abundance = {r: [] for r in runs}
    drift: dict[str, list[float]] = {r: [] for r in runs}
    for new, (g, gmz, grt) in enumerate(rows, start=1):
        m = np.flatnonzero(group == g)
        cols["SMF_ID"].append(new)
        cols["exp_mass_to_charge"].append(gmz)
        cols["retention_time_in_seconds"].append(grt)
        cols["retention_time_in_seconds_start"].append(float(allp["rt_start_s"].to_numpy()[m].min()))
        cols["retention_time_in_seconds_end"].append(float(allp["rt_end_s"].to_numpy()[m].max()))
        cols["n_runs"].append(len(m))
        areas = dict.fromkeys(runs)
        for i in m:
            areas[runs[ridx[i]]] = float(allp["area"].iat[i])
            if len(m) == len(runs) and len(runs) > 1:
                drift[runs[ridx[i]]].append(float(rt[i] - grt))
        for r in runs:
            abundance[r].append(areas[r])
    fields = [pa.field("SMF_ID", pa.int64()), pa.field("exp_mass_to_charge", pa.float64()),
              pa.field("retention_time_in_seconds", pa.float64()),
              pa.field("retention_time_in_seconds_start", pa.float64()),
              pa.field("retention_time_in_seconds_end", pa.float64()), pa.field("n_runs", pa.int32())]
    fields += [pa.field(f"abundance_assay[{r}]", pa.float64()) for r in runs]
    docs = {
        "SMF_ID": "feature group id (mzTab-M SMF_ID), numbered by m/z then RT",
        "exp_mass_to_charge": "height-weighted mean m/z of the group's peaks (MS:1000040)",
        "retention_time_in_seconds": "median apex retention time of the group's peaks",
        "retention_time_in_seconds_start": "earliest peak start of the group",
        "retention_time_in_seconds_end": "latest peak end of the group",
        "n_runs": "runs in which the feature was found",
        "abundance_assay[<run>]": "peak area in that run (counts x s), null where not found",
    }
    schema = pa.schema(fields, metadata={b"binds:columns": json.dumps(docs, sort_keys=True).encode(),
                                         b"binds:runs": json.dumps(runs).encode()})
    data = {**cols, **{f"abundance_assay[{r}]": abundance[r] for r in runs}}
    for pth in (features_out, peaks_out):
        Path(pth).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict(data, schema=schema), features_out, compression="zstd")
    long_schema = PEAK_SCHEMA.append(pa.field("SMF_ID", pa.int64()))
    allp = allp.sort_values(["run", "peak_id"], kind="stable") if n else allp
    pq.write_table(pa.Table.from_pandas(allp, schema=long_schema, preserve_index=False), peaks_out,
                   compression="zstd")
    rt_drift = {r: (float(np.median(v)) if v else None) for r, v in drift.items()}
    qc = {"n_features": next_id, "n_features_all_runs": int(sum(1 for c in cols["n_runs"] if c == len(runs))),
            "features_per_run": {r: int((ridx == i).sum()) for r, i in run_idx.items()},
            "rt_drift_s": rt_drift}
    if qc_out:
        write_json(qc_out, qc)
    return qc


def match_fraction(ours_mz: np.ndarray, ours_rt: np.ndarray, ref_mz: np.ndarray, ref_rt: np.ndarray, *,
                   ppm: float = 10.0, rt_s: float = 10.0) -> float:
    """Fraction of reference features with one of ours within ``ppm`` and ``rt_s``."""
    if not len(ref_mz):
        return float("nan")
    order = np.argsort(ours_mz)
    mz_sorted, rt_sorted = ours_mz[order], ours_rt[order]
    hit = 0
    for m, t in zip(ref_mz, ref_rt):
        tol = m * ppm * 1e-6
        a, b = np.searchsorted(mz_sorted, m - tol), np.searchsorted(mz_sorted, m + tol, side="right")
        if a < b and np.any(np.abs(rt_sorted[a:b] - t) <= rt_s):
            hit += 1
    return hit / len(ref_mz)


__all__ = ["FeatureParams", "detect_features", "group_features", "match_fraction", "read_ms1",
           "centroid_profile"]
