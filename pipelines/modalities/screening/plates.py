"""Plate geometry: formats, well ids, and the long <-> (plates, rows, cols) array mapping."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

# wells -> (rows, columns); the three formats the unit's readers and liquid handlers use
FORMATS: dict[int, tuple[int, int]] = {96: (8, 12), 384: (16, 24), 1536: (32, 48)}
_SHAPE_TO_WELLS = {shape: n for n, shape in FORMATS.items()}
# 1536-well plates run past Z: rows AA..AF follow Z (the Greiner/Corning convention)
ROW_LETTERS = list(string.ascii_uppercase) + [f"A{c}" for c in "ABCDEF"]
_ROW_INDEX = {name: i for i, name in enumerate(ROW_LETTERS)}
_WELL = re.compile(r"^\s*([A-Za-z]{1,2})\s*0*(\d{1,2})\s*$")


@dataclass(frozen=True, slots=True)
class PlateFormat:
    """A plate format: ``wells`` = ``rows`` x ``cols``."""

    wells: int
    rows: int
    cols: int

    @classmethod
    def of(cls, wells: int) -> PlateFormat:
        rows, cols = FORMATS[int(wells)]
        return cls(int(wells), rows, cols)

    @classmethod
    def from_shape(cls, rows: int, cols: int) -> PlateFormat | None:
        wells = _SHAPE_TO_WELLS.get((rows, cols))
        return cls(wells, rows, cols) if wells else None

    def well_names(self) -> np.ndarray:
        """Well ids in row-major order, zero-padded like cellHTS2 (A01 .. P24)."""
        return np.array(
            [f"{ROW_LETTERS[r]}{c + 1:02d}" for r in range(self.rows) for c in range(self.cols)]
        )


def parse_well(text: str) -> tuple[int, int] | None:
    """0-based (row, col) of a well id such as ``A01``, ``a1`` or ``AF48``; None if not a well id."""
    m = _WELL.match(str(text))
    if not m:
        return None
    row = _ROW_INDEX.get(m.group(1).upper())
    col = int(m.group(2)) - 1
    if row is None or col < 0:
        return None
    return row, col


def parse_wells(wells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`parse_well` over an array of ids; -1 marks ids that are not wells."""
    uniq, inverse = np.unique(np.asarray(wells, dtype=str), return_inverse=True)
    parsed = [parse_well(w) or (-1, -1) for w in uniq]
    rc = np.array(parsed, dtype=np.int64).reshape(-1, 2)
    return rc[inverse, 0], rc[inverse, 1]


def well_name(row: int, col: int) -> str:
    return f"{ROW_LETTERS[row]}{col + 1:02d}"


def format_for_wells(max_row: int, max_col: int) -> PlateFormat | None:
    """Smallest standard format that holds a 0-based (max_row, max_col)."""
    for n in sorted(FORMATS):
        fmt = PlateFormat.of(n)
        if max_row < fmt.rows and max_col < fmt.cols:
            return fmt
    return None
