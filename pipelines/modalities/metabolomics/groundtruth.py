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
