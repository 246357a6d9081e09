"""Deterministic PNG figures for QC: the same data give the same bytes (a version's identity
covers qc/), so no software version or date is stamped into the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: matplotlib otherwise writes its version into the PNG's Software chunk
PNG_METADATA = {"Software": None}


def save_png(fig: Any, path: str | os.PathLike[str], *, dpi: float | str = "figure") -> Path:
    """Write ``fig`` to ``path`` (folders created, written to a temporary name and moved into
    place, so a killed job never leaves half a PNG), then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=dpi, metadata=PNG_METADATA)
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
