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

from dataclasses import dataclass
from pathlib import Path

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
        w.controlled_vocabularies()
        w.file_description(["MS1 spectrum", "centroid spectrum"])
        w.software_list(
            [
                {
                    "id": "binds-groundtruth",
                    "version": "1",
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
    for other, field in (("15N", "N"), ("34S", "S"), ("18O", "O")):
        if n["C"] and n[field]:
            shift, r = _HEAVY[other]
            out.append((c13 + shift, n["C"] * rc * n[field] * r))
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
    rng = np.random.default_rng([27, seed])
    # ---- compounds: formula, adducts, elution
    comp_formula, comp_mu, comp_sigma, comp_tau, comp_h = [], [], [], [], []

    def add_compound(formula, mu, fwhm, height):
        tail = rng.uniform(0.0, 1.0) * fwhm  # tau up to one FWHM: tailing up to ~2x the front
        comp_formula.append(formula)
        comp_mu.append(mu)
        comp_sigma.append(fwhm / _FWHM_PER_SIGMA)
        comp_tau.append(tail)
        comp_h.append(height)

    def draw_fwhm():
        return float(np.exp(rng.uniform(np.log(2.0), np.log(30.0))))

    def draw_height():
        return float(3.5 * floor * np.exp(rng.uniform(0, np.log(dynamic_range))))

    for _ in range(n_compounds):
        f = draw_fwhm()
        add_compound(
            _random_formula(rng, rng.uniform(100.0, 850.0)),
            rng.uniform(15 + f, run_s - 15 - 2 * f),
            f,
            draw_height(),
        )
    n_base = len(comp_formula)
    # isomer pairs 1-3 FWHM apart (same formula), isobaric pairs 5-20 ppm apart (co-eluting)
    for i in rng.choice(n_base, n_base // 5, replace=False):
        f = comp_sigma[i] * _FWHM_PER_SIGMA
        mu = comp_mu[i] + f * rng.uniform(1.0, 3.0)
        if mu < run_s - 15 - f:
            add_compound(
                comp_formula[i], mu, f * rng.uniform(0.8, 1.2), comp_h[i] * rng.uniform(0.2, 1.0)
            )
    isobar_of: dict[int, float] = {}
    for i in rng.choice(n_base, n_base // 8, replace=False):
        isobar_of[len(comp_formula)] = rng.uniform(5.0, 20.0) * rng.choice([-1, 1])
        f = comp_sigma[i] * _FWHM_PER_SIGMA
        add_compound(
            comp_formula[i],
            comp_mu[i] + rng.uniform(-0.5, 0.5) * f,
            f,
            comp_h[i] * np.exp(rng.uniform(np.log(0.3), np.log(3.0))),
        )
    n_comp = len(comp_formula)
    # ---- background ions: level, behaviour, close neighbours
    bg_mz, bg_level, bg_kind, bg_args = [], [], [], []
    kinds = ["constant", "drift", "step", "oscillation"]
    for _ in range(n_background):
        m = rng.uniform(110.0, 950.0)
        lvl = floor * np.exp(rng.uniform(np.log(3.0), np.log(60.0)))
        kind = kinds[int(rng.integers(4))]
        args = (rng.uniform(0.3, 2.5), rng.uniform(0.2, 0.8) * run_s, rng.uniform(120.0, 400.0))
        bg_mz.append(m)
        bg_level.append(lvl)
        bg_kind.append(kind)
        bg_args.append(args)
        if rng.random() < 0.7:  # a neighbour 6-15 ppm away (an isotopologue, another ion)
            bg_mz.append(m * (1 + rng.uniform(6.0, 15.0) * 1e-6 * rng.choice([-1, 1])))
            bg_level.append(lvl * np.exp(rng.uniform(np.log(0.2), np.log(5.0))))
            bg_kind.append(kinds[int(rng.integers(4))])
            bg_args.append(
                (rng.uniform(0.3, 2.5), rng.uniform(0.2, 0.8) * run_s, rng.uniform(120.0, 400.0))
            )
    # compounds on a background ion's m/z (the trace doubles for a few seconds)
    for b in rng.choice(len(bg_mz), max(1, n_background // 10), replace=False):
        f = draw_fwhm()
        form = _random_formula(rng, bg_mz[b] - PROTON)
        add_compound(form, rng.uniform(15 + f, run_s - 15 - 2 * f), f, bg_level[b] * 1.5)
        isobar_of[len(comp_formula) - 1] = (
            (bg_mz[b] - PROTON - formula_mass(form)) / (formula_mass(form)) * 1e6
        )
    n_comp = len(comp_formula)
    # ---- ions of every compound: adducts x isotopologues
    ion_mz, ion_comp, ion_species, ion_kind, ion_rel = [], [], [], [], []
    species = 0
    for c in range(n_comp):
        mass = formula_mass(comp_formula[c]) * (1 + isobar_of.get(c, 0.0) * 1e-6)
        adducts = [("[M+2H]2+" if rng.random() < 0.08 else "[M+H]+", 1.0)]
        if rng.random() < 0.4:
            adducts.append(("[M+Na]+", np.exp(rng.uniform(np.log(0.1), np.log(0.6)))))
        if rng.random() < 0.25:
            adducts.append(("[M+NH4]+", np.exp(rng.uniform(np.log(0.1), np.log(0.5)))))
        envelope = isotopologues(comp_formula[c])
        for name, rel_adduct in adducts:
            shift, z = ADDUCTS[name]
            for k, (dm, rel) in enumerate(envelope):
                ion_mz.append((mass + z * shift + dm) / z)
                ion_comp.append(c)
                ion_species.append(species)
                ion_kind.append(MONO if k == 0 else ISOTOPE)
                ion_rel.append(rel_adduct * rel)
            species += 1
    ion_mz, ion_comp, ion_species, ion_kind, ion_rel = map(
        np.asarray, (ion_mz, ion_comp, ion_species, ion_kind, ion_rel)
    )
    mu, sig, tau, hc = (np.asarray(x) for x in (comp_mu, comp_sigma, comp_tau, comp_h))
    # ---- the run
    times = np.arange(0.0, run_s, cycle_s)
    n_t = len(times)
    prof = np.zeros((n_comp, n_t))
    for c in range(n_comp):
        prof[c] = emg_profile(times, mu[c], sig[c], tau[c])
    fine = np.arange(0.0, run_s, 0.02)
    prof_fine = np.stack([emg_profile(fine, mu[c], sig[c], tau[c]) for c in range(n_comp)])
    apex_rt = fine[np.argmax(prof_fine, axis=1)]
    bg_mz_a, bg_level_a = np.asarray(bg_mz), np.asarray(bg_level)

    def bg_at(t: float) -> np.ndarray:
        out = np.empty(len(bg_mz))
        for j, (kind, (a, t0, period)) in enumerate(zip(bg_kind, bg_args, strict=True)):
            if kind == "constant":
                out[j] = 1.0
            elif kind == "drift":
                out[j] = 1.0 + (a - 1.0) * t / run_s
            elif kind == "step":
                out[j] = 1.0 if t < t0 else a
            else:
                out[j] = 1.0 + 0.35 * np.sin(2 * np.pi * t / period + t0)
        return bg_level_a * out

    dips = np.random.default_rng([27, seed, 1])
    dip_start = np.sort(dips.uniform(20.0, run_s - 20.0, suppression_dips))
    dip_end = dip_start + dips.uniform(2.0, 4.0, suppression_dips)
    dip_factor = np.exp(dips.uniform(np.log(0.005), np.log(0.1), suppression_dips))
    offset_ppm = rng.uniform(-3.0, 3.0)
    scatter_ppm = rng.uniform(2.0, 3.0)
    scans, mzs, ints = [], [], []
    all_mz = np.concatenate([ion_mz, bg_mz_a])
    order_all = np.argsort(all_mz, kind="stable")
    for s, t in enumerate(times):
        sig_i = hc[ion_comp] * ion_rel * prof[ion_comp, s]
        inten = np.concatenate([sig_i, bg_at(t)])
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
    # ---- the truth per ion: apex, height, threshold, resolvable
    height = hc[ion_comp] * ion_rel
    rt_ion = apex_rt[ion_comp]
    thr = _threshold(ion_mz, rt_ion, floor, run_s)
    resolvable = np.ones(len(ion_mz), bool)
    # (a) by m/z at its apex: not merged into a stronger ion's centroid
    for i in range(len(ion_mz)):
        s = int(np.clip(round(rt_ion[i] / cycle_s), 0, n_t - 1))
        inten = np.concatenate([hc[ion_comp] * ion_rel * prof[ion_comp, s], bg_at(times[s])])
        on = order_all[inten[order_all] > 0.05 * floor]
        _, c_int, cluster = _resolve(all_mz[on], inten[on], resolving_power)
        me = np.flatnonzero(on == i)
        if not len(me):
            resolvable[i] = False
            continue
        members = on[cluster == cluster[me[0]]]
        mine = inten[i]
        # the cluster's strongest member other than its isomers (same m/z) is the owner
        others = members[np.abs(all_mz[members] - ion_mz[i]) > 1e-9]
        if len(others) and inten[others].max() > mine:
            resolvable[i] = False
    # (b) isomers: a valley >= 20 % below the smaller apex on the summed noiseless profile
    rt_span = np.zeros(len(ion_mz))
    key = np.round(ion_mz, 7)
    for i in np.flatnonzero(ion_kind == MONO):
        same = np.flatnonzero((key == key[i]) & (ion_comp != ion_comp[i]))
        if not len(same):
            continue
        total = (hc[ion_comp[i]] * ion_rel[i]) * prof_fine[ion_comp[i]]
        for j in same:
            total = total + hc[ion_comp[j]] * ion_rel[j] * prof_fine[ion_comp[j]]
        for j in same:
            a, b = sorted((apex_rt[ion_comp[i]], apex_rt[ion_comp[j]]))
            seg = (fine >= a) & (fine <= b)
            if not seg.any():
                resolvable[i] = False
                continue
            valley = total[seg].min()
            smaller = min(total[np.argmin(np.abs(fine - a))], total[np.argmin(np.abs(fine - b))])
            if valley > 0.8 * smaller:
                # one peak: the larger of the two is the target, and the reported apex may be
                # at either of the two
                if height[i] <= height[j]:
                    resolvable[i] = False
                else:
                    rt_span[i] = max(rt_span[i], abs(apex_rt[ion_comp[j]] - apex_rt[ion_comp[i]]))
    truth = RunTruth(
        mz=ion_mz,
        rt=rt_ion,
        height=height,
        fwhm=(sig * _FWHM_PER_SIGMA)[ion_comp],
        compound=ion_comp,
        species=ion_species,
        kind=ion_kind,
        threshold=thr,
        resolvable=resolvable,
        rt_span=rt_span,
        background_mz=bg_mz_a,
        background_level=bg_level_a,
        background_kind=bg_kind,
        cycle_s=cycle_s,
        resolving_power=resolving_power,
    )
    return SimulatedRun(
        scan=np.concatenate(scans),
        mz=np.concatenate(mzs),
        intensity=np.concatenate(ints),
        rt=times,
        truth=truth,
    )


def write_mzml(path: str | Path, run: SimulatedRun) -> Path:
    """Write a simulated run as centroided MS1 mzML (psims)."""
    from psims.mzml.writer import MzMLWriter

    bounds = np.searchsorted(run.scan, np.arange(len(run.rt) + 1))
    with MzMLWriter(str(path), close=True) as w:
        w.controlled_vocabularies()
        w.file_description(["MS1 spectrum", "centroid spectrum"])
        w.software_list(
            [
                {
                    "id": "binds-groundtruth",
                    "version": "2",
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
