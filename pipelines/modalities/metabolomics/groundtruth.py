"""Synthetic LC-MS runs with known compounds, for scoring feature detection against ground truth.

A run (centroided MS1, written as mzML with psims) holds:

- ``n_compounds`` compounds, each an [M+H]+ (or, one in ten, [M+2H]2+) ion with its 13C isotope
  pattern (binomial in the carbon count, one carbon per 12-18 Da), eluting as a Gaussian of FWHM
  2-30 s (log-uniform) with apex heights log-uniform over ``dynamic_range`` above 3x the noise
  floor;
- co-eluting isomers: one compound in five has a partner at the same m/z, 1.6-2.2 FWHM (at
  least 3 s) later, 0.1-10x as high (one centroid per scan: the instrument sums them);
- chemical background: ions present all run long at 3-100x the floor, drifting +-30 % over
  300 s and fluctuating 15 % from scan to scan;
- noise: random centroids in every scan, intensity noise (5 % + additive at a third of the
  floor), 2 ppm m/z scatter, and the instrument's threshold: nothing below the floor is written;
- optionally (``suppression_dips``), ion-suppression dips: stretches of 2-4 s where every ion
  falls to 0.5-10 % of its intensity (a compound filling the trap, a spray instability), so
  that most fall below the threshold.

:func:`truth` gives the compounds (monoisotopic ion m/z, apex RT, apex height); a compound is
*strong* when its apex is at least 10x the noise floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.modalities.metabolomics.isotopes import C13_SPACING

PROTON = 1.00727646688
BACKGROUND_PERIOD_S = (
    300.0  # slow drift of the background ions (+-30 %): humps far wider than peaks
)
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(slots=True)
class Truth:
    mz: np.ndarray  # monoisotopic ion m/z
    rt: np.ndarray  # apex RT, s
    height: np.ndarray  # apex intensity of the monoisotopic ion
    fwhm: np.ndarray
    charge: np.ndarray
    floor: float

    @property
    def strong(self) -> np.ndarray:
        return self.height >= 10 * self.floor


def _compounds(
    rng: np.random.Generator, *, n: int, run_s: float, floor: float, dynamic_range: float
) -> Truth:
    mass = rng.uniform(120.0, 900.0, n)
    charge = np.where(rng.random(n) < 0.1, 2, 1)
    fwhm = np.exp(rng.uniform(np.log(2.0), np.log(30.0), n))
    rt = rng.uniform(20.0 + fwhm, run_s - 20.0 - fwhm)
    height = 3 * floor * np.exp(rng.uniform(0, np.log(dynamic_range), n))
    # isomers: same mass and charge, eluting 1.6-2.2 FWHM (>= 3 s) later
    iso = np.flatnonzero(rng.random(n) < 0.2)
    iso = iso[rt[iso] + 2.5 * fwhm[iso] < run_s - 20.0]
    d = np.maximum(3.0, fwhm[iso] * rng.uniform(1.6, 2.2, len(iso)))
    mass = np.concatenate([mass, mass[iso]])
    charge = np.concatenate([charge, charge[iso]])
    fwhm = np.concatenate([fwhm, fwhm[iso] * rng.uniform(0.8, 1.2, len(iso))])
    rt = np.concatenate([rt, rt[iso] + d])
    # the partner within 10x of the first: a 1000x smaller one 2 FWHM away is a shoulder on the
    # big one's tail that no peak picker (nor chemist) resolves without a model of the tail
    partner = height[iso] * np.exp(rng.uniform(np.log(0.1), np.log(10.0), len(iso)))
    height = np.concatenate([height, np.clip(partner, 3 * floor, 3 * floor * dynamic_range)])
    mz = (mass + charge * PROTON) / charge
    return Truth(mz=mz, rt=rt, height=height, fwhm=fwhm, charge=charge, floor=floor)


def _isotope_pattern(mass: float, rng: np.random.Generator) -> np.ndarray:
    """Relative abundances of M, M+1, ... (normalised to M = 1), binomial in the carbon count."""
    n_c = max(2, round(mass / rng.uniform(12.0, 18.0)))
    p = 0.0107
    rel = [1.0]
    for k in range(1, 5):
        rel.append(rel[-1] * (n_c - k + 1) / k * p / (1 - p))
    rel = np.asarray(rel)
    return rel[rel >= 0.002]


def write_run(
    path: str | Path,
    *,
    seed: int = 0,
    n_compounds: int = 200,
    run_s: float = 600.0,
    cycle_s: float = 0.5,
    floor: float = 2000.0,
    dynamic_range: float = 1e4,
    n_background: int = 60,
    noise_per_scan: int = 150,
    suppression_dips: int = 0,
) -> Truth:
    """Write one synthetic centroided run to ``path`` (mzML); return its compounds."""
    from psims.mzml.writer import MzMLWriter

    rng = np.random.default_rng(seed)
    truth = _compounds(rng, n=n_compounds, run_s=run_s, floor=floor, dynamic_range=dynamic_range)
    # drawn from their own generator: the run without dips is the same run
    dips = np.random.default_rng([seed, 1])
    dip_start = np.sort(dips.uniform(20.0, run_s - 20.0, suppression_dips))
    dip_end = dip_start + dips.uniform(2.0, 4.0, suppression_dips)
    dip_factor = np.exp(dips.uniform(np.log(0.005), np.log(0.1), suppression_dips))
    ion_mz, ion_rt, ion_sigma, ion_h = [], [], [], []
    patterns: dict[float, np.ndarray] = {}  # isomers share their formula, hence their pattern
    for mz, rt, h, w, z in zip(
        truth.mz, truth.rt, truth.height, truth.fwhm, truth.charge, strict=False
    ):
        rel_all = patterns.setdefault(float(mz), _isotope_pattern(mz * z, rng))
        for k, rel in enumerate(rel_all):
            ion_mz.append(mz + k * C13_SPACING / z)
            ion_rt.append(rt)
            ion_sigma.append(w / _FWHM_PER_SIGMA)
            ion_h.append(h * rel)
    ion_mz, ion_rt, ion_sigma, ion_h = map(np.asarray, (ion_mz, ion_rt, ion_sigma, ion_h))
    # isomers in one scan are one centroid (the instrument cannot tell them apart by m/z)
    uniq_mz, ion_key = np.unique(ion_mz, return_inverse=True)
    bg_mz = rng.uniform(100.0, 1000.0, n_background)
    bg_level = floor * np.exp(rng.uniform(np.log(3.0), np.log(100.0), n_background))
    bg_phase = rng.uniform(0, 2 * np.pi, n_background)
    times = np.arange(0.0, run_s, cycle_s)
    with MzMLWriter(str(path), close=True) as w:
        _write_header(w, generator_version="1")
        with w.run(id="groundtruth", instrument_configuration="IC1"):
            with w.spectrum_list(count=len(times)):
                for scan, t in enumerate(times):
                    on = np.abs(t - ion_rt) < 5 * ion_sigma
                    sig = ion_h[on] * np.exp(-0.5 * ((t - ion_rt[on]) / ion_sigma[on]) ** 2)
                    keys, inverse = np.unique(ion_key[on], return_inverse=True)
                    sig = np.bincount(inverse, weights=sig, minlength=len(keys))
                    sig = sig * (1 + 0.05 * rng.standard_normal(sig.size)) + rng.normal(
                        0, floor / 3, sig.size
                    )
                    bg = bg_level * (
                        1 + 0.3 * np.sin(2 * np.pi * t / BACKGROUND_PERIOD_S + bg_phase)
                    )
                    bg = bg * (1 + 0.15 * rng.standard_normal(bg.size))
                    noise_mz = rng.uniform(100.0, 1000.0, noise_per_scan)
                    noise_i = floor * np.exp(np.abs(rng.normal(0, 0.5, noise_per_scan)))
                    mz = np.concatenate([uniq_mz[keys], bg_mz, noise_mz])
                    mz = mz * (1 + 2e-6 * rng.standard_normal(mz.size))
                    inten = np.concatenate([sig, bg, noise_i])
                    in_dip = (dip_start <= t) & (t < dip_end)
                    if in_dip.any():
                        inten = inten * dip_factor[in_dip].min()
                    keep = inten >= floor
                    order = np.argsort(mz[keep])
                    w.write_spectrum(
                        mz[keep][order],
                        inten[keep][order].astype(np.float32),
                        id=f"scan={scan + 1}",
                        centroided=True,
                        scan_start_time=t / 60.0,
                        params=["MS1 spectrum", {"ms level": 1}, "positive scan"],
                    )
    return truth


# =========================================================================== the widened run
# What users meet that the run above leaves out (issue 27): exponentially modified Gaussian
# elution (tailing); isotope envelopes from elemental formulas with their fine structure
# (13C, 15N, 33S, 34S, 18O, 13C2, 13C15N: 34S and 13C2 lie 0.0109 Da apart, 15-40 ppm);
# [M+H]+, [M+Na]+, [M+NH4]+ adducts (and [M+2H]2+); resolution-limited centroids (an
# Orbitrap's peak FWHM, m/z / R(m/z) with R falling as 1/sqrt(m/z) from ``resolving_power``
# at m/z 200: two ions closer than that in one scan give one centroid at their weighted
# m/z, and whether they do changes from scan to scan with their intensity ratio); a per-run
# m/z offset and 2-3 ppm scatter; a detection threshold that depends on m/z and RT, below
# which centroids vanish; background ions all run long (constant, drifting linearly,
# stepping, oscillating slowly), most with a close neighbour 6-15 ppm away; isomer pairs
# 1-3 FWHM apart and isobaric pairs 5-20 ppm apart; compounds on a background ion's m/z;
# optional ion-suppression dips.

ELEMENT_MASS = {"C": 12.0, "H": 1.00782503207, "N": 14.0030740048, "O": 15.99491461956}
ELEMENT_MASS["S"] = 31.972071
NA_ION = 22.9897692809 - 0.000548579909  # Na+
NH4_ION = 14.0030740048 + 4 * 1.00782503207 - 0.000548579909  # NH4+
# (mass shift, abundance of one atom's heavy isotope relative to its light one)
_HEAVY = {
    "13C": (1.00335484, 0.0107 / 0.9893),
    "15N": (0.99703489, 0.00364 / 0.99636),
    "2H": (1.00627675, 0.000115 / 0.999885),
    "33S": (0.99938776, 0.0075 / 0.9499),
    "34S": (1.99579590, 0.0425 / 0.9499),
    "18O": (2.00424540, 0.00205 / 0.99757),
}
ADDUCTS = {"[M+H]+": (PROTON, 1), "[M+Na]+": (NA_ION, 1), "[M+NH4]+": (NH4_ION, 1)}
ADDUCTS["[M+2H]2+"] = (PROTON, 2)
# ion kinds in RunTruth.kind
MONO, ISOTOPE = 0, 1


def isotopologues(formula: dict[str, int], *, min_rel: float = 0.002) -> list[tuple[float, float]]:
    """(mass shift, abundance relative to the monoisotopic) of the fine-structure isotopologues
    of ``formula`` down to ``min_rel``: single substitutions (13C, 15N, 2H, 33S, 34S, 18O) and
    the doubles that matter (13C2, 13C 15N, 13C 34S, 13C 18O)."""
    n = {e: formula.get(e, 0) for e in "CHNOS"}
    single = {
        "13C": n["C"],
        "15N": n["N"],
        "2H": n["H"],
        "33S": n["S"],
        "34S": n["S"],
        "18O": n["O"],
    }
    out = [(0.0, 1.0)]
    for iso, count in single.items():
        if count:
            shift, r = _HEAVY[iso]
            out.append((shift, count * r))
    c13, rc = _HEAVY["13C"]
    if n["C"] >= 2:
        out.append((2 * c13, n["C"] * (n["C"] - 1) / 2 * rc * rc))
    for other, element in (("15N", "N"), ("34S", "S"), ("18O", "O")):
        if n["C"] and n[element]:
            shift, r = _HEAVY[other]
            out.append((c13 + shift, n["C"] * rc * n[element] * r))
    if n["C"] >= 3:  # M+3 of large molecules, without its fine structure
        out.append((3 * c13, n["C"] * (n["C"] - 1) * (n["C"] - 2) / 6 * rc**3))
    return [(s, a) for s, a in out if a >= min_rel]


def _random_formula(rng: np.random.Generator, mass: float) -> dict[str, int]:
    """A plausible CHNOS composition of about ``mass`` Da."""
    n_c = max(3, round(mass * rng.uniform(0.045, 0.07)))
    n_n = int(rng.integers(0, 5))
    n_s = int(rng.random() < 0.3) + int(rng.random() < 0.1)
    rest = mass - 12 * n_c - 14.003 * n_n - 31.972 * n_s
    n_o = max(0, int(rest * rng.uniform(0.3, 0.9) / 16))
    n_h = max(2, round(rest - 15.995 * n_o))
    return {"C": n_c, "H": n_h, "N": n_n, "O": n_o, "S": n_s}


def formula_mass(formula: dict[str, int]) -> float:
    return float(sum(ELEMENT_MASS[e] * k for e, k in formula.items()))


def emg_profile(t: np.ndarray, mu: float, sigma: float, tau: float) -> np.ndarray:
    """Exponentially modified Gaussian (Gaussian mu, sigma convolved with an exponential tail
    tau), scaled to a maximum of 1; computed in log space (no overflow far out on the tail)."""
    from scipy.special import log_ndtr

    if tau <= 1e-3 * sigma:
        return np.exp(-0.5 * ((np.asarray(t) - mu) / sigma) ** 2)

    def log_emg(x):
        return sigma**2 / (2 * tau**2) - (x - mu) / tau + log_ndtr((x - mu) / sigma - sigma / tau)

    grid = mu + sigma * np.linspace(-1, 6, 701) + tau * np.linspace(0, 1, 701)
    return np.exp(log_emg(np.asarray(t, np.float64)) - float(np.max(log_emg(grid))))


@dataclass(slots=True)
class RunTruth:
    """Every real ion of a widened run, and its background ions.

    Per ion: m/z (before the run's offset and scatter), apex RT and height (of the noiseless
    profile), FWHM, compound and species (compound x adduct) number, kind (``MONO``: the
    monoisotopic ion of a species; ``ISOTOPE``), the detection threshold at its apex, and
    ``resolvable``: at its apex it is its own centroid (not merged into a stronger ion's by
    the resolution) and, for an isomer, the summed profile has a valley at least 20 % below
    the smaller apex between the two (otherwise the pair is one peak: the larger is the
    target, at either apex, ``rt_span``).
    """

    mz: np.ndarray
    rt: np.ndarray
    height: np.ndarray
    fwhm: np.ndarray
    compound: np.ndarray
    species: np.ndarray
    kind: np.ndarray
    threshold: np.ndarray
    resolvable: np.ndarray
    # extra RT tolerance (s): for the larger of an isomer pair without a valley (one peak),
    # the distance to the other apex (the detector's apex may be at either)
    rt_span: np.ndarray
    background_mz: np.ndarray
    background_level: np.ndarray
    background_kind: list[str]
    cycle_s: float
    resolving_power: float

    @property
    def target(self) -> np.ndarray:
        """The ions recall is measured on: monoisotopic ions of a species, resolvable, >= 3x threshold."""
        return (self.kind == MONO) & self.resolvable & (self.height >= 3 * self.threshold)


@dataclass(slots=True)
class SimulatedRun:
    scan: np.ndarray  # per centroid
    mz: np.ndarray
    intensity: np.ndarray
    rt: np.ndarray  # per scan
    truth: RunTruth


def _threshold(mz: np.ndarray, t: np.ndarray | float, floor: float, run_s: float) -> np.ndarray:
    """The instrument's detection threshold at (m/z, RT): higher at high m/z and mid-gradient."""
    return (
        floor
        * (0.8 + 0.5 * (np.asarray(mz) - 100.0) / 900.0)
        * (1.0 + 0.3 * np.sin(np.pi * np.asarray(t) / run_s))
    )


