"""Plain helpers of the cryo-EM tests (a module with a unique name: test folders share sys.path)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import binds_testing
import mrcfile
import numpy as np
from binds_testing import run_stage  # noqa: F401 - re-exported for the cryo-EM tests

# every map in ../shared/data/cryoem (see its SOURCES.md)
REAL_MAPS = [
    "EMD-3001.map",
    "emd_3001.map.gz",
    "emd_5168.map",
    "emd_3488.mrc",
    "emd_3488_contour_mask.mrc",
    "EMD-3650_halfmaps/1.0/3650.map",
    "EMD-3650_halfmaps/2.0/3650.map",
]


def minimal_yaml(block: str = "") -> str:
    return binds_testing.minimal_yaml(
        "cryoem",
        title="Cryo-EM test run",
        manufacturer="Thermo Fisher",
        model="Titan Krios G4",
        block=block,
    )


def write_mrc(
    path: Path,
    data: np.ndarray,
    *,
    voxel_size: float | tuple = 1.0,
    axis_order: tuple[int, int, int] = (1, 2, 3),
    start: tuple[int, int, int] = (0, 0, 0),
) -> Path:
    """A small MRC file; ``data`` is in file order (sections, rows, columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = axis_order
        mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = start
    return path


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and bytes of every file under ``root``."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()
