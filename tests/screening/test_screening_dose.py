"""Batched 4PL fits against scipy.optimize.curve_fit on synthetic curves with known parameters."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit

from pipelines.modalities.screening import dose

CONC = np.geomspace(0.001, 30.0, 10)


def _curves(n: int, *, seed: int, noise: float = 4.0, reps: int = 2):
    rng = np.random.default_rng(seed)
    true = np.stack(
        [
            rng.uniform(90, 110, n),
            rng.uniform(-10, 10, n),  # bottom, top (inhibition)
            rng.uniform(-2.0, 0.5, n),
            rng.uniform(0.6, 3.0, n),
        ],
        axis=1,
    )
    lx = np.tile(np.log10(np.repeat(CONC, reps)), (n, 1))
    y = dose.logistic4(lx, *(true[:, i : i + 1] for i in range(4))) + rng.normal(0, noise, lx.shape)
    return lx, y, true


def test_batched_fits_match_curve_fit_with_the_same_bounds_and_start():
    lx, y, true = _curves(60, seed=0)
    w = np.ones_like(y)
    fits = dose.fit_4pl(lx, y, w)
    lo, hi = dose.bounds_for(lx, y, w, hill_min=0.1, hill_max=10.0)
    p0 = np.clip(dose.initial_guess(lx, y, w), lo, hi)
    ref = np.array(
        [
            curve_fit(dose.logistic4, lx[i], y[i], p0=p0[i], bounds=(lo[i], hi[i]))[0]
            for i in range(len(y))
        ]
    )
    ours = np.stack([fits.bottom, fits.top, fits.log10_ec50, fits.hill], axis=1)
    ok = fits.ok
    assert ok.mean() > 0.9
    # same optimum: EC50 to 1e-3 decades, asymptotes to 0.05 response units
    np.testing.assert_allclose(ours[ok, 2], ref[ok, 2], atol=1e-3)
    np.testing.assert_allclose(ours[ok, :2], ref[ok, :2], atol=0.05)
    # and the same accuracy against the truth
    err_ours = np.median(np.abs(ours[:, 2] - true[:, 2]))
    err_ref = np.median(np.abs(ref[:, 2] - true[:, 2]))
    assert err_ours <= err_ref * 1.01 + 1e-6
    assert err_ours < 0.1


def test_exact_curves_are_recovered_and_ci_covers_the_truth():
    lx, y, true = _curves(40, seed=1, noise=0.0)
    fits = dose.fit_4pl(lx, y + 1e-9 * np.arange(y.shape[1]))
    np.testing.assert_allclose(fits.log10_ec50, true[:, 2], atol=1e-4)
    np.testing.assert_allclose(fits.hill, true[:, 3], rtol=1e-3)
    lx, y, true = _curves(200, seed=2, noise=5.0)
    fits = dose.fit_4pl(lx, y)
    inside = (fits.log10_ec50_ci_low <= true[:, 2]) & (true[:, 2] <= fits.log10_ec50_ci_high)
    assert 0.85 <= inside[fits.ok].mean() <= 1.0  # nominal 95 %


def test_flat_and_noisy_curves_are_flagged_not_raised():
    rng = np.random.default_rng(3)
    lx = np.tile(np.log10(CONC), (3, 1))
    y = np.stack(
        [
            np.full(10, 50.0) + rng.normal(0, 5, 10),  # no response: EC50 unidentifiable
            rng.normal(0, 30, 10),  # noise only
            dose.logistic4(lx[0], 100, 0, -1, 1),
        ]
    )  # a clean curve for contrast
    fits = dose.fit_4pl(lx, y)
    assert list(fits.ok) == [False, False, True]
    assert set(fits.status[:2]) <= {"low_r2", "ec50_at_bound", "hill_at_bound", "not_converged"}
    assert np.isfinite(fits.r2[:2]).all()


def test_too_few_points_and_padding():
    lx, y, w = dose.pad_curves(
        [
            (np.log10(CONC[:3]), np.array([1.0, 2.0, 3.0])),
            (np.log10(CONC), dose.logistic4(np.log10(CONC), 0, 100, -1, 1.5)),
        ]
    )
    fits = dose.fit_4pl(lx, y, w)
    assert fits.status[0] == "too_few_points" and np.isnan(fits.log10_ec50[0])
    assert fits.ok[1] and fits.log10_ec50[1] == pytest.approx(-1, abs=1e-4)
    assert fits.top[1] == pytest.approx(100, abs=0.01)  # increasing curve: top above bottom


def test_not_converged_when_iterations_run_out():
    lx, y, _ = _curves(5, seed=4)
    fits = dose.fit_4pl(lx, y, max_iter=1)
    assert (fits.status == "not_converged").all() and not fits.converged.any()
