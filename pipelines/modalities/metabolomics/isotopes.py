"""Isotope grouping: chromatographic peaks -> features (one per compound ion, monoisotopic m/z).

As FeatureFinderMetabo does, every peak is tried as the monoisotopic peak of charge 1, 2 and 3:
the k-th isotope is looked for at ``m/z + k x 1.003355 / z`` (13C spacing, within the trace m/z
tolerance plus 1 mDa for the mixed 13C/15N/34S fine structure), co-eluting (apex of the smoothed
profile within ``max(1 s, 0.3 x FWHM)`` of the mono's and smoothed elution profiles correlated with r >=
``min_corr`` over their common scans) and with a plausible intensity: the M+1 / M ratio at
most that of a molecule of mass ``m/z x z`` made of carbon every 11 Da (plus 5 % for
heteroatoms), and each later isotope at most the binomial step from the one before (+10 %).
Chains stop at the first missing isotope.  Hypotheses are then taken longest first (more
explained peaks; a charge-2 ion also has the peaks a charge-1 reading would use), then by the
mono's height; a peak belongs to one feature; what remains is a single-peak feature (charge
unknown).  All candidate searches are vectorised; only the final assignment walks the (few)
hypotheses that found an isotope.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.modalities.metabolomics.peaks import Peaks

C13_SPACING = 1.0033548378
MAX_CHARGE = 3
MAX_ISOTOPES = 5  # M+1 .. M+5
MIN_CORR = 0.6
_C13_ABUNDANCE = 0.0107
_DA_PER_CARBON_MIN = 11.0  # the most carbon-rich plausible composition (lipids ~ 14, CnH2n)


@dataclass(slots=True)
class Features:
    """Isotope groups over :class:`Peaks`: ``mono`` peak of each feature and its isotope peaks."""

    mono: np.ndarray  # peak index of each feature's monoisotopic peak
    charge: np.ndarray  # 1..3, 0 when no isotope was found
    members: list[np.ndarray]  # peak indices of each feature, mono first, then M+1, M+2, ...


def _profile_corr(pk: Peaks, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Pearson r of the smoothed profiles of peaks p and q over their common scans (0 if < 3)."""
    lo = np.maximum(pk.start_scan[p], pk.start_scan[q])
    hi = np.minimum(pk.end_scan[p], pk.end_scan[q])
    n = np.maximum(hi - lo + 1, 0)
    r = np.zeros(len(p))
    ok = n >= 3
    if not ok.any():
        return r
    p, q, lo, n = p[ok], q[ok], lo[ok], n[ok]
    seg = np.repeat(np.arange(len(p)), n)
    step = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    scan = lo[seg] + step
    tp, tq = pk.trace[p][seg], pk.trace[q][seg]
    x = pk.smooth[pk.trace_offset[tp] + scan - pk.trace_first_scan[tp]]
    y = pk.smooth[pk.trace_offset[tq] + scan - pk.trace_first_scan[tq]]
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    sx, sy = np.add.reduceat(x, starts), np.add.reduceat(y, starts)
    sxx, syy, sxy = (
        np.add.reduceat(x * x, starts),
        np.add.reduceat(y * y, starts),
        np.add.reduceat(x * y, starts),
    )
    cov = sxy - sx * sy / n
    var = (sxx - sx * sx / n) * (syy - sy * sy / n)
    r[ok] = np.where(var > 0, cov / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    return r


def _max_ratio(mass: np.ndarray, k: int) -> np.ndarray:
    """Largest plausible height ratio of isotope k to isotope k-1 for a neutral-ish mass."""
    n_c = mass / _DA_PER_CARBON_MIN
    step = np.maximum(n_c - k + 1, 0) / k * _C13_ABUNDANCE / (1 - _C13_ABUNDANCE)
    return step * 1.2 + (0.05 if k == 1 else 0.10)


def group_isotopes(
    pk: Peaks, *, ppm: float, max_charge: int = MAX_CHARGE, min_corr: float = MIN_CORR
) -> Features:
    """Group ``pk`` into features (see the module docstring)."""
    n = len(pk)
    if not n:
        return Features(np.zeros(0, np.int64), np.zeros(0, np.int64), [])
    by_mz = np.argsort(pk.mz, kind="stable")
    mz_sorted = pk.mz[by_mz]
    rt_tol = np.maximum(1.0, 0.3 * pk.fwhm)
    chains: dict[int, np.ndarray] = {}
    corr_sum: dict[int, np.ndarray] = {}
    for z in range(1, max_charge + 1):
        chain = np.full((n, MAX_ISOTOPES), -1, np.int64)
        alive = np.arange(n)
        prev = np.arange(n)
        score = np.zeros(n)
        for k in range(1, MAX_ISOTOPES + 1):
            if not len(alive):
                break
            target = pk.mz[prev[alive]] + C13_SPACING / z
            tol = target * ppm * 1e-6 + 0.001
            lo = np.searchsorted(mz_sorted, target - tol)
            hi = np.searchsorted(mz_sorted, target + tol, side="right")
            cnt = hi - lo
            owner = np.repeat(alive, cnt)
            cand = by_mz[
                np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
            ]
            # apexes of the smoothed profiles: a weak isotope's raw apex jumps with the noise
            mono_rt = pk.rt_smooth_apex[owner]
            good = np.abs(pk.rt_smooth_apex[cand] - mono_rt) <= rt_tol[owner]
            ratio = pk.height[cand] / pk.height[prev[owner]]
            good &= ratio <= _max_ratio(pk.mz[owner] * z, k)
            owner, cand = owner[good], cand[good]
            r = _profile_corr(pk, owner, cand)
            good = r >= min_corr
            owner, cand, r = owner[good], cand[good], r[good]
            # the best candidate per owner: highest r
            o = np.lexsort((-r, owner))
            owner, cand, r = owner[o], cand[o], r[o]
            firsts = (
                np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
                if len(owner)
                else owner
            )
            owner, cand, r = owner[firsts], cand[firsts], r[firsts]
            chain[owner, k - 1] = cand
            score[owner] += r
            prev[owner] = cand
            alive = owner
        chains[z], corr_sum[z] = chain, score
    # hypotheses with at least one isotope: (length, mono height) descending
    hyp = []
    for z, chain in chains.items():
        length = (chain >= 0).sum(1)
        for p in np.flatnonzero(length > 0):
            hyp.append((int(length[p]), float(pk.height[p]), float(corr_sum[z][p]), z, int(p)))
    hyp.sort(key=lambda h: (-h[0], -h[1], -h[2], h[3]))
    used = np.zeros(n, bool)
    mono, charge, members = [], [], []
    for _, _, _, z, p in hyp:
        if used[p]:
            continue
        iso = chains[z][p]
        iso = iso[iso >= 0]
        blocked = np.flatnonzero(used[iso])
        if len(blocked):
            iso = iso[: blocked[0]]
        if not len(iso):
            continue
        used[p] = True
        used[iso] = True
        mono.append(p)
        charge.append(z)
        members.append(np.concatenate([[p], iso]))
    for p in np.flatnonzero(~used):
        mono.append(int(p))
        charge.append(0)
        members.append(np.array([p]))
    return Features(np.asarray(mono, np.int64), np.asarray(charge, np.int64), members)
