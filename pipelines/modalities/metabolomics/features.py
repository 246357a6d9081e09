"""Untargeted feature detection on MS1 (in the manner of OpenMS FeatureFinderMetabo / XCMS centWave)
and grouping of the features of several runs into a feature x sample matrix.

Per run (:func:`detect_features`):

1. MS1 spectra are read from the run's spectra Parquet, profile spectra centroided first
   (local maxima, m/z = intensity-weighted mean of the apex and its two neighbours), all of a
   row group at once;
2. **mass traces**, **chromatographic peaks** (prominence over the valleys against a noise
   estimate that other peaks on the trace cannot inflate; FWHM on the smoothed profile):
   :mod:`.peaks`;
3. **isotope groups** (13C spacing for charge 1-3, co-elution, intensity-ratio plausibility):
   :mod:`.isotopes`; each group is a **feature**, reported at its monoisotopic peak: m/z, RT apex
   / start / end, height, area (trapezoid of the raw intensities over RT, counts x s), FWHM,
   S/N, charge, and the m/z and height of every isotope.

Across runs (:func:`group_features`): greedy, most intense first: a feature takes the closest
unassigned feature of each other run within ``align_mz_tolerance_ppm`` and
``align_rt_tolerance_s``.  The result is mzTab-M SMF-like: one row per feature group with
``abundance_assay[<run>]`` columns (the area of the monoisotopic peak).

Column meanings are Arrow field metadata (``description``, ``unit``); the schema metadata
``binds.format_version`` is 2 (1: one feature per mass trace, before isotope grouping).
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.modalities.metabolomics.isotopes import Features, group_isotopes
from pipelines.modalities.metabolomics.peaks import (
    BASELINE_MARGIN,
    FLOOR_SIGMAS,
    SUPPRESSED_FRACTION,
    UNRESOLVED_PPM,
    Peaks,
    above_baseline,
    mass_traces,
    merge_unresolved,
    mz_noise_floor,
    subset_peaks,
    suppressed_scans,
    suppressed_stretches,
    trace_peaks,
    track_traces,
)
from pipelines.toolkit.stage import write_json
from pipelines.toolkit.tables import columns_for, documented_schema, write_table

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """Parameters of feature detection and grouping (the ``features`` block of experiment.yaml)."""

    enabled: bool = True
    mz_tolerance_ppm: float = 10.0
    # centroids of one scan closer than this are one ion (below any LC-MS instrument's peak
    # width; see peaks.UNRESOLVED_PPM); 0 keeps every centroid
    unresolved_ppm: float = UNRESOLVED_PPM
    min_scans: int = 5
    max_gap_scans: int = 2
    # a scan with fewer than this fraction of its neighbours' centroids is ion-suppressed
    # (see peaks.SUPPRESSED_FRACTION); 0: none is
    suppressed_fraction: float = SUPPRESSED_FRACTION
    min_snr: float = 5.0
    min_height: float = 1000.0
    min_fwhm_s: float = 1.0
    max_fwhm_s: float = 60.0
    # a peak must rise above the baseline of the ion current at its m/z by this x that
    # baseline (see peaks.BASELINE_MARGIN); a negative value turns the test off
    baseline_margin: float = BASELINE_MARGIN
    # "one-ion" (peaks.track_traces: centroids given to open traces by their predicted m/z,
    # one to one) or "scan-to-scan" (peaks.mass_traces: mutual nearest links, before issue 27)
    trace_linking: str = "one-ion"
    align_rt_tolerance_s: float = 10.0
    align_mz_tolerance_ppm: float = 10.0

    @classmethod
    def from_block(cls, block: dict | None) -> FeatureParams:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (block or {}).items() if k in known})


FORMAT_VERSION = b"2"  # 2: a feature is an isotope group (monoisotopic m/z), not a trace
# schema metadata of a run's feature table: its ion-suppressed MS1 scans (count, RT stretches)
SUPPRESSION_KEY = b"binds:ion_suppression"


def doc_field(name: str, typ: pa.DataType, description: str, unit: str = "") -> pa.Field:
    """An Arrow field carrying its description and unit as field metadata (the project's convention)."""
    meta = {b"description": description.encode()}
    if unit:
        meta[b"unit"] = unit.encode()
    return pa.field(name, typ, metadata=meta)


FEATURES_FORMAT = "binds-metabolomics-features"
FEATURE_PEAKS_FORMAT = "binds-metabolomics-feature-peaks"
# the columns' descriptions and units are in metadata/columns.tsv (toolkit.tables writes them)
PEAK_SCHEMA = documented_schema(
    pa.schema(
        [
            ("run", pa.string()),
            ("sample_id", pa.string()),
            ("peak_id", pa.int32()),
            ("mz", pa.float64()),
            ("rt_apex_s", pa.float64()),
            ("rt_start_s", pa.float64()),
            ("rt_end_s", pa.float64()),
            ("height", pa.float64()),
            ("area", pa.float64()),
            ("fwhm_s", pa.float64()),
            ("snr", pa.float64()),
            ("n_scans", pa.int32()),
            ("charge", pa.int16()),
            ("n_isotopes", pa.int16()),
            ("isotope_mz", pa.list_(pa.float64())),
            ("isotope_height", pa.list_(pa.float64())),
            ("area_isotopes", pa.float64()),
        ]
    ),
    format_name=FEATURE_PEAKS_FORMAT,
    format_version=FORMAT_VERSION.decode(),
    columns=columns_for(FEATURE_PEAKS_FORMAT),
)


def _write(table: pa.Table, path: str | Path, format_name: str) -> Path:
    return write_table(
        table,
        path,
        format_name=format_name,
        format_version=FORMAT_VERSION.decode(),
        columns=columns_for(format_name),
    )


# --------------------------------------------------------------------------- reading MS1
def centroid_profile(mz: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid one profile spectrum: local maxima, m/z weighted over the apex and its neighbours."""
    c_mz, c_int, _ = _centroid_concatenated(
        np.asarray(mz, np.float64), np.asarray(intensity), np.zeros(len(mz), np.int64)
    )
    return c_mz, c_int


def _centroid_concatenated(mz: np.ndarray, y: np.ndarray, spec: np.ndarray):
    """Centroid many profile spectra laid end to end (``spec`` = spectrum of each point)."""
    if len(mz) < 3:
        keep = np.zeros(len(mz), bool)
        return mz[keep], y[keep].astype(np.float32), spec[keep]
    y = y.astype(np.float64)
    same_l = spec[1:-1] == spec[:-2]
    same_r = spec[1:-1] == spec[2:]
    apex = (
        np.flatnonzero(same_l & same_r & (y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:]) & (y[1:-1] > 0))
        + 1
    )
    w = y[apex - 1] + y[apex] + y[apex + 1]
    c_mz = (mz[apex - 1] * y[apex - 1] + mz[apex] * y[apex] + mz[apex + 1] * y[apex + 1]) / w
    return c_mz, y[apex].astype(np.float32), spec[apex]


@dataclass(slots=True)
class MS1Peaks:
    """All MS1 centroids of one run: scan number, m/z, intensity; and the RT of each scan.

    Sorted by scan, then m/z.  ``profile``: most MS1 spectra were profile and were centroided
    here, so no instrument threshold was applied and the run's lowest centroids are the noise's
    own maxima (in centroided spectra they sit at the instrument's detection threshold).
    """

    scan: np.ndarray
    mz: np.ndarray
    intensity: np.ndarray
    rt: np.ndarray
    profile: bool = False


def read_ms1(spectra: str | Path, *, centroid: bool = True) -> MS1Peaks:
    """MS1 centroids of one run's spectra Parquet, row group by row group, without a loop over spectra."""
    pf = pq.ParquetFile(spectra)
    scans, mzs, ints, rts = [], [], [], []
    k = n_profile = 0
    for rg in range(pf.num_row_groups):
        t = pf.read_row_group(rg, columns=["ms_level", "rt_s", "centroided", "mz", "intensity"])
        levels = t.column("ms_level").to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(levels == 1)
        if not len(rows):
            continue
        t = t.take(pa.array(rows))
        rt = t.column("rt_s").to_numpy(zero_copy_only=False).astype(np.float64)
        n_rows = len(rows)
        profile = (
            pc.equal(t.column("centroided"), False).fill_null(False).to_numpy(zero_copy_only=False)
        )
        mz_col, int_col = t.column("mz").combine_chunks(), t.column("intensity").combine_chunks()
        off = mz_col.offsets.to_numpy()
        mz_all = mz_col.values.to_numpy()[off[0] : off[-1]].astype(np.float64, copy=False)
        int_all = int_col.values.to_numpy()[off[0] : off[-1]]
        spec = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(off))
        n_profile += int(profile.sum())
        if centroid and profile.any():
            is_prof = profile[spec]
            c_mz, c_int, c_spec = _centroid_concatenated(
                mz_all[is_prof], int_all[is_prof], spec[is_prof]
            )
            keep = ~is_prof
            mz_all = np.concatenate([mz_all[keep], c_mz])
            int_all = np.concatenate([int_all[keep].astype(np.float32), c_int])
            spec = np.concatenate([spec[keep], c_spec])
        keep = int_all > 0
        mz_all, int_all, spec = mz_all[keep], int_all[keep].astype(np.float32), spec[keep]
        mzs.append(mz_all)
        ints.append(int_all)
        scans.append((spec + k).astype(np.int32))
        rts.append(np.where(rt == rt, rt, np.arange(k, k + n_rows, dtype=np.float64)))
        k += n_rows
    if not mzs:
        return MS1Peaks(np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.float32), np.zeros(0))
    scan, mz, inten = np.concatenate(scans), np.concatenate(mzs), np.concatenate(ints)
    # sorted by (scan, m/z)?  mzML spectra nearly always are; sort only when they are not
    if len(mz) > 1:
        ds, dm = np.diff(scan), np.diff(mz)
        if not np.all((ds > 0) | ((ds == 0) & (dm >= 0))):
            o = np.lexsort((mz, scan))
            scan, mz, inten = scan[o], mz[o], inten[o]
    return MS1Peaks(scan, mz, inten, np.concatenate(rts), profile=centroid and 2 * n_profile > k)


# --------------------------------------------------------------------------- detection
# Memory: detection needs ~250 bytes per centroid of temporaries, so a long run is processed in
# m/z bands of at most this many centroids.  Bands overlap by BAND_MARGIN_MZ on each side (a
# trace is a few ppm wide, an isotope group at most 5 Da): a band keeps the features whose
# monoisotopic m/z is inside it, and each has all its traces and isotopes in the band.
BAND_CENTROIDS = 2_000_000
BAND_MARGIN_MZ = 6.0


def _noise_floor_of_run(ms1: MS1Peaks):
    # from every k-th centroid: the floor is a low quantile, a million centroids pin it down
    step = max(1, len(ms1.mz) // 1_000_000)
    return mz_noise_floor(ms1.mz[::step], ms1.intensity[::step])


def unresolved_merged(ms1: MS1Peaks, p: FeatureParams) -> MS1Peaks:
    """``ms1`` with the centroids of a scan closer than ``p.unresolved_ppm`` merged into one."""
    scan, mz, inten = merge_unresolved(ms1.scan, ms1.mz, ms1.intensity, ppm=p.unresolved_ppm)
    if scan is ms1.scan:
        return ms1
    return MS1Peaks(scan, mz, inten, ms1.rt, ms1.profile)


def link_traces(
    ms1: MS1Peaks, p: FeatureParams, *, suppressed: np.ndarray, min_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """The mass traces of ``ms1``'s centroids, linked as ``p.trace_linking`` says: (order,
    starts) as :func:`.peaks.track_traces` returns them."""
    if p.trace_linking == "scan-to-scan":
        return mass_traces(
            ms1.scan,
            ms1.mz,
            ppm=p.mz_tolerance_ppm,
            max_gap=p.max_gap_scans,
            min_points=min_points,
            suppressed=suppressed,
        )
    return track_traces(
        ms1.scan,
        ms1.mz,
        n_scans=len(ms1.rt),
        ppm=p.mz_tolerance_ppm,
        max_gap=p.max_gap_scans,
        min_points=min_points,
        suppressed=suppressed,
    )


def on_ion_current(
    pk: Peaks, ms1: MS1Peaks, p: FeatureParams, *, suppressed: np.ndarray
) -> np.ndarray:
    """Per peak of ``ms1``'s traces: it passes the baseline test (:func:`.peaks.above_baseline`
    with ``p``'s tolerance and margin)."""
    return above_baseline(
        pk,
        scan=ms1.scan,
        mz=ms1.mz,
        intensity=ms1.intensity,
        rt=ms1.rt,
        ppm=p.mz_tolerance_ppm,
        margin=p.baseline_margin,
        suppressed=suppressed,
    )


def find_features(
    ms1: MS1Peaks, p: FeatureParams, noise=None, suppressed: np.ndarray | None = None
) -> tuple[Peaks, Features]:
    """Mass traces -> chromatographic peaks -> isotope groups of MS1 centroids (one band).

    ``noise`` (the run's noise floor) and ``suppressed`` (its ion-suppressed scans) are the
    whole run's, measured on ``ms1`` when not given (it must then be the whole run).
    """
    edges, floor = noise if noise is not None else _noise_floor_of_run(ms1)
    if suppressed is None:
        suppressed = suppressed_scans(ms1.scan, ms1.rt, fraction=p.suppressed_fraction)
    ms1 = unresolved_merged(ms1, p)
    order, starts = link_traces(ms1, p, suppressed=suppressed, min_points=p.min_scans)
    pk = trace_peaks(
        order,
        starts,
        scan=ms1.scan,
        mz=ms1.mz,
        intensity=ms1.intensity,
        rt=ms1.rt,
        noise_edges=edges,
        noise_floor=floor,
        # the floor of centroided spectra is the instrument's threshold (~3 sd of the noise);
        # of spectra centroided here, it is the noise itself
        floor_sigmas=1.0 if ms1.profile else FLOOR_SIGMAS,
        min_snr=p.min_snr,
        min_height=p.min_height,
        min_scans=p.min_scans,
        min_fwhm_s=p.min_fwhm_s,
        max_fwhm_s=p.max_fwhm_s,
        suppressed=suppressed,
        wander_is_noise=p.baseline_margin < 0,
    )
    pk = subset_peaks(pk, on_ion_current(pk, ms1, p, suppressed=suppressed))
    return pk, group_isotopes(pk, ppm=p.mz_tolerance_ppm)


def feature_table(pk: Peaks, feats: Features, *, run: str) -> pa.Table:
    """The run's features as a :data:`PEAK_SCHEMA` table, ordered by m/z then RT."""
    m = feats.mono
    order = np.lexsort((pk.rt_apex[m], pk.mz[m]))
    m = m[order]
    members = [feats.members[i] for i in order]
    n_iso = np.array([len(g) for g in members], np.int16)
    flat = np.concatenate(members) if members else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_iso, dtype=np.int64)]).astype(np.int32)
    charge = feats.charge[order]
    area_iso = np.add.reduceat(pk.area[flat], offsets[:-1]) if len(flat) else np.zeros(0)
    schema = PEAK_SCHEMA.with_metadata({**PEAK_SCHEMA.metadata, b"binds:run": run.encode()})
    cols = {
        "run": pa.array([run] * len(m), pa.string()),
        "sample_id": pa.nulls(len(m), pa.string()),  # set by detect_features
        "peak_id": pa.array(np.arange(len(m), dtype=np.int32)),
        "mz": pk.mz[m],
        "rt_apex_s": pk.rt_apex[m],
        "rt_start_s": pk.rt_start[m],
        "rt_end_s": pk.rt_end[m],
        "height": pk.height[m],
        "area": pk.area[m],
        "fwhm_s": pk.fwhm[m],
        "snr": pk.snr[m],
        "n_scans": pk.n_scans[m].astype(np.int32),
        "charge": pa.array(charge.astype(np.int16), mask=charge == 0),
        "n_isotopes": n_iso,
        "isotope_mz": pa.ListArray.from_arrays(pa.array(offsets), pa.array(pk.mz[flat])),
        "isotope_height": pa.ListArray.from_arrays(pa.array(offsets), pa.array(pk.height[flat])),
        "area_isotopes": area_iso,
    }
    return pa.Table.from_arrays(
        [pa.array(cols[f.name]).cast(f.type) for f in schema], schema=schema
    )


