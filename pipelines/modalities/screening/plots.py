"""QC plots of a scored screen (PNG, no timestamps: same data -> same bytes)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on HPC nodes; Agg output is byte-stable
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipelines.modalities.screening import dose
from pipelines.toolkit.figures import save_png

DPI = 100


def _save(fig, path: str | Path) -> Path:
    return save_png(fig, path, dpi=DPI)


def _grid(n: int) -> tuple[int, int]:
    cols = min(6, max(1, n))
    return math.ceil(n / cols), cols


def plate_heatmaps(
    wells: pd.DataFrame, *, column: str, path: str | Path, max_plates: int, title: str
) -> Path:
    """One heatmap per plate (replicate 1, channel 1 of the first ``max_plates`` plates); one
    colour scale (1st-99th percentile) so plates compare."""
    first = wells[
        (wells["replicate"] == wells["replicate"].min())
        & (wells["channel"] == wells["channel"].min())
    ]
    plates = sorted(first["plate"].unique())[:max_plates]
    nrows_plate = int(first["row"].nunique()) if len(first) else 1
    ncols_plate = int(first["column"].max()) if len(first) else 1
    sub = first[first["plate"].isin(plates)]
    # excluded wells keep their raw reading in the table; on the map they show as excluded
    sub = sub.assign(**{column: sub[column].where(~sub["excluded"])})
    vals = sub[column].to_numpy(dtype=float)
    finite = vals[np.isfinite(vals)]
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    r, c = _grid(max(1, len(plates)))
    fig, axes = plt.subplots(r, c, figsize=(2.4 * c, 1.9 * r + 0.8), squeeze=False)
    fig.subplots_adjust(top=1 - 0.6 / (1.9 * r + 0.8))  # room for the title above the first row
    im = None
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")  # excluded / missing wells
    for ax, plate in zip(axes.ravel(), plates, strict=False):
        grid = (
            sub[sub["plate"] == plate][column]
            .to_numpy(dtype=float)
            .reshape(nrows_plate, ncols_plate)
        )
        im = ax.imshow(
            np.ma.masked_invalid(grid),
            vmin=lo,
            vmax=hi,
            cmap=cmap,
            aspect="equal",
            interpolation="nearest",
        )
        ax.set_title(f"plate {plate}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(plates) :]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=column)
    fig.suptitle(
        f"{title} (replicate {int(wells['replicate'].min()) if len(wells) else 1}; grey = excluded/missing)",
        fontsize=10,
    )
    return _save(fig, path)


def plate_quality(
    plates: pd.DataFrame, *, path: str | Path, z_prime_min: float, sb_min: float
) -> Path:
    """Z' and robust Z' per plate reading (top) and the control fold S/B (bottom), with the
    pass thresholds."""
    x = np.arange(len(plates))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    ax1.plot(x, plates["z_prime"], "o", ms=3, label="Z'")
    ax1.plot(x, plates["robust_z_prime"], "x", ms=3, label="robust Z'")
    ax1.axhline(z_prime_min, color="red", lw=0.8, ls="--", label=f"pass >= {z_prime_min}")
    if not np.isfinite(plates["z_prime"].to_numpy(dtype=float)).any():
        ax1.set_ylim(-1, 1)
        ax1.text(
            0.5,
            0.25,
            "Z' undefined on every plate (fewer than 2 wells of a control kind)",
            ha="center",
            va="center",
            transform=ax1.transAxes,
            fontsize=9,
        )
    ax1.set_ylabel("Z'-factor")
    ax1.legend(fontsize=7, loc="lower left")
    sb = plates["signal_to_background"].to_numpy(dtype=float)
    fold = np.where(sb > 0, np.maximum(sb, 1 / np.where(sb > 0, sb, 1)), np.nan)
    colors = np.where(plates["qc_pass"].to_numpy(), "tab:green", "tab:red")
    ax2.scatter(x, fold, c=colors, s=9)
    ax2.axhline(sb_min, color="red", lw=0.8, ls="--")
    ax2.set_ylabel("control fold S/B")
    ax2.set_xlabel("plate reading (plate, replicate, channel order); red = QC fail")
    fig.tight_layout()
    return _save(fig, path)


def score_distribution(
    wells: pd.DataFrame, *, path: str | Path, threshold: float, direction: str
) -> Path:
    """Histogram of the per-replicate score for samples and controls, with the hit threshold."""
    fig, ax = plt.subplots(figsize=(7, 4))
    finite = wells["score"].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    bins = np.linspace(*np.percentile(finite, [0.1, 99.9]), 80) if finite.size else 10
    for role, color in (
        ("sample", "tab:gray"),
        ("negative", "tab:blue"),
        ("positive", "tab:red"),
        ("inhibitor", "tab:purple"),
    ):
        v = wells.loc[wells["control"] == role, "score"].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if v.size:
            ax.hist(
                np.clip(v, bins[0], bins[-1]) if isinstance(bins, np.ndarray) else v,
                bins=bins,
                alpha=0.6,
                color=color,
                label=f"{role} (n={v.size})",
                density=True,
            )
    if direction in ("up", "both"):
        ax.axvline(threshold, color="k", ls="--", lw=0.8)
    if direction in ("down", "both"):
        ax.axvline(-threshold, color="k", ls="--", lw=0.8)
    ax.set_xlabel("score (per replicate)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def dose_response_curves(
    wells: pd.DataFrame,
    fits: pd.DataFrame,
    *,
    path: str | Path,
    response: str,
    max_curves: int = 12,
) -> Path:
    """Data and fitted 4PL of the compounds with hit wells (then the best fits), up to 12."""
    if fits.empty:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(
            0.5,
            0.5,
            "no dose-response series (no concentrations in the plate map)",
            ha="center",
            va="center",
            fontsize=9,
        )
        ax.axis("off")
        return _save(fig, path)
    order = (
        fits.assign(_hit=-fits["n_hit_wells"], _r2=-fits["r2"].fillna(-np.inf))
        .sort_values(["_hit", "_r2", "compound_key", "channel"], kind="stable")
        .head(max_curves)
    )
    r, c = _grid(len(order))
    fig, axes = plt.subplots(r, c, figsize=(2.8 * c, 2.4 * r), squeeze=False, sharey=True)
    key = wells["compound"].where(wells["compound"].notna(), wells["sample_id"])
    usable = (wells["concentration"] > 0) & (wells["control"] == "sample") & ~wells["excluded"]
    points = wells[usable].assign(_key=key[usable]).groupby(["_key", "channel"])
    for ax, f in zip(axes.ravel(), order.itertuples(), strict=False):
        # log10 dose on a linear axis: matplotlib's log-axis tick machinery costs ~0.3 s a panel
        pts = points.get_group((f.compound_key, f.channel))
        ax.plot(np.log10(pts["concentration"]), pts[response], "o", ms=3)
        if np.isfinite(f.log10_ec50):
            xs = np.linspace(
                np.log10(f.concentration_min) - 0.5, np.log10(f.concentration_max) + 0.5, 100
            )
            ax.plot(
                xs,
                dose.logistic4(xs, f.bottom, f.top, f.log10_ec50, f.hill),
                "-",
                color="tab:red" if f.fit_ok else "tab:orange",
            )
            ax.axvline(f.log10_ec50, color="gray", lw=0.6, ls=":")
        label = f"EC50 {f.ec50:.3g} {f.concentration_unit}" if np.isfinite(f.ec50) else "no fit"
        ax.set_title(f"{f.compound_key}: {label}\n{f.status}, R2 {f.r2:.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(order) :]:
        ax.axis("off")
    unit = order["concentration_unit"].iloc[0]
    fig.text(0.5, 0.01, f"log10 concentration ({unit})", ha="center", fontsize=8)
    fig.text(0.005, 0.5, response, va="center", rotation="vertical", fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.1, top=0.9, hspace=0.6, wspace=0.15)
    return _save(fig, path)


def make_plots(
    *,
    wells: str | Path,
    plates: str | Path,
    dose_response: str | Path,
    block: dict | None,
    heatmap_raw: str | Path,
    heatmap_normalised: str | Path,
    plate_qc: str | Path,
    score_hist: str | Path,
    curves: str | Path,
) -> list[Path]:
    """All QC plots of the screen (one rule: plotting is cheap next to starting a job)."""
    from pipelines.modalities.screening.config import settings

    cfg = settings(block)
    w = pd.read_parquet(wells)
    p = pd.read_parquet(plates)
    d = pd.read_parquet(dose_response)
    n = int(cfg["heatmap_plates"])
    return [
        plate_heatmaps(w, column="raw", path=heatmap_raw, max_plates=n, title="raw readings"),
        plate_heatmaps(
            w,
            column="normalised",
            path=heatmap_normalised,
            max_plates=n,
            title=f"normalised ({cfg['normalisation']})",
        ),
        plate_quality(
            p,
            path=plate_qc,
            z_prime_min=cfg["qc"]["z_prime_min"],
            sb_min=cfg["qc"]["signal_to_background_min"],
        ),
        score_distribution(
            w,
            path=score_hist,
            threshold=cfg["hits"]["threshold"],
            direction=cfg["hits"]["direction"],
        ),
        dose_response_curves(w, d, path=curves, response=cfg["dose_response"]["response"]),
    ]
