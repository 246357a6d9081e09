"""Four-parameter logistic (4PL) dose-response fits, batched across compounds.

Model, in log10 concentration ``lx``::

    y = bottom + (top - bottom) / (1 + 10 ** (hill * (log10_ec50 - lx)))

``bottom`` is the response at zero dose, ``top`` at infinite dose (top < bottom: an inhibition
curve, whose EC50 is the IC50), ``hill`` > 0.  Every curve is fitted by the same bounded
Levenberg-Marquardt iteration run on all curves at once (numpy over an (n_curves, n_points)
array, 4x4 normal equations solved in one ``np.linalg.solve``), so thousands of compounds cost a
few dozen array operations instead of thousands of ``scipy.optimize.curve_fit`` calls.  A curve
that does not converge, sits on a bound or fits poorly is flagged, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit  # t quantiles; scipy.stats costs ~1 s more to import

LN10 = np.log(10.0)
# how far beyond the tested range the EC50 may go before it is "at the bound", in log10 units
EC50_MARGIN_DECADES = 2.0


def logistic4(lx: np.ndarray, bottom, top, log10_ec50, hill) -> np.ndarray:
    """The 4PL model (broadcasts: parameters of shape (n, 1) against lx of shape (n, m))."""
    return bottom + (top - bottom) / (1.0 + 10.0 ** (hill * (log10_ec50 - lx)))


@dataclass(slots=True)
class Fits:
    """Fit results, one entry per curve (arrays of shape (n,))."""

    bottom: np.ndarray
    top: np.ndarray
    log10_ec50: np.ndarray
    hill: np.ndarray
    r2: np.ndarray
    log10_ec50_ci_low: np.ndarray
    log10_ec50_ci_high: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    status: (
        np.ndarray
    )  # "ok", "not_converged", "ec50_at_bound", "hill_at_bound", "low_r2", "too_few_points"

    @property
    def ok(self) -> np.ndarray:
        return self.status == "ok"


def bounds_for(
    lx: np.ndarray, y: np.ndarray, w: np.ndarray, *, hill_min: float, hill_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) parameter bounds per curve, each (n, 4): asymptotes within one response
    range beyond the observed responses, EC50 within EC50_MARGIN_DECADES of the tested range."""
    big = np.where(w > 0, y, np.nan)
    ymin, ymax = np.nanmin(big, axis=1), np.nanmax(big, axis=1)
    span = np.maximum(ymax - ymin, 1e-12 + 1e-9 * np.abs(ymax))
    lxs = np.where(w > 0, lx, np.nan)
    xmin, xmax = np.nanmin(lxs, axis=1), np.nanmax(lxs, axis=1)
    lo = np.stack(
        [ymin - span, ymin - span, xmin - EC50_MARGIN_DECADES, np.full_like(ymin, hill_min)], axis=1
    )
    hi = np.stack(
        [ymax + span, ymax + span, xmax + EC50_MARGIN_DECADES, np.full_like(ymin, hill_max)], axis=1
    )
    return lo, hi


