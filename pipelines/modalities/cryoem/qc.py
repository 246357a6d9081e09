"""QC of a map: statistics, histogram, orthogonal slices and projections, FSC of half maps.

Statistics, slices and projections stream brick by brick (two passes: the histogram range
needs the minimum and maximum first).  The FSC needs whole volumes in Fourier space, so it
holds both half maps (and their transforms) in memory; its rule declares that much memory.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.errors import InputError, Problem
from pipelines.modalities.cryoem.mrc import MapHeader, iter_bricks, read_zyx
from pipelines.toolkit.figures import save_png
from pipelines.toolkit.tables import columns_for, write_table

log = logging.getLogger(__name__)
HISTOGRAM_BINS = 256
FSC_THRESHOLDS = (0.143, 0.5)
# PNG metadata: matplotlib writes "Software: matplotlib version..." by default; dropping it
# keeps the bytes identical across matplotlib versions and runs.


# ---------------------------------------------------------------------------- statistics
@dataclass(frozen=True, slots=True)
class MapStats:
    """Map statistics. ``rms`` is the RMS deviation from the mean (the MRC header's RMS)."""

    n_voxels: int
    min: float
    max: float
    mean: float
    rms: float
    n_nonfinite: int


def _stats_pass(header: MapHeader) -> tuple[MapStats, dict[str, np.ndarray]]:
    nz, ny, nx = header.shape_zyx
    centre = (nz // 2, ny // 2, nx // 2)
    slices = {
        "z": np.zeros((ny, nx), np.float32),
        "y": np.zeros((nz, nx), np.float32),
        "x": np.zeros((nz, ny), np.float32),
    }
    proj = {
        "z": np.full((ny, nx), -np.inf, np.float32),
        "y": np.full((nz, nx), -np.inf, np.float32),
        "x": np.full((nz, ny), -np.inf, np.float32),
    }
    n, mean, m2 = 0, 0.0, 0.0
    lo, hi, nonfinite = math.inf, -math.inf, 0
    for b in iter_bricks(header):
        zs, ys, xs = header.region_zyx(b.s, b.r, slice(0, header.file_shape[2]))
        a = np.transpose(b.data, header.file_to_zyx).astype(np.float32, copy=False)
        finite = np.isfinite(a)
        if not finite.all():
            nonfinite += int((~finite).sum())
            a = np.where(finite, a, np.float32(0))
        # Chan et al. pairwise combination: exact-enough variance for GB maps in float64
        bn = a.size
        bmean = float(a.mean(dtype=np.float64))
        bm2 = float(np.square(a - np.float32(bmean), dtype=np.float64).sum())
        delta = bmean - mean
        tot = n + bn
        mean += delta * bn / tot
        m2 += bm2 + delta * delta * n * bn / tot
        n = tot
        lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
        proj["z"][ys, xs] = np.maximum(proj["z"][ys, xs], a.max(axis=0))
        proj["y"][zs, xs] = np.maximum(proj["y"][zs, xs], a.max(axis=1))
        proj["x"][zs, ys] = np.maximum(proj["x"][zs, ys], a.max(axis=2))
        if zs.start <= centre[0] < zs.stop:
            slices["z"][ys, xs] = a[centre[0] - zs.start]
        if ys.start <= centre[1] < ys.stop:
            slices["y"][zs, xs] = a[:, centre[1] - ys.start]
        if xs.start <= centre[2] < xs.stop:
            slices["x"][zs, ys] = a[:, :, centre[2] - xs.start]
    stats = MapStats(
        n_voxels=n,
        min=lo,
        max=hi,
        mean=mean,
        rms=math.sqrt(m2 / n) if n else 0.0,
        n_nonfinite=nonfinite,
    )
    return stats, {"slices": slices, "projections": proj}


def _histogram(header: MapHeader, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    if hi <= lo:
        hi = lo + 1.0  # a constant map: one populated bin
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    counts = np.zeros(HISTOGRAM_BINS, np.int64)
    for b in iter_bricks(header):
        a = b.data[np.isfinite(b.data)] if np.issubdtype(b.data.dtype, np.floating) else b.data
        counts += np.histogram(a, bins=edges)[0]
    return edges, counts


def map_qc(
    *,
    src: str | Path,
    stats_json: str | Path,
    histogram_parquet: str | Path,
    slices_png: str | Path,
    projections_png: str | Path,
    display: str | None = None,
    voxel_size_zyx: tuple[float, float, float] | None = None,
) -> MapStats:
    """Statistics (JSON), histogram (Parquet), central slices and max projections (PNG) of a map.

    Streams the map twice (statistics and pictures, then the histogram).
    """
    from pipelines.modalities.cryoem.mrc import open_header
    from pipelines.toolkit.stage import write_json

    header = open_header(src, display=display)
    voxel = voxel_size_zyx or header.voxel_size_zyx
    stats, pics = _stats_pass(header)
    edges, counts = _histogram(header, stats.min, stats.max)
    write_json(
        stats_json,
        {
            **asdict(stats),
            "file": header.display,
            "histogram_bins": HISTOGRAM_BINS,
            "rms_definition": "root mean square deviation from the mean",
        },
    )
    table = pa.table(
        {
            "bin_start": pa.array(edges[:-1], pa.float64()),
            "bin_end": pa.array(edges[1:], pa.float64()),
            "count": pa.array(counts, pa.int64()),
        }
    )
    _write_parquet(table, histogram_parquet, format_name="binds-cryoem-histogram")
    _plot_three(pics["slices"], voxel, header.display, "central slices", slices_png, stats)
    _plot_three(
        pics["projections"], voxel, header.display, "maximum projections", projections_png, None
    )
    return stats


def _plot_three(
    planes: dict[str, np.ndarray],
    voxel_zyx: tuple[float, float, float],
    name: str,
    what: str,
    out: str | Path,
    stats: MapStats | None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vz, vy, vx = voxel_zyx
    # (plane, horizontal axis, vertical axis, extent in angstrom)
    panels = [
        ("z", "x", "y", planes["z"], (0, planes["z"].shape[1] * vx, planes["z"].shape[0] * vy, 0)),
        ("y", "x", "z", planes["y"], (0, planes["y"].shape[1] * vx, planes["y"].shape[0] * vz, 0)),
        ("x", "y", "z", planes["x"], (0, planes["x"].shape[1] * vy, planes["x"].shape[0] * vz, 0)),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=100)
    for ax, (normal, h, v, img, extent) in zip(axes, panels, strict=True):
        finite = img[np.isfinite(img)]
        lo, hi = np.percentile(finite, [1, 99.8]) if finite.size else (0, 1)
        ax.imshow(
            img,
            cmap="gray",
            extent=extent,
            vmin=lo,
            vmax=hi if hi > lo else lo + 1,
            interpolation="nearest",
        )
        ax.set_title(f"{'along' if 'proj' in what else 'normal to'} {normal}", fontsize=10)
        ax.set_xlabel(f"{h} (Å)")
        ax.set_ylabel(f"{v} (Å)")
    title = f"{name}: {what}"
    if stats:
        title += (
            f"  (min {stats.min:.3g}, max {stats.max:.3g}, mean {stats.mean:.3g}, "
            f"rms {stats.rms:.3g})"
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, out)


def _write_parquet(table: pa.Table, path: str | Path, *, format_name: str) -> None:
    # the shared writer: atomic, same table -> same bytes, columns documented
    write_table(
        table, path, format_name=format_name, format_version=1, columns=columns_for(format_name)
    )


# ---------------------------------------------------------------------------------- FSC
@dataclass(frozen=True, slots=True)
class FscResult:
    """FSC curve(s) and resolutions (angstrom) at 0.143 and 0.5.

    ``resolution_*`` is ``None`` when the curve never drops below the threshold before
    Nyquist; then ``*_at_nyquist`` is True and the figure is at best the Nyquist limit.
    """

    frequency: np.ndarray  # 1/angstrom, one per shell
    fsc: np.ndarray
    fsc_masked: np.ndarray | None
    n_coefficients: np.ndarray
    resolution_0143: float | None
    resolution_05: float | None
    nyquist_resolution: float
    masked: bool


def fsc_curve(
    half1: np.ndarray,
    half2: np.ndarray,
    *,
    voxel_size_zyx: tuple[float, float, float],
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fourier shell correlation of two z/y/x volumes on the same grid.

    Shells are spherical in physical frequency (anisotropic voxels allowed), one shell per
    ``1 / largest box edge`` (angstrom^-1), up to the Nyquist frequency of the coarsest axis.
    Returns ``(frequency, fsc, n_coefficients)``.
    """
    from scipy import fft

    if half1.shape != half2.shape:
        raise ValueError(f"half maps differ in shape: {half1.shape} vs {half2.shape}")
    shape = half1.shape
    f1 = fft.rfftn(half1.astype(np.float32, copy=False), workers=workers)
    f2 = fft.rfftn(half2.astype(np.float32, copy=False), workers=workers)
    vz, vy, vx = voxel_size_zyx
    kz = fft.fftfreq(shape[0], d=vz)
    ky = fft.fftfreq(shape[1], d=vy)
    kx = fft.rfftfreq(shape[2], d=vx)
    step = 1.0 / max(n * v for n, v in zip(shape, voxel_size_zyx, strict=True))
    n_shells = math.floor(1.0 / (2 * max(voxel_size_zyx)) / step + 1e-6) + 1
    # rfft stores half of a Hermitian spectrum: every column except x=0 (and x=Nyquist for even
    # nx) stands for two coefficients.
    weight_x = np.full(kx.size, 2.0)
    weight_x[0] = 1.0
    if shape[2] % 2 == 0:
        weight_x[-1] = 1.0
    cross = np.zeros(n_shells)
    p1 = np.zeros(n_shells)
    p2 = np.zeros(n_shells)
    count = np.zeros(n_shells)
    kyx2 = ky[:, None] ** 2 + kx[None, :] ** 2
    wyx = np.broadcast_to(weight_x, kyx2.shape).ravel()
    for iz in range(shape[0]):
        shell = np.rint(np.sqrt(kz[iz] ** 2 + kyx2) / step).astype(np.int64).ravel()
        keep = shell < n_shells
        s = shell[keep]
        a = f1[iz].ravel()[keep]
        b = f2[iz].ravel()[keep]
        w = wyx[keep]
        cross += np.bincount(s, weights=w * (a.real * b.real + a.imag * b.imag), minlength=n_shells)
        p1 += np.bincount(s, weights=w * (a.real**2 + a.imag**2), minlength=n_shells)
        p2 += np.bincount(s, weights=w * (b.real**2 + b.imag**2), minlength=n_shells)
        count += np.bincount(s, weights=w, minlength=n_shells)
    denom = np.sqrt(p1 * p2)
    fsc = np.divide(cross, denom, out=np.zeros(n_shells), where=denom > 0)
    return np.arange(n_shells) * step, fsc, count.astype(np.int64)


def resolution_at(frequency: np.ndarray, fsc: np.ndarray, threshold: float) -> float | None:
    """Resolution (angstrom) where the FSC first falls below ``threshold``, interpolated
    linearly between shells; ``None`` if it stays above it up to Nyquist."""
    for i in range(1, len(fsc)):
        if fsc[i] < threshold:
            f0, f1_ = frequency[i - 1], frequency[i]
            c0, c1 = fsc[i - 1], fsc[i]
            f = f0 + (c0 - threshold) / (c0 - c1) * (f1_ - f0) if c0 != c1 else f1_
            return float(1.0 / f) if f > 0 else None
    return None


def fsc_half_maps(
    *,
    half1: str | Path,
    half2: str | Path,
    mask: str | Path | None,
    fsc_parquet: str | Path,
    fsc_png: str | Path,
    fsc_json: str | Path,
    voxel_size_zyx: tuple[float, float, float] | None = None,
    displays: tuple[str | None, str | None, str | None] = (None, None, None),
    threads: int = 1,
) -> FscResult:
    """FSC between two half maps (and masked by ``mask`` when given): Parquet, PNG and JSON.

    The masked curve multiplies both half maps by the mask values (a soft mask is used as
    weights).  No noise-substitution correction is applied, so a tight mask can inflate the
    masked curve; the unmasked curve is always reported next to it.

    Raises
    ------
    InputError
        The half maps (or the mask) are on different grids, or hold NaN/Inf.
    """
    from pipelines.modalities.cryoem.mrc import open_header
    from pipelines.toolkit.stage import write_json

    h1 = open_header(half1, display=displays[0])
    h2 = open_header(half2, display=displays[1])
    hm = open_header(mask, display=displays[2]) if mask else None
    problems = grid_problems(h1, [h2] + ([hm] if hm else []))
    if problems:
        raise InputError(problems)
    voxel = voxel_size_zyx or h1.voxel_size_zyx
    a = read_zyx(h1)
    _require_finite(a, h1)
    b = read_zyx(h2)
    _require_finite(b, h2)
    freq, fsc, count = fsc_curve(a, b, voxel_size_zyx=voxel, workers=threads)
    fsc_masked = None
    if hm is not None:
        m = read_zyx(hm).astype(np.float32)
        _require_finite(m, hm)
        a *= m
        b *= m
        del m
        _, fsc_masked, _ = fsc_curve(a, b, voxel_size_zyx=voxel, workers=threads)
    main = fsc_masked if fsc_masked is not None else fsc
    result = FscResult(
        frequency=freq,
        fsc=fsc,
        fsc_masked=fsc_masked,
        n_coefficients=count,
        resolution_0143=resolution_at(freq, main, 0.143),
        resolution_05=resolution_at(freq, main, 0.5),
        nyquist_resolution=float(2 * max(voxel)),
        masked=hm is not None,
    )
    with np.errstate(divide="ignore"):
        res_col = np.where(freq > 0, 1.0 / np.where(freq > 0, freq, 1.0), np.nan)
    table = pa.table(
        {
            "shell": pa.array(np.arange(len(freq)), pa.int32()),
            "frequency_per_angstrom": pa.array(freq, pa.float64()),
            "resolution_angstrom": pa.array(res_col, pa.float64(), mask=freq == 0),
            "fsc": pa.array(fsc, pa.float64()),
            "fsc_masked": pa.array(
                fsc_masked if fsc_masked is not None else np.zeros(len(freq)),
                pa.float64(),
                mask=np.full(len(freq), fsc_masked is None),
            ),
            "n_coefficients": pa.array(count, pa.int64()),
        }
    )
    _write_parquet(table, fsc_parquet, format_name="binds-cryoem-fsc")
    unmasked_0143 = resolution_at(freq, fsc, 0.143)
    write_json(
        fsc_json,
        {
            "half_maps": [h1.display, h2.display],
            "mask": hm.display if hm else None,
            "masked": result.masked,
            "resolution_fsc0143_angstrom": _round(result.resolution_0143),
            "resolution_fsc05_angstrom": _round(result.resolution_05),
            "resolution_fsc0143_unmasked_angstrom": _round(unmasked_0143),
            "nyquist_resolution_angstrom": _round(result.nyquist_resolution),
            "shell_width_per_angstrom": float(freq[1]) if len(freq) > 1 else None,
            "noise_substitution_corrected": False,
        },
    )
    _plot_fsc(result, fsc_png, title=f"FSC {h1.display} vs {h2.display}")
    return result


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _require_finite(a: np.ndarray, header: MapHeader) -> None:
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        bad = ~np.isfinite(a)
        z, y, x = (int(i[0]) for i in np.nonzero(bad))
        raise InputError(
            Problem(
                f"{int(bad.sum())} NaN/Inf value(s) in the data "
                f"(first at voxel z={z}, y={y}, x={x})",
                file=header.display,
                where=f"voxel z={z}, y={y}, x={x}",
                hint="they are not replaced silently: fix the processing step that made them",
            )
        )


def grid_problems(
    ref: MapHeader, others: list[MapHeader], *, rel_tol: float = 1e-3
) -> list[Problem]:
    """Problems when ``others`` (half maps, mask) are not on the grid of ``ref``."""
    out = []
    for h in others:
        if h.shape_zyx != ref.shape_zyx:
            out.append(
                Problem(
                    f"grid {_fmt_shape(h.shape_zyx)} (z, y, x) differs from "
                    f"{ref.display}'s {_fmt_shape(ref.shape_zyx)}",
                    file=h.display,
                    where="header NX/NY/NZ",
                    hint="half maps and mask must be boxed like the map: resample onto its grid "
                    "(e.g. ChimeraX 'volume resample #2 onGrid #1') and export again",
                )
            )
            continue
        if not np.allclose(h.voxel_size_zyx, ref.voxel_size_zyx, rtol=rel_tol, atol=0):
            out.append(
                Problem(
                    f"voxel size {_fmt_voxel(h.voxel_size_zyx)} Å differs from {ref.display}'s "
                    f"{_fmt_voxel(ref.voxel_size_zyx)} Å",
                    file=h.display,
                    where="header CELLA/MX/MY/MZ",
                    hint="half maps and mask must be sampled like the map",
                )
            )
    return out


def _fmt_shape(s: tuple[int, ...]) -> str:
    return "x".join(map(str, s))


def _fmt_voxel(v: tuple[float, ...]) -> str:
    return "/".join(f"{x:.4g}" for x in v)


def _plot_fsc(result: FscResult, out: str | Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot(result.frequency, result.fsc, color="tab:blue", label="unmasked")
    if result.fsc_masked is not None:
        ax.plot(result.frequency, result.fsc_masked, color="tab:red", label="masked")
    for t, style in zip(FSC_THRESHOLDS, (":", "--"), strict=True):
        ax.axhline(t, color="grey", linestyle=style, linewidth=1, label=f"FSC = {t}")
    for res, t in ((result.resolution_0143, 0.143), (result.resolution_05, 0.5)):
        if res:
            ax.axvline(1 / res, color="black", linewidth=0.8, alpha=0.6)
            ax.annotate(
                f"{res:.2f} Å @ {t}",
                (1 / res, t),
                xytext=(4, 6),
                textcoords="offset points",
                fontsize=8,
            )
    ax.set_xlim(0, result.frequency[-1] if len(result.frequency) else 1)
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    save_png(fig, out)
