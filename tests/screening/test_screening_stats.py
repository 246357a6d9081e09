"""Plate statistics against independent references: numpy/pandas per plate, hand-worked values."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pipelines.modalities.screening import stats


def _plates(n=6, rows=16, cols=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(1000, 50, (n, rows, cols))
    x[rng.random(x.shape) < 0.05] = np.nan
    return x


def test_nanmedian_matches_numpy_on_every_axis():
    x = _plates()
    x[0, 3, :] = np.nan  # an all-NaN row must give NaN, not a number
    for axis in (0, 1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy warns about the all-NaN row
            expected = np.nanmedian(x, axis=axis)
        np.testing.assert_allclose(stats.nanmedian(x, axis=axis), expected, equal_nan=True)


def test_plate_mad_is_r_mad():
    x = _plates(n=3)
    mask = np.ones_like(x, dtype=bool)
    mask[:, :, :2] = False
    for p in range(3):
        v = x[p][mask[p]]
        v = v[~np.isnan(v)]
        r_mad = 1.4826 * np.median(np.abs(v - np.median(v)))
        assert stats.plate_mad(x, mask)[p] == pytest.approx(r_mad)


def test_median_polish_removes_additive_row_and_column_effects():
    """A plate = overall + row effect + column effect + small noise: the B-score residuals are the
    noise (scaled), so the row/column pattern is gone (what the B-score is for, Malo 2006)."""
    rng = np.random.default_rng(1)
    rows, cols = 16, 24
    noise = rng.normal(0, 1, (4, rows, cols))
    row_eff = rng.normal(0, 30, (4, rows, 1))
    col_eff = np.linspace(-40, 40, cols)[None, None, :]
    x = 500 + row_eff + col_eff + noise
    sample = np.ones_like(x, dtype=bool)
    b = stats.b_score(x, sample=sample)
    # the raw column effect spans 80 noise units; what is left per row/column is noise-sized
    assert np.abs(b.mean(axis=2)).max() < 1.0
    assert np.abs(b.mean(axis=1)).max() < 1.0
    assert (
        abs(
            np.corrcoef(b.mean(axis=1).ravel(), np.broadcast_to(col_eff[0], (4, cols)).ravel())[
                0, 1
            ]
        )
        < 0.3
    )
    corr = np.corrcoef(b.ravel(), noise.ravel())[0, 1]
    assert corr > 0.9  # the raw values correlate with the noise at ~0.02


def test_median_polish_follows_r_medpolish_on_a_worked_example():
    """R's medpolish on rows (1,2,3), (4,6,5), (9,7,8), worked by hand in its update order:
    sweep 1 takes row medians (2,5,8), then column medians (-1,0,0) of the residuals, then
    centres the row effects on 5; sweep 2 changes nothing and the sum of |residuals| (5) stops it."""
    x = np.array([[[1.0, 2, 3], [4, 6, 5], [9, 7, 8]]])
    overall, row, col = stats.median_polish(x, mask=np.ones_like(x, dtype=bool))
    resid = x - overall[:, None, None] - row[:, :, None] - col[:, None, :]
    assert overall[0] == pytest.approx(5.0)
    np.testing.assert_allclose(row[0], [-3, 0, 3])
    np.testing.assert_allclose(col[0], [-1, 0, 0])
    np.testing.assert_allclose(resid[0], [[0, 0, 1], [0, 1, 0], [2, -1, 0]])


def test_normalisation_methods_on_hand_worked_plate():
    x = np.array([[[10.0, 20.0, 100.0, 110.0, 50.0, 60.0]]])  # neg, neg, pos, pos, samples
    neg = np.array([[[1, 1, 0, 0, 0, 0]]], dtype=bool)
    pos = np.array([[[0, 0, 1, 1, 0, 0]]], dtype=bool)
    sample = np.array([[[0, 0, 0, 0, 1, 1]]], dtype=bool)
    out = {
        m: stats.normalise(x, method=m, sample=sample, negative=neg, positive=pos)[0][0, 0]
        for m in ("median", "mean", "negatives", "poc", "npi", "percent_inhibition", "none")
    }
    np.testing.assert_allclose(out["median"], x[0, 0] / 55.0)
    np.testing.assert_allclose(out["mean"], x[0, 0] / 55.0)
    np.testing.assert_allclose(out["negatives"], x[0, 0] / 15.0)
    np.testing.assert_allclose(out["poc"], 100 * x[0, 0] / 105.0)
    # cellHTS2 NPI: (mean(pos) - x) / (mean(pos) - mean(neg)): negatives -> 1, positives -> 0
    np.testing.assert_allclose(out["npi"], (105.0 - x[0, 0]) / 90.0)
    assert out["npi"][:2].mean() == pytest.approx(1.0) and out["npi"][2:4].mean() == pytest.approx(
        0.0
    )
    np.testing.assert_allclose(out["percent_inhibition"], 100 * (15.0 - x[0, 0]) / (15.0 - 105.0))
    np.testing.assert_allclose(out["none"], x[0, 0])


def test_normalisation_without_controls_is_undefined_not_a_crash():
    x = np.ones((2, 2, 3))
    none = np.zeros_like(x, dtype=bool)
    out, defined = stats.normalise(x, method="poc", sample=~none, negative=none, positive=none)
    assert np.isnan(out).all() and not defined.any()


def test_plate_qc_z_prime_and_friends():
    rng = np.random.default_rng(3)
    x = np.full((1, 4, 6), 500.0)
    x[0, :, 0] = rng.normal(1000, 20, 4)
    x[0, :, 1] = rng.normal(100, 10, 4)
    neg = np.zeros_like(x, dtype=bool)
    neg[0, :, 0] = True
    pos = np.zeros_like(x, dtype=bool)
    pos[0, :, 1] = True
    qc = stats.plate_qc(x, negative=neg, positive=pos)
    n, p = x[0, :, 0], x[0, :, 1]
    z = 1 - 3 * (n.std(ddof=1) + p.std(ddof=1)) / abs(n.mean() - p.mean())
    assert qc["z_prime"][0] == pytest.approx(z)
    assert qc["signal_to_background"][0] == pytest.approx(p.mean() / n.mean())
    assert qc["cv_negative"][0] == pytest.approx(100 * n.std(ddof=1) / n.mean())
    assert qc["signal_to_noise"][0] == pytest.approx((p.mean() - n.mean()) / n.std(ddof=1))
    # one control well of a kind: Z' undefined (NaN), not an error
    pos1 = np.zeros_like(pos)
    pos1[0, 0, 1] = True
    assert np.isnan(stats.plate_qc(x, negative=neg, positive=pos1)["z_prime"][0])


def test_screen_zscore_is_cellhts2_score_replicates():
    x = _plates(n=4)
    sample = np.ones_like(x, dtype=bool)
    sample[:, :, :2] = False
    group = np.array([0, 1, 0, 1])
    z = stats.screen_zscore(x, sample=sample, group=group)
    for g in (0, 1):
        vals = pd.Series(x[group == g][sample[group == g]]).dropna()
        med, mad = vals.median(), 1.4826 * (vals - vals.median()).abs().median()
        np.testing.assert_allclose(z[group == g], (x[group == g] - med) / mad, equal_nan=True)


@pytest.mark.parametrize(
    "method,expected",
    [
        ("mean", [2.0, -1.0]),
        ("median", [2.0, -1.0]),
        ("max", [3.0, 1.0]),
        ("min", [1.0, -3.0]),
        ("rms", [np.sqrt(5.0), np.sqrt(5.0)]),
        ("closest_to_zero", [1.0, 1.0]),
        ("furthest_from_zero", [3.0, -3.0]),
    ],
)
def test_replicate_summaries(method, expected):
    scores = np.array([[1.0, 3.0], [1.0, -3.0]])[:, :, None]  # (wells as groups, replicates, 1)
    got = stats.summarise_replicates(scores, method=method)[:, 0]
    np.testing.assert_allclose(got, expected)


def test_replicate_summary_ignores_missing_replicates():
    scores = np.array([[[np.nan], [2.0]], [[np.nan], [np.nan]]])
    got = stats.summarise_replicates(scores, method="mean")
    assert got[0, 0] == 2.0 and np.isnan(got[1, 0])