def initial_guess(lx: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Start per curve: asymptotes from the responses at the lowest and highest dose, EC50 where
    the response crosses half-way (first crossing), Hill 1."""
    n, _m = lx.shape
    big = np.where(w > 0, lx, np.inf)
    small = np.where(w > 0, lx, -np.inf)
    lo_x, hi_x = big.min(axis=1, keepdims=True), small.max(axis=1, keepdims=True)
    at_lo = (w > 0) & np.isclose(lx, lo_x)
    at_hi = (w > 0) & np.isclose(lx, hi_x)
    bottom = (y * at_lo).sum(1) / np.maximum(at_lo.sum(1), 1)
    top = (y * at_hi).sum(1) / np.maximum(at_hi.sum(1), 1)
    half = (bottom + top) / 2
    # order points by dose and take the dose nearest the half-way response
    order = np.argsort(np.where(w > 0, lx, np.inf), axis=1)
    ys = np.take_along_axis(y, order, 1)
    xs = np.take_along_axis(lx, order, 1)
    ws = np.take_along_axis(w, order, 1)
    dist = np.where(ws > 0, np.abs(ys - half[:, None]), np.inf)
    mid = np.take_along_axis(xs, dist.argmin(axis=1)[:, None], 1)[:, 0]
    return np.stack([bottom, top, mid, np.ones(n)], axis=1)


def _jacobian(lx: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b, t, c, h = (p[:, i : i + 1] for i in range(4))
    u = 10.0 ** np.clip(h * (c - lx), -300, 300)
    d = 1.0 + u
    f = b + (t - b) / d
    common = -(t - b) * u * LN10 / d**2
    jac = np.stack([1.0 - 1.0 / d, 1.0 / d, common * h, common * (c - lx)], axis=2)
    return f, jac


def fit_4pl(
    lx: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None = None,
    *,
    hill_min: float = 0.1,
    hill_max: float = 10.0,
    max_iter: int = 200,
    r2_min: float = 0.8,
    p0: np.ndarray | None = None,
    tol: float = 1e-10,
) -> Fits:
    """Fit the 4PL to every row of ``lx``/``y`` (shape (n, m); ``w`` 1 for real points, 0 for
    padding).  Bounded Levenberg-Marquardt: steps are projected onto the bounds of
    :func:`bounds_for`, the damping adapts per curve, and a curve stops when its relative
    decrease in squared error falls below ``tol``.
    """
    lx = np.asarray(lx, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = (
        np.isfinite(y).astype(np.float64)
        if w is None
        else np.asarray(w, dtype=np.float64) * np.isfinite(y)
    )
    y = np.where(w > 0, y, 0.0)
    lx = np.where(w > 0, lx, 0.0)
    n = lx.shape[0]
    npts = w.sum(axis=1)
    enough = npts >= 5
    lo, hi = (
        bounds_for(np.where(w > 0, lx, np.nan), y, w, hill_min=hill_min, hill_max=hill_max)
        if n
        else (np.zeros((0, 4)), np.zeros((0, 4)))
    )
    p = np.clip(initial_guess(lx, y, w) if p0 is None else np.asarray(p0, dtype=np.float64), lo, hi)
    f, jac = _jacobian(lx, p)
    sse = (w * (y - f) ** 2).sum(1)
    lam = np.full(n, 1e-3)
    active = enough.copy()
    converged = np.zeros(n, dtype=bool)
    iterations = np.zeros(n, dtype=np.int64)
    eye = np.eye(4)
    for _ in range(max_iter):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        ja, ra, wa = jac[idx], (y[idx] - f[idx]), w[idx]
        jtw = ja.transpose(0, 2, 1) * wa[:, None, :]
        a = jtw @ ja
        g = (jtw @ ra[:, :, None])[:, :, 0]
        diag = np.einsum("nii->ni", a)
        damp = a + (lam[idx, None, None] * (diag[:, :, None] * eye + 1e-12 * eye))
        try:
            step = np.linalg.solve(damp, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.stack(
                [np.linalg.lstsq(m_, g_, rcond=None)[0] for m_, g_ in zip(damp, g, strict=False)]
            )
        trial = np.clip(p[idx] + step, lo[idx], hi[idx])
        ft, jt = _jacobian(lx[idx], trial)
        sse_t = (wa * (y[idx] - ft) ** 2).sum(1)
        better = np.isfinite(sse_t) & (sse_t <= sse[idx])
        iterations[idx] += 1
        acc = idx[better]
        rel = (sse[acc] - sse_t[better]) / np.maximum(sse[acc], 1e-300)
        moved = np.abs(trial[better] - p[acc]).max(axis=1)
        p[acc], f[acc], jac[acc], sse[acc] = trial[better], ft[better], jt[better], sse_t[better]
        lam[acc] = np.maximum(lam[acc] / 3.0, 1e-12)
        rej = idx[~better]
        lam[rej] = lam[rej] * 4.0
        done = acc[(rel < tol) | (moved < 1e-12) | (sse[acc] <= 1e-300)]
        stuck = rej[lam[rej] > 1e12]  # no downhill step even with tiny steps: a minimum
        converged[done] = True
        converged[stuck] = True
        active[done] = False
        active[stuck] = False
    return _finish(lx, y, w, p, sse, converged, iterations, lo, hi, enough, r2_min)


def _finish(lx, y, w, p, sse, converged, iterations, lo, hi, enough, r2_min) -> Fits:
    n = len(p)
    npts = w.sum(1)
    mean = (w * y).sum(1) / np.maximum(npts, 1)
    sst = (w * (y - mean[:, None]) ** 2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sst > 0, 1 - sse / sst, np.nan)
    # confidence interval of log10 EC50 from the covariance s^2 (J'J)^-1 at the solution
    _, jac = _jacobian(lx, p)
    jtw = jac.transpose(0, 2, 1) * w[:, None, :]
    a = jtw @ jac
    dof = np.maximum(npts - 4, 1)
    var_c = np.full(n, np.nan)
    ok_det = np.abs(np.linalg.det(a)) > 1e-300
    if ok_det.any():
        inv = np.linalg.pinv(a[ok_det])
        var_c[ok_det] = inv[:, 2, 2] * sse[ok_det] / dof[ok_det]
    tq = stdtrit(dof, 0.975)
    half = np.where((npts > 4) & (var_c >= 0), tq * np.sqrt(np.abs(var_c)), np.nan)
    status = np.full(n, "ok", dtype=object)
    tol_b = 1e-6 * np.maximum(1, np.abs(hi - lo))
    at_lo, at_hi = np.abs(p - lo) <= tol_b, np.abs(p - hi) <= tol_b
    status[(at_lo[:, 3] | at_hi[:, 3])] = "hill_at_bound"
    status[(at_lo[:, 2] | at_hi[:, 2])] = "ec50_at_bound"
    status[~(r2 >= r2_min)] = "low_r2"
    status[~converged] = "not_converged"
    status[~enough] = "too_few_points"
    p = np.where(enough[:, None], p, np.nan)
    return Fits(
        bottom=p[:, 0],
        top=p[:, 1],
        log10_ec50=p[:, 2],
        hill=p[:, 3],
        r2=np.where(enough, r2, np.nan),
        log10_ec50_ci_low=p[:, 2] - half,
        log10_ec50_ci_high=p[:, 2] + half,
        converged=converged & enough,
        iterations=iterations,
        status=status.astype(str),
    )


def pad_curves(
    groups: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack ragged (log10 dose, response) curves into (n, m) arrays plus a 0/1 weight mask."""
    m = max((len(x) for x, _ in groups), default=0)
    lx = np.zeros((len(groups), m))
    y = np.zeros((len(groups), m))
    w = np.zeros((len(groups), m))
    for i, (x, v) in enumerate(groups):
        lx[i, : len(x)] = x
        y[i, : len(v)] = v
        w[i, : len(v)] = 1.0
    return lx, y, w
