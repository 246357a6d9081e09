"""Helpers of the screening tests: synthetic run folders and reader exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipelines.modalities.screening.plates import ROW_LETTERS

MINIMAL_EXPERIMENT = {
    "schema_version": 1,
    "request_id": "BINDS-TEST-0006",
    "title": "screening test run",
    "modality": "screening",
    "instrument": {"model": "EnVision"},
    "acquired": "2026-11-20",
    "access": {"level": "open"},
    "license": "CC-BY-4.0",
    "samples": [{"id": "S1"}],
}
# the cellHTS2 vignette's controls for the two-way assay: activator AATK, inhibitor MAP2K6, GFP
TWOWAY_BLOCK = {"controls": {"negative": ["GFP"], "positive": ["AATK"], "inhibitor": ["MAP2K6"]}}


def write_experiment(run: Path, block: dict[str, Any] | None = None) -> Path:
    data = dict(MINIMAL_EXPERIMENT)
    if block:
        data["screening"] = block
    path = run / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def grid_csv(grid: np.ndarray, *, sep: str = ",", header: list[str] | None = None) -> str:
    """A reader grid export: optional header lines, a column-number row, lettered rows."""
    lines = list(header or [])
    lines.append(sep + sep.join(str(c) for c in range(1, grid.shape[1] + 1)))
    for r in range(grid.shape[0]):
        lines.append(ROW_LETTERS[r] + sep + sep.join(str(v) for v in grid[r]))
    return "\r\n".join(lines) + "\r\n"


def synthetic_grid(rows: int = 16, cols: int = 24, *, seed: int = 0) -> np.ndarray:
    """Plate readings with controls: column 1 negatives (~1000), column 2 positives (~100)."""
    rng = np.random.default_rng(seed)
    grid = rng.normal(1000, 40, (rows, cols)).round()
    grid[:, 1] = rng.normal(100, 5, rows).round()
    return grid.astype(int)


PLATECONF_384 = "Wells: 384\nPlates: {n}\nPlate\tWell\tContent\n*\t*\tsample\n*\t[A-P]01\tneg\n*\t[A-P]02\tpos\n"


def cellhts2_run(
    tmp: Path,
    grids: dict[tuple[int, int], str],
    *,
    plates: int | None = None,
    block: dict | None = None,
    plateconf: str | None = PLATECONF_384,
) -> Path:
    """A cellHTS2-style run folder: one grid CSV per (plate, replicate) plus Platelist/Plateconf."""
    tmp.mkdir(parents=True, exist_ok=True)
    lines = ["Filename\tPlate\tReplicate"]
    for (plate, rep), text in sorted(grids.items()):
        name = f"P{plate:03d}_R{rep}.csv"
        (tmp / name).write_bytes(text.encode("iso-8859-1"))
        lines.append(f"{name}\t{plate}\t{rep}")
    (tmp / "Platelist.txt").write_text("\n".join(lines) + "\n")
    if plateconf:
        n = plates or max(p for p, _ in grids)
        (tmp / "Plateconf.txt").write_text(plateconf.format(n=n))
    write_experiment(tmp, block)
    return tmp


def load_block(run_dir: Path) -> dict:
    return (yaml.safe_load((run_dir / "experiment.yaml").read_text()) or {}).get("screening") or {}
