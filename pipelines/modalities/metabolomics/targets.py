"""Targeted quantification: a targets CSV -> extracted-ion chromatograms -> peak area per run.

The CSV (``targets.csv`` in the run folder, or the file named by ``metabolomics.targets``) has
one compound per row::

    name,formula,adduct,mz,rt_start_s,rt_end_s,ppm
    caffeine,C8H10N4O2,[M+H]+,,130,170,10
    leucine,,,132.10191,51,91,

``name`` and either ``mz`` or ``formula`` + ``adduct`` are required; an empty RT window means the
whole run, an empty ppm the experiment's ``target_ppm``.  For each target and run the MS1
signal within +-ppm of the target m/z is summed per scan (the XIC); the most intense
chromatographic peak of the XIC in the window (found as the untargeted features find theirs:
:func:`.peaks.xic_peak`) is integrated (trapezoid between its bounds), the observed m/z is the
intensity-weighted m/z of its points at or above half its apex, and the mass error
``(observed - theoretical) / theoretical * 1e6``.  ``area_window`` keeps the whole window's area.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import InputError, Problem, ProblemList
from pipelines.modalities.metabolomics.chem import ADDUCTS, target_mz
from pipelines.modalities.metabolomics.features import doc_field
from pipelines.modalities.metabolomics.peaks import xic_peak
from pipelines.toolkit.stage import write_json
from pipelines.toolkit.tables import columns_for, write_table

log = logging.getLogger(__name__)

MIN_POINTS = 3  # a compound counts as detected with signal in at least this many scans


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    mz: float
    formula: str | None
    adduct: str | None
    rt_start_s: float | None
    rt_end_s: float | None
    ppm: float


TARGET_SCHEMA = pa.schema(
    [
        doc_field("target", pa.string(), "compound name from the targets CSV"),
        doc_field("run", pa.string(), "run name"),
        doc_field("formula", pa.string(), "molecular formula, if given"),
        doc_field("adduct", pa.string(), "adduct, e.g. [M+H]+, if given"),
        doc_field(
            "theoretical_mz",
            pa.float64(),
            "target m/z (given, or from formula + adduct)",
            "m/z (MS:1000040)",
        ),
        doc_field("ppm_tolerance", pa.float64(), "XIC half-width", "ppm"),
        doc_field(
            "rt_start_s",
            pa.float64(),
            "start of the search window (null: run start)",
            "s (UO:0000010)",
        ),
        doc_field(
            "rt_end_s", pa.float64(), "end of the search window (null: run end)", "s (UO:0000010)"
        ),
        doc_field(
            "detected",
            pa.bool_(),
            f"a chromatographic peak with signal in at least {MIN_POINTS} MS1 scans "
            "found in the window",
        ),
        doc_field(
            "observed_mz",
            pa.float64(),
            "intensity-weighted m/z of the peak's XIC points at or above half its apex",
            "m/z (MS:1000040)",
        ),
        doc_field(
            "mass_error_ppm",
            pa.float64(),
            "(observed_mz - theoretical_mz) / theoretical_mz * 1e6",
            "ppm",
        ),
        doc_field("rt_apex_s", pa.float64(), "retention time of the peak's apex", "s (UO:0000010)"),
        doc_field(
            "height", pa.float64(), "XIC intensity at the peak's apex", "counts (MS:1000131)"
        ),
        doc_field(
            "area",
            pa.float64(),
            "trapezoidal XIC area over the peak (valley to valley, or to 2 % of its "
            "height), as the untargeted features integrate",
            "counts x s",
        ),
        doc_field(
            "peak_start_s", pa.float64(), "where the integrated peak starts", "s (UO:0000010)"
        ),
        doc_field("peak_end_s", pa.float64(), "where the integrated peak ends", "s (UO:0000010)"),
        doc_field(
            "area_window", pa.float64(), "trapezoidal XIC area over the whole window", "counts x s"
        ),
        doc_field("n_points", pa.int32(), "MS1 scans with signal inside the window"),
        doc_field(
            "xic_rt_s",
            pa.list_(pa.float64()),
            "XIC retention times (every MS1 scan of the window)",
            "s (UO:0000010)",
        ),
        doc_field(
            "xic_intensity", pa.list_(pa.float32()), "XIC summed intensities", "counts (MS:1000131)"
        ),
    ],
)
# 2: the target's own peak (apex, height, area between its valleys), not the window's maximum;
# stamped by the shared table writer only
TARGETS_FORMAT_VERSION = 2


def _target_rows(path: Path) -> list[dict[str, str]]:
    """The targets CSV's rows as read; raises (one problem) when the file is missing, has no
    data rows or its header lacks the columns a target needs."""
    name = path.name
    if not path.is_file():
        raise InputError(
            Problem(
                "targets file not found",
                file=name,
                hint="put it in the run folder or fix metabolomics.targets in experiment.yaml",
            )
        )
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    rows = list(csv.DictReader(text.splitlines()))
    problems = ProblemList(file=name)
    if not rows:
        problems.add(
            "no targets (the file has no data rows)",
            hint="one row per compound: name,mz or name,formula,adduct",
        )
        problems.raise_if_any()
    cols = {c.strip().lower() for c in rows[0].keys() if c}
    if "name" not in cols or not ({"mz"} <= cols or {"formula", "adduct"} <= cols):
        problems.add(
            f"header has columns {sorted(cols)}",
            where="line 1",
            hint="needs name and mz, or name, formula and adduct (optional: rt_start_s, rt_end_s, ppm)",
        )
        problems.raise_if_any()
    return rows


def _target_mz(row: dict[str, str], *, where: str, problems: ProblemList) -> float | None:
    """The row's m/z: given, or from its formula + adduct; None (a problem added) when neither
    is usable."""
    nm, name = row["name"], problems.file
    formula, adduct = row.get("formula") or None, row.get("adduct") or None
    mz_text = row.get("mz", "")
    try:
        if mz_text:
            mz = float(mz_text)
            if not (0 < mz < 1e5):
                raise ValueError
            return mz
        if formula and adduct:
            return target_mz(formula=formula, adduct=adduct, file=name, where=where)
        problems.add(
            f"{nm!r}: neither mz nor formula + adduct given",
            where=where,
            hint=f"e.g. formula C8H10N4O2 and adduct [M+H]+ (known: {', '.join(list(ADDUCTS)[:6])}, ...)",
        )
    except ValueError:
        problems.add(
            f"{nm!r}: mz {mz_text!r} is not a positive number", where=f"{where}, column mz"
        )
    except InputError as err:
        problems.problems.extend(err.problems)
    return None


def _target_of_row(
    row: dict[str, str], *, where: str, default_ppm: float, problems: ProblemList
) -> Target | None:
    """One named row as a :class:`Target`; None (its problem added) when a value is wrong."""
    nm = row["name"]
    mz = _target_mz(row, where=where, problems=problems)
    if mz is None:
        return None
    try:
        lo = float(row["rt_start_s"]) if row.get("rt_start_s") else None
        hi = float(row["rt_end_s"]) if row.get("rt_end_s") else None
        ppm = float(row["ppm"]) if row.get("ppm") else default_ppm
    except ValueError:
        problems.add(f"{nm!r}: rt_start_s, rt_end_s and ppm must be numbers", where=where)
        return None
    if lo is not None and hi is not None and lo >= hi:
        problems.add(
            f"{nm!r}: RT window {lo}-{hi} s is empty",
            where=where,
            hint="rt_start_s < rt_end_s, in seconds",
        )
        return None
    if not (0 < ppm <= 100):
        problems.add(f"{nm!r}: ppm {ppm} outside (0, 100]", where=f"{where}, column ppm")
        return None
    formula, adduct = row.get("formula") or None, row.get("adduct") or None
    return Target(nm, mz, formula, adduct, lo, hi, ppm)


def read_targets(path: str | Path, *, default_ppm: float = 10.0) -> list[Target]:
    """Parse and check the targets CSV; every bad row is reported at once (file, line, column)."""
    path = Path(path)
    rows = _target_rows(path)
    problems = ProblemList(file=path.name)
    out: list[Target] = []
    seen: set[str] = set()
    for i, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        where = f"line {i}"
        nm = row.get("name", "")
        if not nm:
            problems.add("empty name", where=where)
            continue
        if nm in seen:
            problems.add(f"duplicate target name {nm!r}", where=where, hint="each compound once")
            continue
        seen.add(nm)
        target = _target_of_row(row, where=where, default_ppm=default_ppm, problems=problems)
        if target is not None:
            out.append(target)
    problems.raise_if_any()
    return out


def _xics(spectra: Path, targets: list[Target]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per target: (rt, summed intensity, intensity-weighted m/z) over the MS1 scans in its window."""
    acc: list[tuple[list[float], list[float], list[float]]] = [([], [], []) for _ in targets]
    lows = np.array([t.mz * (1 - t.ppm * 1e-6) for t in targets])
    highs = np.array([t.mz * (1 + t.ppm * 1e-6) for t in targets])
    rt_lo = np.array([t.rt_start_s if t.rt_start_s is not None else -math.inf for t in targets])
    rt_hi = np.array([t.rt_end_s if t.rt_end_s is not None else math.inf for t in targets])
    pf = pq.ParquetFile(spectra)
    for rg in range(pf.num_row_groups):
        tab = pf.read_row_group(rg, columns=["ms_level", "rt_s", "mz", "intensity"])
        levels = tab.column("ms_level").to_numpy(zero_copy_only=False)
        rts = tab.column("rt_s").to_numpy(zero_copy_only=False)
        mz_col, int_col = (
            tab.column("mz").combine_chunks(),
            tab.column("intensity").combine_chunks(),
        )
        off = mz_col.offsets.to_numpy()
        mz_all, int_all = mz_col.values.to_numpy(), int_col.values.to_numpy()
        for i in np.flatnonzero(levels == 1):
            rt = rts[i]
            active = np.flatnonzero((rt >= rt_lo) & (rt <= rt_hi))
            if not len(active):
                continue
            mz = mz_all[off[i] : off[i + 1]]
            it = int_all[off[i] : off[i + 1]]
            if len(mz) > 1 and np.any(np.diff(mz) < 0):
                o = np.argsort(mz, kind="stable")
                mz, it = mz[o], it[o]
            a = np.searchsorted(mz, lows[active])
            b = np.searchsorted(mz, highs[active], side="right")
            for k, lo_i, hi_i in zip(active, a, b, strict=False):
                s = float(it[lo_i:hi_i].sum(dtype=np.float64))
                wmz = float(np.dot(mz[lo_i:hi_i], it[lo_i:hi_i]) / s) if s > 0 else math.nan
                acc[k][0].append(float(rt))
                acc[k][1].append(s)
                acc[k][2].append(wmz)
    out = []
    for rt, inten, wmz in acc:
        o = np.argsort(np.asarray(rt), kind="stable")
        out.append((np.asarray(rt)[o], np.asarray(inten)[o], np.asarray(wmz)[o]))
    return out