def _resolve(mz: np.ndarray, inten: np.ndarray, resolving_power: float):
    """One scan's ions as the instrument centroids them: ions closer than the peak FWHM (times
    a factor growing with their intensity ratio: a small shoulder hides under a big peak) are
    one centroid (summed, intensity-weighted m/z).  Returns (m/z, intensity, cluster of each
    input ion); ``mz`` sorted."""
    if not len(mz):
        return mz, inten, np.zeros(0, np.int64)
    fwhm = mz / (resolving_power * np.sqrt(200.0 / mz))
    inten = np.maximum(inten, 1e-9)
    ratio = inten[1:] / inten[:-1]
    reach = fwhm[:-1] * (1.0 + 0.25 * np.abs(np.log10(np.maximum(ratio, 1e-6))))
    merged = np.diff(mz) < reach
    cluster = np.concatenate([[0], np.cumsum(~merged)])
    total = np.bincount(cluster, weights=inten)
    c_mz = np.bincount(cluster, weights=inten * mz) / np.where(total > 0, total, 1.0)
    return c_mz, total, cluster


@dataclass(slots=True)
class _Compounds:
    """The compounds drawn so far, per compound: formula, elution (EMG mu, sigma, tau) and
    apex height; ``isobar_ppm``: how far (ppm) a compound's mass is moved off its formula's
    (an isobar of another compound or of a background ion)."""

    formula: list[dict[str, int]] = field(default_factory=list)
    mu: list[float] = field(default_factory=list)
    sigma: list[float] = field(default_factory=list)
    tau: list[float] = field(default_factory=list)
    height: list[float] = field(default_factory=list)
    isobar_ppm: dict[int, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Background:
    """Background ions (present all run long): m/z, level, behaviour and its parameters
    (factor, time or phase, period)."""

    mz: list[float] = field(default_factory=list)
    level: list[float] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    args: list[tuple[float, float, float]] = field(default_factory=list)


@dataclass(slots=True)
class _Ions:
    """Every compound ion (adducts x isotopologues): m/z, compound, species, kind, abundance
    relative to the compound's height, and noiseless apex height (compound height x relative)."""

    mz: np.ndarray
    comp: np.ndarray
    species: np.ndarray
    kind: np.ndarray
    rel: np.ndarray
    height: np.ndarray


@dataclass(slots=True)
class _Elution:
    """Noiseless elution profiles per compound: on the scan times and on a 0.02 s grid (for
    apexes and valleys finer than a cycle), and the apex RT from the fine grid."""

    times: np.ndarray
    prof: np.ndarray
    fine: np.ndarray
    prof_fine: np.ndarray
    apex_rt: np.ndarray


def _add_compound(
    comps: _Compounds,
    rng: np.random.Generator,
    formula: dict[str, int],
    *,
    mu: float,
    fwhm: float,
    height: float,
) -> None:
    # the tail is drawn after the caller's draws (its arguments): the order the generator sees
    tail = rng.uniform(0.0, 1.0) * fwhm  # tau up to one FWHM: tailing up to ~2x the front
    comps.formula.append(formula)
    comps.mu.append(mu)
    comps.sigma.append(fwhm / _FWHM_PER_SIGMA)
    comps.tau.append(tail)
    comps.height.append(height)


def _draw_fwhm(rng: np.random.Generator) -> float:
    return float(np.exp(rng.uniform(np.log(2.0), np.log(30.0))))


def _draw_compounds(
    rng: np.random.Generator, *, n: int, run_s: float, floor: float, dynamic_range: float
) -> _Compounds:
    """``n`` compounds, then isomers and isobars of some of them."""
    comps = _Compounds()
    for _ in range(n):
        f = _draw_fwhm(rng)
        _add_compound(
            comps,
            rng,
            _random_formula(rng, rng.uniform(100.0, 850.0)),
            mu=rng.uniform(15 + f, run_s - 15 - 2 * f),
            fwhm=f,
            height=float(3.5 * floor * np.exp(rng.uniform(0, np.log(dynamic_range)))),
        )
    n_base = len(comps.formula)
    # isomer pairs 1-3 FWHM apart (same formula), isobaric pairs 5-20 ppm apart (co-eluting)
    for i in rng.choice(n_base, n_base // 5, replace=False):
        f = comps.sigma[i] * _FWHM_PER_SIGMA
        mu = comps.mu[i] + f * rng.uniform(1.0, 3.0)
        if mu < run_s - 15 - f:
            _add_compound(
                comps,
                rng,
                comps.formula[i],
                mu=mu,
                fwhm=f * rng.uniform(0.8, 1.2),
                height=comps.height[i] * rng.uniform(0.2, 1.0),
            )
    for i in rng.choice(n_base, n_base // 8, replace=False):
        comps.isobar_ppm[len(comps.formula)] = rng.uniform(5.0, 20.0) * rng.choice([-1, 1])
        f = comps.sigma[i] * _FWHM_PER_SIGMA
        _add_compound(
            comps,
            rng,
            comps.formula[i],
            mu=comps.mu[i] + rng.uniform(-0.5, 0.5) * f,
            fwhm=f,
            height=comps.height[i] * np.exp(rng.uniform(np.log(0.3), np.log(3.0))),
        )
    return comps


def _draw_background(
    rng: np.random.Generator, *, n: int, run_s: float, floor: float
) -> _Background:
    """``n`` background ions (level, behaviour), most with a close neighbour."""
    bg = _Background()
    kinds = ["constant", "drift", "step", "oscillation"]
    for _ in range(n):
        m = rng.uniform(110.0, 950.0)
        lvl = floor * np.exp(rng.uniform(np.log(3.0), np.log(60.0)))
        kind = kinds[int(rng.integers(4))]
        args = (rng.uniform(0.3, 2.5), rng.uniform(0.2, 0.8) * run_s, rng.uniform(120.0, 400.0))
        bg.mz.append(m)
        bg.level.append(lvl)
        bg.kind.append(kind)
        bg.args.append(args)
        if rng.random() < 0.7:  # a neighbour 6-15 ppm away (an isotopologue, another ion)
            bg.mz.append(m * (1 + rng.uniform(6.0, 15.0) * 1e-6 * rng.choice([-1, 1])))
            bg.level.append(lvl * np.exp(rng.uniform(np.log(0.2), np.log(5.0))))
            bg.kind.append(kinds[int(rng.integers(4))])
            bg.args.append(
                (rng.uniform(0.3, 2.5), rng.uniform(0.2, 0.8) * run_s, rng.uniform(120.0, 400.0))
            )
    return bg


def _add_compounds_on_background(
    comps: _Compounds, bg: _Background, rng: np.random.Generator, *, n_background: int, run_s: float
) -> None:
    """Compounds on a background ion's m/z (the trace doubles for a few seconds)."""
    for b in rng.choice(len(bg.mz), max(1, n_background // 10), replace=False):
        f = _draw_fwhm(rng)
        form = _random_formula(rng, bg.mz[b] - PROTON)
        _add_compound(
            comps,
            rng,
            form,
            mu=rng.uniform(15 + f, run_s - 15 - 2 * f),
            fwhm=f,
            height=bg.level[b] * 1.5,
        )
        comps.isobar_ppm[len(comps.formula) - 1] = (
            (bg.mz[b] - PROTON - formula_mass(form)) / (formula_mass(form)) * 1e6
        )


def _ions_of(comps: _Compounds, rng: np.random.Generator) -> _Ions:
    """The ions of every compound: its adducts (drawn) x its isotopologues."""
    ion_mz, ion_comp, ion_species, ion_kind, ion_rel = [], [], [], [], []
    species = 0
    for c in range(len(comps.formula)):
        mass = formula_mass(comps.formula[c]) * (1 + comps.isobar_ppm.get(c, 0.0) * 1e-6)
        adducts = [("[M+2H]2+" if rng.random() < 0.08 else "[M+H]+", 1.0)]
        if rng.random() < 0.4:
            adducts.append(("[M+Na]+", np.exp(rng.uniform(np.log(0.1), np.log(0.6)))))
        if rng.random() < 0.25:
            adducts.append(("[M+NH4]+", np.exp(rng.uniform(np.log(0.1), np.log(0.5)))))
        envelope = isotopologues(comps.formula[c])
        for name, rel_adduct in adducts:
            shift, z = ADDUCTS[name]
            for k, (dm, rel) in enumerate(envelope):
                ion_mz.append((mass + z * shift + dm) / z)
                ion_comp.append(c)
                ion_species.append(species)
                ion_kind.append(MONO if k == 0 else ISOTOPE)
                ion_rel.append(rel_adduct * rel)
            species += 1
    comp = np.asarray(ion_comp)
    rel_a = np.asarray(ion_rel)
    return _Ions(
        mz=np.asarray(ion_mz),
        comp=comp,
        species=np.asarray(ion_species),
        kind=np.asarray(ion_kind),
        rel=rel_a,
        height=np.asarray(comps.height)[comp] * rel_a,
    )


def _elution(comps: _Compounds, *, run_s: float, cycle_s: float) -> _Elution:
    mu, sig, tau = (np.asarray(x) for x in (comps.mu, comps.sigma, comps.tau))
    times = np.arange(0.0, run_s, cycle_s)
    prof = np.zeros((len(mu), len(times)))
    for c in range(len(mu)):
        prof[c] = emg_profile(times, mu[c], sig[c], tau[c])
    fine = np.arange(0.0, run_s, 0.02)
    prof_fine = np.stack([emg_profile(fine, mu[c], sig[c], tau[c]) for c in range(len(mu))])
    apex_rt = fine[np.argmax(prof_fine, axis=1)]
    return _Elution(times=times, prof=prof, fine=fine, prof_fine=prof_fine, apex_rt=apex_rt)


def _background_at(bg: _Background, t: float, *, run_s: float) -> np.ndarray:
    """The background ions' intensities at ``t`` (noiseless)."""
    out = np.empty(len(bg.mz))
    for j, (kind, (a, t0, period)) in enumerate(zip(bg.kind, bg.args, strict=True)):
        if kind == "constant":
            out[j] = 1.0
        elif kind == "drift":
            out[j] = 1.0 + (a - 1.0) * t / run_s
        elif kind == "step":
            out[j] = 1.0 if t < t0 else a
        else:
            out[j] = 1.0 + 0.35 * np.sin(2 * np.pi * t / period + t0)
    return np.asarray(bg.level) * out


def _noiseless_scan(
    ions: _Ions, bg: _Background, el: _Elution, *, s: int, run_s: float
) -> np.ndarray:
    """Intensities of every compound ion, then every background ion, in scan ``s``."""
    return np.concatenate(
        [ions.height * el.prof[ions.comp, s], _background_at(bg, el.times[s], run_s=run_s)]
    )


def _draw_dips(
    dips: np.random.Generator, *, n: int, run_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` ion-suppression dips: start, end, intensity factor."""
    dip_start = np.sort(dips.uniform(20.0, run_s - 20.0, n))
    dip_end = dip_start + dips.uniform(2.0, 4.0, n)
    dip_factor = np.exp(dips.uniform(np.log(0.005), np.log(0.1), n))
    return dip_start, dip_end, dip_factor


def _scan_run(
    ions: _Ions,
    bg: _Background,
    el: _Elution,
    rng: np.random.Generator,
    *,
    all_mz: np.ndarray,
    order_all: np.ndarray,
    dips: tuple[np.ndarray, np.ndarray, np.ndarray],
    floor: float,
    run_s: float,
    resolving_power: float,
    noise_per_scan: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centroids of every scan (scan, m/z, intensity): noise, resolution, calibration,
    dips and the threshold applied."""
    dip_start, dip_end, dip_factor = dips
    # the run's calibration: one offset for the run, a scatter per centroid
    offset_ppm = rng.uniform(-3.0, 3.0)
    scatter_ppm = rng.uniform(2.0, 3.0)
    scans, mzs, ints = [], [], []
    for s, t in enumerate(el.times):
        inten = _noiseless_scan(ions, bg, el, s=s, run_s=run_s)
        inten = inten * (1 + 0.05 * rng.standard_normal(inten.size))
        inten = inten + rng.normal(0, floor / 4, inten.size)
        on = order_all[inten[order_all] > 0.05 * floor]
        c_mz, c_int, _ = _resolve(all_mz[on], inten[on], resolving_power)
        n_mz = rng.uniform(100.0, 1000.0, noise_per_scan)
        n_int = _threshold(n_mz, t, floor, run_s) * np.exp(
            np.abs(rng.normal(0, 0.4, noise_per_scan))
        )
        mz = np.concatenate([c_mz, n_mz])
        it = np.concatenate([c_int, n_int])
        mz = mz * (1 + (offset_ppm + scatter_ppm * rng.standard_normal(mz.size)) * 1e-6)
        in_dip = (dip_start <= t) & (t < dip_end)
        if in_dip.any():
            it = it * dip_factor[in_dip].min()
        keep = it >= _threshold(mz, t, floor, run_s)
        o = np.argsort(mz[keep])
        scans.append(np.full(len(o), s, np.int32))
        mzs.append(mz[keep][o])
        ints.append(it[keep][o].astype(np.float32))
    return np.concatenate(scans), np.concatenate(mzs), np.concatenate(ints)


def _resolvable_by_mz(
    ions: _Ions,
    bg: _Background,
    el: _Elution,
    *,
    all_mz: np.ndarray,
    order_all: np.ndarray,
    floor: float,
    run_s: float,
    cycle_s: float,
    resolving_power: float,
) -> np.ndarray:
    """Per ion: at its apex (noiseless), not merged into a stronger ion's centroid."""
    rt_ion = el.apex_rt[ions.comp]
    resolvable = np.ones(len(ions.mz), bool)
    for i in range(len(ions.mz)):
        s = int(np.clip(round(rt_ion[i] / cycle_s), 0, len(el.times) - 1))
        inten = _noiseless_scan(ions, bg, el, s=s, run_s=run_s)
        on = order_all[inten[order_all] > 0.05 * floor]
        _, _, cluster = _resolve(all_mz[on], inten[on], resolving_power)
        me = np.flatnonzero(on == i)
        if not len(me):
            resolvable[i] = False
            continue
        members = on[cluster == cluster[me[0]]]
        mine = inten[i]
        # the cluster's strongest member other than its isomers (same m/z) is the owner
        others = members[np.abs(all_mz[members] - ions.mz[i]) > 1e-9]
        if len(others) and inten[others].max() > mine:
            resolvable[i] = False
    return resolvable


def _separate_isomers(ions: _Ions, el: _Elution, resolvable: np.ndarray) -> np.ndarray:
    """Isomers need a valley >= 20 % below the smaller apex on the summed noiseless profile;
    without one the pair is one peak: the smaller is marked not resolvable (in
    ``resolvable``), the larger gets the distance to the other apex (returned, ``rt_span``)."""
    rt_span = np.zeros(len(ions.mz))
    fine, apex_rt, comp = el.fine, el.apex_rt, ions.comp
    key = np.round(ions.mz, 7)
    for i in np.flatnonzero(ions.kind == MONO):
        same = np.flatnonzero((key == key[i]) & (comp != comp[i]))
        if not len(same):
            continue
        total = ions.height[i] * el.prof_fine[comp[i]]
        for j in same:
            total = total + ions.height[j] * el.prof_fine[comp[j]]
        for j in same:
            a, b = sorted((apex_rt[comp[i]], apex_rt[comp[j]]))
            seg = (fine >= a) & (fine <= b)
            if not seg.any():
                resolvable[i] = False
                continue
            valley = total[seg].min()
            smaller = min(total[np.argmin(np.abs(fine - a))], total[np.argmin(np.abs(fine - b))])
            if valley > 0.8 * smaller:
                # one peak: the larger of the two is the target, and the reported apex may be
                # at either of the two
                if ions.height[i] <= ions.height[j]:
                    resolvable[i] = False
                else:
                    rt_span[i] = max(rt_span[i], abs(apex_rt[comp[j]] - apex_rt[comp[i]]))
    return rt_span


def _truth(
    ions: _Ions,
    comps: _Compounds,
    bg: _Background,
    el: _Elution,
    *,
    all_mz: np.ndarray,
    order_all: np.ndarray,
    floor: float,
    run_s: float,
    cycle_s: float,
    resolving_power: float,
) -> RunTruth:
    """The truth per ion: apex, height, threshold, resolvable."""
    rt_ion = el.apex_rt[ions.comp]
    resolvable = _resolvable_by_mz(
        ions,
        bg,
        el,
        all_mz=all_mz,
        order_all=order_all,
        floor=floor,
        run_s=run_s,
        cycle_s=cycle_s,
        resolving_power=resolving_power,
    )
    rt_span = _separate_isomers(ions, el, resolvable)
    return RunTruth(
        mz=ions.mz,
        rt=rt_ion,
        height=ions.height,
        fwhm=(np.asarray(comps.sigma) * _FWHM_PER_SIGMA)[ions.comp],
        compound=ions.comp,
        species=ions.species,
        kind=ions.kind,
        threshold=_threshold(ions.mz, rt_ion, floor, run_s),
        resolvable=resolvable,
        rt_span=rt_span,
        background_mz=np.asarray(bg.mz),
        background_level=np.asarray(bg.level),
        background_kind=bg.kind,
        cycle_s=cycle_s,
        resolving_power=resolving_power,
    )


def simulate_run(
    *,
    seed: int = 0,
    cycle_s: float = 0.5,
    resolving_power: float = 140_000.0,
    run_s: float = 300.0,
    n_compounds: int = 60,
    n_background: int = 40,
    floor: float = 2000.0,
    dynamic_range: float = 3e3,
    noise_per_scan: int = 100,
    suppression_dips: int = 0,
) -> SimulatedRun:
    """A widened ground-truth run (see the comment above): centroids per scan and the truth."""
    # one generator, drawn from by the steps in this order (the order is part of the run)
    rng = np.random.default_rng([27, seed])
    comps = _draw_compounds(
        rng, n=n_compounds, run_s=run_s, floor=floor, dynamic_range=dynamic_range
    )
    bg = _draw_background(rng, n=n_background, run_s=run_s, floor=floor)
    _add_compounds_on_background(comps, bg, rng, n_background=n_background, run_s=run_s)
    ions = _ions_of(comps, rng)
    el = _elution(comps, run_s=run_s, cycle_s=cycle_s)
    # the dips from their own generator: the run without dips is the same run
    dips = _draw_dips(np.random.default_rng([27, seed, 1]), n=suppression_dips, run_s=run_s)
    # one m/z axis for compound and background ions: the scans and the truth centroid alike
    all_mz = np.concatenate([ions.mz, np.asarray(bg.mz)])
    order_all = np.argsort(all_mz, kind="stable")
    scan, mz, intensity = _scan_run(
        ions,
        bg,
        el,
        rng,
        all_mz=all_mz,
        order_all=order_all,
        dips=dips,
        floor=floor,
        run_s=run_s,
        resolving_power=resolving_power,
        noise_per_scan=noise_per_scan,
    )
    truth = _truth(
        ions,
        comps,
        bg,
        el,
        all_mz=all_mz,
        order_all=order_all,
        floor=floor,
        run_s=run_s,
        cycle_s=cycle_s,
        resolving_power=resolving_power,
    )
    return SimulatedRun(scan=scan, mz=mz, intensity=intensity, rt=el.times, truth=truth)


def write_mzml(path: str | Path, run: SimulatedRun) -> Path:
    """Write a simulated run as centroided MS1 mzML (psims)."""
    from psims.mzml.writer import MzMLWriter

    bounds = np.searchsorted(run.scan, np.arange(len(run.rt) + 1))
    with MzMLWriter(str(path), close=True) as w:
        _write_header(w, generator_version="2")
        with w.run(id="groundtruth", instrument_configuration="IC1"):
            with w.spectrum_list(count=len(run.rt)):
                for s, t in enumerate(run.rt):
                    a, b = bounds[s], bounds[s + 1]
                    w.write_spectrum(
                        run.mz[a:b],
                        run.intensity[a:b],
                        id=f"scan={s + 1}",
                        centroided=True,
                        scan_start_time=float(t) / 60.0,
                        params=["MS1 spectrum", {"ms level": 1}, "positive scan"],
                    )
    return Path(path)


def _write_header(w: Any, *, generator_version: str) -> None:
    """The mzML header of a simulated run (one writer for both generators: the same
    vocabularies, instrument and processing, told apart by the generator's version)."""
    w.controlled_vocabularies()
    w.file_description(["MS1 spectrum", "centroid spectrum"])
    w.software_list(
        [
            {
                "id": "binds-groundtruth",
                "version": generator_version,
                "params": ["custom unreleased software tool"],
            }
        ]
    )
    w.instrument_configuration_list(
        [w.InstrumentConfiguration(id="IC1", component_list=[], params=["Q Exactive"])]
    )
    w.data_processing_list(
        [
            w.DataProcessing(
                [
                    w.ProcessingMethod(
                        order=0,
                        software_reference="binds-groundtruth",
                        params=["Conversion to mzML"],
                    )
                ],
                id="dp",
            )
        ]
    )
