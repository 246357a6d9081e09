"""Plate statistics vectorised over plates: every array is (plates, rows, cols) float64 with NaN
for wells that do not count (excluded, missing), and boolean masks of the same shape.

Semantics follow cellHTS2 where it defines them (normalizePlates, Bscore, scoreReplicates,
summarizeReplicates, getZfactor); MAD is R's ``mad`` (scaled by 1.4826 so that it estimates the
standard deviation of normal data).
"""

from __future__ import annotations

import numpy as np

MAD_SCALE = 1.4826  # R's mad() constant: consistency with the sd of a normal distribution


def nanmedian(x: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """Median ignoring NaN along ``axis``; NaN where all are NaN.

    numpy's nanmedian loops in Python over slices for small axes; sorting once (NaN sorts last)
    and picking the middle by the count of valid values is ~20x faster on (1000, 384).
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    s = np.sort(x, axis=-1)
    n = np.count_nonzero(~np.isnan(x), axis=-1)[..., None]
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0), axis=-1)
    hi = np.take_along_axis(s, np.maximum(n // 2 - (n == 0), 0), axis=-1)
    med = ((lo + hi) / 2)[..., 0]
    return np.where(n[..., 0] > 0, med, np.nan)


def plate_median(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Median of each plate over the wells in ``mask``: shape (plates,)."""
    flat = _masked(x, mask).reshape(x.shape[0], -1)
    return nanmedian(flat, axis=1)


def plate_mad(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """R-style MAD of each plate over the wells in ``mask``: shape (plates,)."""
    flat = _masked(x, mask).reshape(x.shape[0], -1)
    med = nanmedian(flat, axis=1)
    return MAD_SCALE * nanmedian(np.abs(flat - med[:, None]), axis=1)


def plate_mean_sd(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, sample sd (ddof 1), count) of each plate over ``mask``; NaN where undefined."""
    flat = _masked(x, mask).reshape(x.shape[0], -1)
    valid = ~np.isnan(flat)
    n = valid.sum(axis=1)
    total = np.where(valid, flat, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        dev = np.where(valid, flat - mean[:, None], 0.0)
        sd = np.where(n > 1, np.sqrt((dev**2).sum(axis=1) / np.maximum(n - 1, 1)), np.nan)
    return mean, sd, n


def _masked(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return x if mask is None else np.where(mask, x, np.nan)


# --------------------------------------------------------------------------- normalisation
def normalise(
    values: np.ndarray,
    *,
    method: str,
    sample: np.ndarray,
    negative: np.ndarray,
    positive: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-plate normalisation (cellHTS2 normalizePlates, multiplicative scale).

    Returns (normalised, defined) where ``defined[p]`` is False when the plate lacks what the
    method needs (no sample wells, no controls of a kind, equal control means): its wells are NaN.
    """
    p = values.shape[0]
    b = lambda a: a[:, None, None]  # noqa: E731 - broadcast a per-plate figure over the wells
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "none":
            out = values.copy()
        elif method == "median":
            out = values / b(plate_median(values, sample))
        elif method == "mean":
            out = values / b(plate_mean_sd(values, sample)[0])
        elif method == "negatives":
            out = values / b(plate_median(values, negative))
        elif method == "poc":
            out = 100.0 * values / b(plate_mean_sd(values, positive)[0])
        elif method == "npi":
            mp, mn = plate_mean_sd(values, positive)[0], plate_mean_sd(values, negative)[0]
            out = (b(mp) - values) / b(mp - mn)
        elif method == "percent_inhibition":
            mp, mn = plate_mean_sd(values, positive)[0], plate_mean_sd(values, negative)[0]
            out = 100.0 * (b(mn) - values) / b(mn - mp)
        elif method == "b_score":
            out = b_score(values, sample=sample)
        else:
            raise ValueError(f"unknown normalisation {method!r}")
    out[~np.isfinite(out)] = np.nan
    defined = np.isfinite(out).reshape(p, -1).any(axis=1) if values.size else np.zeros(p, bool)
    return out, defined


def robust_z(values: np.ndarray, *, sample: np.ndarray) -> np.ndarray:
    """Per-plate robust z: (x - median of sample wells) / MAD of sample wells."""
    med = plate_median(values, sample)[:, None, None]
    mad = plate_mad(values, sample)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (values - med) / mad
    out[~np.isfinite(out)] = np.nan
    return out


def median_polish(
    values: np.ndarray, *, mask: np.ndarray, max_iter: int = 10, eps: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tukey's two-way median polish of every plate over the wells in ``mask`` (R ``medpolish``
    with na.rm=TRUE: same update order, stopping rule and defaults), vectorised over plates.

    Returns (overall (P,), row effects (P, rows), column effects (P, cols)); the residual of any
    well, inside the mask or not, is ``x - overall - row - col``.
    """
    z = np.where(mask, values, np.nan)
    nplates, nrows, ncols = z.shape
    overall = np.zeros(nplates)
    row = np.zeros((nplates, nrows))
    col = np.zeros((nplates, ncols))
    old = np.zeros(nplates)
    active = np.ones(nplates, dtype=bool)
    for _ in range(max_iter):
        a = active[:, None]
        rdelta = np.nan_to_num(nanmedian(z, axis=2)) * a
        z = z - rdelta[:, :, None]
        row = row + rdelta
        delta = np.nan_to_num(nanmedian(col, axis=1)) * active
        col = col - delta[:, None]
        overall = overall + delta
        cdelta = np.nan_to_num(nanmedian(z, axis=1)) * a
        z = z - cdelta[:, None, :]
        col = col + cdelta
        delta = np.nan_to_num(nanmedian(row, axis=1)) * active
        row = row - delta[:, None]
        overall = overall + delta
        new = np.nansum(np.abs(z), axis=(1, 2))
        converged = (new == 0) | (np.abs(new - old) < eps * new)
        active = active & ~converged
        old = new
        if not active.any():
            break
    return overall, row, col


def b_score(values: np.ndarray, *, sample: np.ndarray) -> np.ndarray:
    """B-score (Malo et al. 2006; cellHTS2 Bscore with scale=TRUE): median-polish residuals fitted
    on the sample wells of each plate, divided by the MAD of the sample residuals.  Control wells
    get residuals from the same row/column effects, so they stay comparable."""
    overall, row, col = median_polish(values, mask=sample & ~np.isnan(values))
    resid = values - overall[:, None, None] - row[:, :, None] - col[:, None, :]
    mad = plate_mad(resid, sample)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = resid / mad
    out[~np.isfinite(out)] = np.nan
    return out


# --------------------------------------------------------------------------- QC
def plate_qc(
    values: np.ndarray,
    *,
    negative: np.ndarray,
    positive: np.ndarray,
    inhibitor: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-plate control statistics and quality figures, each an array of shape (plates,).

    z_prime = 1 - 3 (sd_pos + sd_neg) / |mean_pos - mean_neg| (Zhang et al. 1999);
    robust_z_prime uses medians and MADs; signal_to_background = mean_pos / mean_neg;
    signal_to_noise = (mean_pos - mean_neg) / sd_neg; cv_* = 100 sd / mean.  A figure that needs
    2 control wells of a kind and has fewer is NaN.
    """
    mp, sp, n_pos = plate_mean_sd(values, positive)
    mn, sn, n_neg = plate_mean_sd(values, negative)
    medp, medn = plate_median(values, positive), plate_median(values, negative)
    madp, madn = plate_mad(values, positive), plate_mad(values, negative)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "n_positive": n_pos,
            "n_negative": n_neg,
            "mean_positive": mp,
            "mean_negative": mn,
            "sd_positive": sp,
            "sd_negative": sn,
            "z_prime": 1 - 3 * (sp + sn) / np.abs(mp - mn),
            "robust_z_prime": np.where(
                (n_pos > 1) & (n_neg > 1), 1 - 3 * (madp + madn) / np.abs(medp - medn), np.nan
            ),
            "signal_to_background": mp / mn,
            "signal_to_noise": (mp - mn) / sn,
            "cv_positive": 100 * sp / np.abs(mp),
            "cv_negative": 100 * sn / np.abs(mn),
        }
        if inhibitor is not None:
            mi, si, n_inh = plate_mean_sd(values, inhibitor)
            out["n_inhibitor"] = n_inh
            out["z_prime_inhibitor"] = 1 - 3 * (si + sn) / np.abs(mi - mn)
    for _k, v in out.items():
        if v.dtype.kind == "f":
            v[~np.isfinite(v)] = np.nan
    return out


# --------------------------------------------------------------------------- scores
def screen_zscore(normalised: np.ndarray, *, sample: np.ndarray, group: np.ndarray) -> np.ndarray:
    """cellHTS2 scoreReplicates(method="zscore"): for each replicate/channel ``group`` (an int per
    plate), (x - median) / MAD over the sample wells of all plates of that group."""
    out = np.full_like(normalised, np.nan)
    for g in np.unique(group):
        sel = group == g
        vals = normalised[sel][sample[sel]]
        vals = vals[~np.isnan(vals)]
        if vals.size == 0:
            continue
        med = float(np.median(vals))
        mad = MAD_SCALE * float(np.median(np.abs(vals - med)))
        if mad > 0:
            out[sel] = (normalised[sel] - med) / mad
    return out


def summarise_replicates(scores: np.ndarray, *, method: str) -> np.ndarray:
    """Summary over axis 1 of (groups, replicates, ...) (cellHTS2 summarizeReplicates), NaN-aware."""
    valid = ~np.isnan(scores)
    any_valid = valid.any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "mean":
            out = np.where(valid, scores, 0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        elif method == "median":
            out = nanmedian(scores, axis=1)
        elif method == "max":
            out = np.where(valid, scores, -np.inf).max(axis=1)
        elif method == "min":
            out = np.where(valid, scores, np.inf).min(axis=1)
        elif method == "rms":
            out = np.sqrt(
                np.where(valid, scores**2, 0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
            )
        elif method in ("closest_to_zero", "furthest_from_zero"):
            mag = np.where(
                valid, np.abs(scores), np.inf if method == "closest_to_zero" else -np.inf
            )
            pick = mag.argmin(axis=1) if method == "closest_to_zero" else mag.argmax(axis=1)
            out = np.take_along_axis(scores, pick[:, None], axis=1)[:, 0]
        else:
            raise ValueError(f"unknown replicate summary {method!r}")
    return np.where(any_valid, out, np.nan)