def quantify_targets(
    *,
    spectra: list[str | Path],
    runs: list[str],
    targets_csv: str | Path,
    out: str | Path,
    default_ppm: float = 10.0,
    qc_out: str | Path | None = None,
) -> dict:
    """Write ``out`` (Parquet, :data:`TARGET_SCHEMA`): one row per target and run.

    Returns QC figures (targets detected per run, median and largest |mass error| in ppm), also
    written to ``qc_out`` as JSON when given.
    """
    targets = read_targets(targets_csv, default_ppm=default_ppm)
    rows = []
    for sp, run in zip(spectra, runs, strict=False):
        for t, (rt, inten, wmz) in zip(targets, _xics(Path(sp), targets), strict=False):
            n_points = int((inten > 0).sum())
            row = {
                "target": t.name,
                "run": run,
                "formula": t.formula,
                "adduct": t.adduct,
                "theoretical_mz": t.mz,
                "ppm_tolerance": t.ppm,
                "rt_start_s": t.rt_start_s,
                "rt_end_s": t.rt_end_s,
                "detected": False,
                "n_points": n_points,
                "xic_rt_s": rt,
                "xic_intensity": inten.astype(np.float32),
                "observed_mz": None,
                "mass_error_ppm": None,
                "rt_apex_s": None,
                "height": None,
                "area": None,
                "peak_start_s": None,
                "peak_end_s": None,
                "area_window": float(np.trapezoid(inten, rt)) if len(rt) > 1 else None,
            }
            peak = xic_peak(rt, inten, min_points=MIN_POINTS) if n_points >= MIN_POINTS else None
            if peak is not None:
                k, lo, hi = peak
                sl = slice(lo, hi + 1)
                top = np.zeros(len(inten), bool)
                top[sl] = inten[sl] >= inten[k] / 2
                obs = float(np.sum(wmz[top] * inten[top]) / np.sum(inten[top]))
                row.update(
                    detected=True,
                    observed_mz=obs,
                    mass_error_ppm=(obs - t.mz) / t.mz * 1e6,
                    rt_apex_s=float(rt[k]),
                    height=float(inten[k]),
                    area=float(np.trapezoid(inten[sl], rt[sl])) if hi > lo else 0.0,
                    peak_start_s=float(rt[lo]),
                    peak_end_s=float(rt[hi]),
                )
            rows.append(row)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_table(
        pa.Table.from_pylist(rows, schema=TARGET_SCHEMA),
        out,
        format_name="binds-metabolomics-targets",
        format_version=TARGETS_FORMAT_VERSION,
        columns=columns_for("binds-metabolomics-targets"),
    )
    errors = [
        abs(r["mass_error_ppm"]) for r in rows if r["detected"] and r["mass_error_ppm"] is not None
    ]
    qc = {
        "n_targets": len(targets),
        "targets_detected": {
            run: sum(1 for r in rows if r["run"] == run and r["detected"]) for run in runs
        },
        "target_median_abs_mass_error_ppm": float(np.median(errors)) if errors else None,
        "target_max_abs_mass_error_ppm": float(np.max(errors)) if errors else None,
    }
    log.info("targets: %s", qc)
    if qc_out:
        write_json(qc_out, qc)
    return qc
