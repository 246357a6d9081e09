"""A synthetic but physically sensible cryo-EM run folder for ``binds demo`` and the tests.

The "protein" is a compact chain of residues 3.8 angstrom apart (a random walk confined to an
ellipsoid of 60 x 50 x 40 angstrom, roughly a 150 kDa complex), each residue a few atoms,
blurred by a Gaussian B-factor.  Each half map is that signal plus its own coloured noise, so the
FSC falls from 1 at low frequency to 0 near the chosen resolution; the full map is the mean of
the halves (as after a refinement), and the mask is the thresholded, dilated, soft-edged map.
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np

BOX = 96  # voxels per edge
VOXEL_SIZE = 1.06  # angstrom, a typical Krios pixel size at 105 kx
B_FACTOR = 100.0  # angstrom^2: sets how fast the signal falls with frequency
NOISE_RMS = 2.0  # per half map, relative to the signal rms: masked FSC 0.143 near 4 angstrom

EXPERIMENT_YAML = """\
# Synthetic cryo-EM run written by `binds demo` (pipelines.modalities.cryoem.make_demo_run).
schema_version: 1
request_id: BINDS-DEMO-CRYOEM-{seed:04d}
title: Synthetic protein-like map with half maps and mask (demo, seed {seed})
modality: cryoem
support_unit: structure-analysis
instrument: {{manufacturer: Thermo Fisher, model: Titan Krios G4}}
acquired: 2026-11-20
operator: demo
access: {{level: open}}
personal_data: false  # synthetic: no person behind these samples (README, Personal data)
license: CC0-1.0
samples:
  - id: S1
    organism: NCBITaxon:9606
    description: synthetic 150 kDa protein-like density
# Files are recognised by name: demo_map.mrc, demo_half_map_1/2.mrc, demo_mask.mrc.
cryoem:
  symmetry: C1
  expected_resolution: 4.5
"""


def make_demo_run(run_dir: Path, *, seed: int = 0) -> Path:
    """Write ``run_dir`` with a map, two half maps, a soft mask (MRC, mode 2) and experiment.yaml.

    Deterministic: the same seed gives the same bytes (no dates in the MRC labels).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    signal = _protein_like(rng)
    noise_rms = NOISE_RMS * float(signal.std())
    halves = [signal + _coloured_noise(rng, noise_rms) for _ in range(2)]
    full = (halves[0] + halves[1]) / 2
    mask = _soft_mask(signal)
    for name, data in (
        ("demo_map.mrc", full),
        ("demo_half_map_1.mrc", halves[0]),
        ("demo_half_map_2.mrc", halves[1]),
        ("demo_mask.mrc", mask),
    ):
        _write_mrc(
            run_dir / name,
            data.astype(np.float32),
            # the role, not the file name: header labels are copied into the outputs, and the
            # demo's samples are human (its raw file names go by run ids there)
            label=f"binds demo {name.removeprefix('demo_').removesuffix('.mrc')} (synthetic, seed {seed})",
        )
    (run_dir / "experiment.yaml").write_text(EXPERIMENT_YAML.format(seed=seed))
    return run_dir


def _protein_like(rng: np.random.Generator) -> np.ndarray:
    semi = np.array([30.0, 25.0, 20.0])  # angstrom (z, y, x)
    centre = BOX * VOXEL_SIZE / 2
    pos = np.zeros(3)
    residues = [pos.copy()]
    direction = rng.normal(size=3)
    while len(residues) < 1300:
        # a persistent random walk: chains wander but do not turn back on themselves at once
        direction = 0.7 * direction / np.linalg.norm(direction) + 0.3 * rng.normal(size=3)
        step = 3.8 * direction / np.linalg.norm(direction)
        nxt = pos + step
        if np.sum((nxt / semi) ** 2) > 1:
            direction = -pos + rng.normal(scale=5, size=3)  # head back inside
            continue
        pos = nxt
        residues.append(pos.copy())
    res = np.array(residues)
    atoms = np.concatenate([res] + [res + rng.normal(scale=1.2, size=res.shape) for _ in range(6)])
    grid = np.zeros((BOX,) * 3, np.float64)
    idx = np.rint((atoms + centre) / VOXEL_SIZE).astype(int)
    idx = idx[np.all((idx >= 0) & (idx < BOX), axis=1)]
    np.add.at(grid, tuple(idx.T), 1.0)
    # Gaussian B-factor blur in Fourier space: exp(-B s^2 / 4) on amplitudes
    f = np.fft.rfftn(grid)
    s2 = _freq2()
    return np.fft.irfftn(f * np.exp(-B_FACTOR * s2 / 4), s=grid.shape, axes=(0, 1, 2))


def _freq2() -> np.ndarray:
    k = np.fft.fftfreq(BOX, d=VOXEL_SIZE)
    kx = np.fft.rfftfreq(BOX, d=VOXEL_SIZE)
    return k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2


def _coloured_noise(rng: np.random.Generator, rms: float) -> np.ndarray:
    # detector noise after CTF correction is not white: damp the highest frequencies a little
    white = rng.normal(size=(BOX,) * 3)
    f = np.fft.rfftn(white) * np.exp(-8.0 * _freq2() / 4)
    noise = np.fft.irfftn(f, s=white.shape, axes=(0, 1, 2))
    return noise * (rms / noise.std())


def _soft_mask(signal: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    inside = signal > signal.mean() + 1.0 * signal.std()
    inside = ndimage.binary_dilation(inside, iterations=3)
    soft = ndimage.gaussian_filter(inside.astype(np.float64), sigma=1.5)
    return np.clip(soft / soft.max(), 0, 1)


def _write_mrc(path: Path, data: np.ndarray, *, label: str) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = VOXEL_SIZE
        # mrcfile.new stamps "Created by mrcfile.py <date>": replace it so files are reproducible
        mrc.header.label[0] = label.encode("ascii")[:80]
        mrc.header.nlabl = 1