def features_of_run(ms1: MS1Peaks, p: FeatureParams, *, run: str) -> tuple[pa.Table, int]:
    """The run's feature table (:data:`PEAK_SCHEMA`) and its number of peaks, band by band in m/z."""
    noise = _noise_floor_of_run(ms1)
    suppressed = suppressed_scans(ms1.scan, ms1.rt, fraction=p.suppressed_fraction)
    if suppressed.any():
        log.info("%s: %d of %d MS1 scans ion-suppressed", run, int(suppressed.sum()), len(ms1.rt))
    table, n_peaks = _features_in_bands(ms1, p, run=run, noise=noise, suppressed=suppressed)
    # for the QC: how many scans, and where (the researcher sees where the run lost ions)
    note = {
        "n_scans": int(suppressed.sum()),
        "stretches_rt_s": [
            [round(a, 3), round(b, 3)] for a, b in suppressed_stretches(suppressed, ms1.rt)
        ],
    }
    meta = {**(table.schema.metadata or {}), SUPPRESSION_KEY: json.dumps(note).encode()}
    return table.replace_schema_metadata(meta), n_peaks


def _features_in_bands(
    ms1: MS1Peaks, p: FeatureParams, *, run: str, noise, suppressed: np.ndarray
) -> tuple[pa.Table, int]:
    n_bands = max(1, -(-len(ms1.mz) // BAND_CENTROIDS))
    if n_bands == 1:
        pk, feats = find_features(ms1, p, noise, suppressed)
        return feature_table(pk, feats, run=run), len(pk)
    step = max(1, len(ms1.mz) // 1_000_000)
    edges = np.quantile(ms1.mz[::step], np.linspace(0, 1, n_bands + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    tables, n_peaks = [], 0
    for lo, hi in itertools.pairwise(edges):
        sel = np.flatnonzero((ms1.mz >= lo - BAND_MARGIN_MZ) & (ms1.mz < hi + BAND_MARGIN_MZ))
        band = MS1Peaks(ms1.scan[sel], ms1.mz[sel], ms1.intensity[sel], ms1.rt, ms1.profile)
        del sel
        pk, feats = find_features(band, p, noise, suppressed)
        mono_mz = pk.mz[feats.mono]
        inside = (mono_mz >= lo) & (mono_mz < hi)
        n_peaks += int(sum(len(feats.members[i]) for i in np.flatnonzero(inside)))
        kept = Features(
            feats.mono[inside],
            feats.charge[inside],
            [feats.members[i] for i in np.flatnonzero(inside)],
        )
        tables.append(feature_table(pk, kept, run=run))
        del band, pk, feats
    table = pa.concat_tables(tables)
    order = np.lexsort((table.column("rt_apex_s").to_numpy(), table.column("mz").to_numpy()))
    table = table.take(pa.array(order))
    table = table.set_column(
        table.schema.get_field_index("peak_id"),
        table.schema.field("peak_id"),
        pa.array(np.arange(table.num_rows, dtype=np.int32)),
    )
    return table, n_peaks


def detect_features(
    *,
    spectra: str | Path,
    out: str | Path,
    params: FeatureParams | dict | None = None,
    run: str | None = None,
    sample_id: str | None = None,
) -> int:
    """Detect the features (isotope groups of chromatographic peaks) of one run; write ``out`` (Parquet).

    Returns the number of features.  Columns: :data:`PEAK_SCHEMA`; ``sample_id`` (the
    experiment.yaml sample of the run, null when None) fills its column.
    """
    p = params if isinstance(params, FeatureParams) else FeatureParams.from_block(params)
    spectra = Path(spectra)
    if run is None:
        names = pq.read_table(spectra, columns=["run"]).column("run")
        run = names[0].as_py() if len(names) else spectra.stem
    ms1 = read_ms1(spectra)
    table, n_peaks = features_of_run(ms1, p, run=run)
    table = with_sample_id(table, sample_id)
    _write(table, out, FEATURE_PEAKS_FORMAT)
    log.info(
        "%s: %d MS1 scans, %d centroids, %d peaks, %d features (%d with isotopes)",
        run,
        len(ms1.rt),
        len(ms1.mz),
        n_peaks,
        table.num_rows,
        int((table.column("n_isotopes").to_numpy() > 1).sum()),
    )
    return table.num_rows


def _sample_of(table: pa.Table) -> str | None:
    ids = pc.unique(table.column("sample_id").drop_null()).to_pylist()
    return ids[0] if ids else None


def _conform(table: pa.Table) -> pa.Table:
    """A per-run table in :data:`PEAK_SCHEMA` (one written before sample links: null ids)."""
    if "sample_id" not in table.schema.names:
        table = table.add_column(1, "sample_id", pa.nulls(table.num_rows, pa.string()))
    return table.select(PEAK_SCHEMA.names).cast(PEAK_SCHEMA)


def with_sample_id(table: pa.Table, sample_id: str | None) -> pa.Table:
    """``table`` with its ``sample_id`` column set to one value (the run's sample)."""
    i = table.schema.get_field_index("sample_id")
    column = pa.array([sample_id] * table.num_rows, pa.string())
    return table.set_column(i, table.schema.field(i), column)


# --------------------------------------------------------------------------- grouping
def _align_peaks(
    mz: np.ndarray,
    rt: np.ndarray,
    height: np.ndarray,
    run_of: np.ndarray,
    *,
    n_runs: int,
    mz_ppm: float,
    rt_s: float,
) -> tuple[np.ndarray, int]:
    """Group the peaks of several runs: (group of each peak, number of groups).

    Greedy, the most intense peak not yet grouped first (ties: by m/z, then RT): it seeds a
    group and takes, from every other run, the ungrouped peak within ``mz_ppm`` and ``rt_s``
    nearest to it (on |dm/z| / tolerance + |dRT| / tolerance).
    """
    group = np.full(len(mz), -1, dtype=np.int64)
    # per run: indices sorted by m/z, for a searchsorted window per seed
    by_run = {}
    for r in range(n_runs):
        ii = np.flatnonzero(run_of == r)
        ii = ii[np.argsort(mz[ii], kind="stable")]
        by_run[r] = (ii, mz[ii])
    next_id = 0
    for seed in np.lexsort((rt, mz, -height)):
        if group[seed] >= 0:
            continue
        group[seed] = next_id
        tol = mz[seed] * mz_ppm * 1e-6
        for r, (ii, mzs) in by_run.items():
            if r == run_of[seed]:
                continue
            a, b = (
                np.searchsorted(mzs, mz[seed] - tol),
                np.searchsorted(mzs, mz[seed] + tol, side="right"),
            )
            cand = ii[a:b]
            cand = cand[(group[cand] < 0) & (np.abs(rt[cand] - rt[seed]) <= rt_s)]
            if len(cand):
                d = np.abs(mz[cand] - mz[seed]) / tol + np.abs(rt[cand] - rt[seed]) / rt_s
                group[cand[np.argmin(d)]] = next_id
        next_id += 1
    return group, next_id


def _groups_in_order(
    group: np.ndarray, n_groups: int, *, mz: np.ndarray, rt: np.ndarray, height: np.ndarray
) -> list[tuple[int, float, float]]:
    """(group, height-weighted m/z, median RT) of every group, by m/z then RT: the order of
    the SMF_IDs, so that they are stable and readable."""
    rows = []
    for g in range(n_groups):
        m = group == g
        w = height[m]
        rows.append((g, float(np.sum(mz[m] * w) / np.sum(w)), float(np.median(rt[m]))))
    rows.sort(key=lambda x: (x[1], x[2]))
    return rows


def _feature_rows(
    rows: list[tuple[int, float, float]],
    group: np.ndarray,
    *,
    peaks: pd.DataFrame,
    rt: np.ndarray,
    runs: list[str],
    run_of: np.ndarray,
) -> tuple[dict[str, list], dict[str, list[float]]]:
    """The feature x run matrix's columns (SMF_ID 1.. in the order of ``rows``; an
    ``abundance_assay[<run>]`` column per run), and per run the RT offsets of its peaks from
    their group's median RT (groups found in every run only); ``rt``: the peaks' apex RT."""
    cols: dict[str, list] = {
        "SMF_ID": [],
        "exp_mass_to_charge": [],
        "retention_time_in_seconds": [],
        "retention_time_in_seconds_start": [],
        "retention_time_in_seconds_end": [],
        "n_runs": [],
    }
    abundance = {r: [] for r in runs}
    drift: dict[str, list[float]] = {r: [] for r in runs}
    for new, (g, gmz, grt) in enumerate(rows, start=1):
        m = np.flatnonzero(group == g)
        cols["SMF_ID"].append(new)
        cols["exp_mass_to_charge"].append(gmz)
        cols["retention_time_in_seconds"].append(grt)
        cols["retention_time_in_seconds_start"].append(
            float(peaks["rt_start_s"].to_numpy()[m].min())
        )
        cols["retention_time_in_seconds_end"].append(float(peaks["rt_end_s"].to_numpy()[m].max()))
        cols["n_runs"].append(len(m))
        areas = dict.fromkeys(runs)
        for i in m:
            areas[runs[run_of[i]]] = float(peaks["area"].iat[i])
            if len(m) == len(runs) and len(runs) > 1:
                drift[runs[run_of[i]]].append(float(rt[i] - grt))
        for r in runs:
            abundance[r].append(areas[r])
    return {**cols, **{f"abundance_assay[{r}]": abundance[r] for r in runs}}, drift


def _features_schema(runs: list[str], run_sample: dict[str, str | None]) -> pa.Schema:
    """The feature x run matrix's schema; the runs and their samples in its metadata."""
    fields = [
        pa.field("SMF_ID", pa.int64()),
        pa.field("exp_mass_to_charge", pa.float64()),
        pa.field("retention_time_in_seconds", pa.float64()),
        pa.field("retention_time_in_seconds_start", pa.float64()),
        pa.field("retention_time_in_seconds_end", pa.float64()),
        pa.field("n_runs", pa.int32()),
    ]
    # each run's column names its sample in the field metadata (mzTab-M: assay -> sample)
    fields += [
        pa.field(
            f"abundance_assay[{r}]",
            pa.float64(),
            metadata={b"sample_id": sample.encode()} if (sample := run_sample[r]) else None,
        )
        for r in runs
    ]
    return pa.schema(
        fields,
        metadata={
            b"binds:runs": json.dumps(runs).encode(),
            b"binds:samples": json.dumps(run_sample, sort_keys=True).encode(),
        },
    )


def group_features(
    *,
    peak_tables: list[str | Path],
    features_out: str | Path,
    peaks_out: str | Path,
    params: FeatureParams | dict | None = None,
    qc_out: str | Path | None = None,
) -> dict:
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
    runs = [
        (t.schema.metadata or {}).get(b"binds:run", Path(f).stem.encode()).decode()
        for t, f in zip(tables, peak_tables, strict=False)
    ]
    suppression = {
        r: json.loads(t.schema.metadata[SUPPRESSION_KEY])
        for r, t in zip(runs, tables, strict=True)
        if SUPPRESSION_KEY in (t.schema.metadata or {})
    }
    tables = [_conform(t) for t in tables]
    allp = pa.concat_tables(tables).to_pandas() if tables else PEAK_SCHEMA.empty_table().to_pandas()
    run_idx = {r: i for i, r in enumerate(runs)}
    n = len(allp)
    mz = allp["mz"].to_numpy() if n else np.zeros(0)
    rt = allp["rt_apex_s"].to_numpy() if n else np.zeros(0)
    height = allp["height"].to_numpy() if n else np.zeros(0)
    ridx = allp["run"].map(run_idx).to_numpy() if n else np.zeros(0, int)
    group, n_groups = _align_peaks(
        mz,
        rt,
        height,
        ridx,
        n_runs=len(runs),
        mz_ppm=p.align_mz_tolerance_ppm,
        rt_s=p.align_rt_tolerance_s,
    )
    rows = _groups_in_order(group, n_groups, mz=mz, rt=rt, height=height)
    renumber = np.zeros(max(n_groups, 1), dtype=np.int64)
    for new, (g, _, _) in enumerate(rows, start=1):
        renumber[g] = new
    allp["SMF_ID"] = renumber[group] if n else np.zeros(0, np.int64)
    data, drift = _feature_rows(rows, group, peaks=allp, rt=rt, runs=runs, run_of=ridx)
    run_sample = {r: _sample_of(t) for r, t in zip(runs, tables, strict=True)}
    schema = _features_schema(runs, run_sample)
    _write(pa.Table.from_pydict(data, schema=schema), features_out, FEATURES_FORMAT)
    long_schema = PEAK_SCHEMA.append(pa.field("SMF_ID", pa.int64()))
    allp = allp.sort_values(["run", "peak_id"], kind="stable") if n else allp
    _write(
        pa.Table.from_pandas(allp, schema=long_schema, preserve_index=False),
        peaks_out,
        FEATURE_PEAKS_FORMAT,
    )
    qc = {
        "n_features": n_groups,
        "n_features_all_runs": int(sum(1 for c in data["n_runs"] if c == len(runs))),
        "features_per_run": {r: int((ridx == i).sum()) for r, i in run_idx.items()},
        "rt_drift_s": {r: (float(np.median(v)) if v else None) for r, v in drift.items()},
        "ion_suppressed_scans": {r: v["n_scans"] for r, v in suppression.items()},
        "ion_suppression_rt_s": {r: v["stretches_rt_s"] for r, v in suppression.items()},
    }
    if qc_out:
        write_json(qc_out, qc)
    return qc


__all__ = [
    "PEAK_SCHEMA",
    "FeatureParams",
    "MS1Peaks",
    "centroid_profile",
    "detect_features",
    "doc_field",
    "feature_table",
    "features_of_run",
    "find_features",
    "group_features",
    "link_traces",
    "on_ion_current",
    "read_ms1",
    "unresolved_merged",
    "with_sample_id",
]
