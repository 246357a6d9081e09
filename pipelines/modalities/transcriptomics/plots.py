"""QC figures as deterministic PNGs (no timestamp, no random jitter, fixed size and dpi).

Plain matplotlib rather than ``sc.pl``: scanpy's violins scatter jittered points (random) and
``highest_expr_genes`` normalises a full copy of the matrix; these draw from per-cell vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipelines.toolkit.figures import save_png

# PNG tEXt chunks: matplotlib writes its version as "Software"; drop it so a matplotlib upgrade
# does not change a dataset's digest by itself.
DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    return save_png(fig, path, dpi=DPI)


def qc_violins(
    *,
    metrics: dict[str, np.ndarray],
    thresholds: dict[str, dict[str, float | None]],
    dest: Path,
    title: str,
) -> Path:
    """One violin per QC metric with its lower/upper thresholds as red lines."""
    plt = _plt()
    names = list(metrics)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        values = np.asarray(metrics[name], dtype=float)
        values = values[np.isfinite(values)]
        if values.size > 1 and np.ptp(values) > 0:
            ax.violinplot(values, showmedians=True)
        else:
            ax.plot([1], [values[0] if values.size else 0], "o")
        for side in ("lower", "upper"):
            t = (thresholds.get(name) or {}).get(side)
            if t is not None and np.isfinite(t):
                ax.axhline(t, color="tab:red", lw=1, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, dest)


def highest_expressed(*, fractions: np.ndarray, names: list[str], dest: Path) -> Path:
    """Box plot of the per-cell % of counts of the top genes (columns of ``fractions``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 0.28 * len(names) + 1.2))
    ax.boxplot(fractions[:, ::-1] * 100, orientation="horizontal", showfliers=False)
    ax.set_yticks(np.arange(1, len(names) + 1), names[::-1], fontsize=8)
    ax.set_xlabel("% of counts in cell")
    ax.set_title("Highest expressed genes", fontsize=10)
    fig.tight_layout()
    return _save(fig, dest)


def embedding(
    *,
    coords: np.ndarray,
    labels: np.ndarray,
    dest: Path,
    title: str,
    xlabel: str = "UMAP1",
    ylabel: str = "UMAP2",
) -> Path:
    """Scatter coloured by cluster, with the cluster number at each cluster's median."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    cats = list(dict.fromkeys(sorted(set(labels.tolist()), key=lambda x: (len(str(x)), str(x)))))
    cmap = plt.get_cmap("tab20")
    size = max(0.5, min(20.0, 3000 / max(len(labels), 1)))
    for i, c in enumerate(cats):
        m = labels == c
        ax.scatter(
            coords[m, 0],
            coords[m, 1],
            s=size,
            color=cmap(i % 20),
            label=str(c),
            linewidths=0,
            rasterized=True,
        )
        cx, cy = np.median(coords[m], axis=0)
        ax.text(cx, cy, str(c), fontsize=8, weight="bold", ha="center", va="center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    if len(cats) <= 30:
        ax.legend(
            markerscale=max(1.0, 6 / size),
            fontsize=7,
            loc="center left",
            bbox_to_anchor=(1, 0.5),
            frameon=False,
        )
    fig.tight_layout()
    return _save(fig, dest)


def pca_samples(
    *,
    coords: np.ndarray,
    names: list[str],
    groups: list[str] | None,
    variance_ratio: np.ndarray,
    dest: Path,
) -> Path:
    """Bulk samples on PC1/PC2, labelled, coloured by group."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    groups = groups or ["samples"] * len(names)
    cmap = plt.get_cmap("tab10")
    for i, g in enumerate(dict.fromkeys(groups)):
        m = np.array([x == g for x in groups])
        ax.scatter(
            coords[m, 0],
            coords[m, 1] if coords.shape[1] > 1 else np.zeros(m.sum()),
            color=cmap(i % 10),
            label=str(g),
            s=40,
        )
    for (x, y), n in zip(
        coords[:, :2] if coords.shape[1] > 1 else np.c_[coords[:, 0], np.zeros(len(names))],
        names,
        strict=False,
    ):
        ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    vr = [*list(variance_ratio), 0.0, 0.0]
    ax.set_xlabel(f"PC1 ({vr[0] * 100:.1f}%)")
    ax.set_ylabel(f"PC2 ({vr[1] * 100:.1f}%)")
    ax.set_title("Samples, PCA of log-CPM", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _save(fig, dest)


def correlation_heatmap(*, corr: np.ndarray, names: list[str], dest: Path) -> Path:
    plt = _plt()
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * n + 1.5, 1.0 + 0.45 * n))
    im = ax.imshow(corr, cmap="viridis", vmin=min(float(np.nanmin(corr)), 0.9), vmax=1.0)
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    if n <= 24:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white"
                )
    fig.colorbar(im, ax=ax, label="Pearson r (log-CPM)")
    ax.set_title("Sample correlation", fontsize=10)
    fig.tight_layout()
    return _save(fig, dest)
