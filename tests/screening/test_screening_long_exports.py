"""Long-format exports (one row per plate and well) as plate readers and LIMS write them: an
XLSX workbook with ``Plate ID, Well, RFU`` next to a plate-definition CSV, CSV/TSV variants with
other spellings of the column names, wells written A1 or A01."""

from __future__ import annotations

import numpy as np
import openpyxl
import pandas as pd
import pytest
from screening_helpers import write_experiment

from pipelines.errors import InputError
from pipelines.modalities import screening
from pipelines.modalities.screening import readers
from pipelines.modalities.screening.inputs import resolve
from pipelines.modalities.screening.plates import ROW_LETTERS, PlateFormat

N_PLATES = 160


def _content(row: int, col: int) -> str:
    """Columns 1-2 negative controls, 23-24 positive controls, samples between."""
    return "neg" if col < 2 else ("pos" if col >= 22 else "sample")


def _readings(n_plates: int, *, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """(plate ids, RFU array plates x 16 x 24): controls far apart so every plate passes QC."""
    rng = np.random.default_rng(seed)
    ids = [f"PL{i:05d}" for i in range(1, n_plates + 1)]
    values = rng.normal(5000, 150, size=(n_plates, 16, 24))
    values[:, :, :2] = rng.normal(1000, 40, size=(n_plates, 16, 2))
    values[:, :, 22:] = rng.normal(20000, 500, size=(n_plates, 16, 2))
    return ids, values.round(1)


def _write_workbook(path, ids: list[str], values: np.ndarray, *, header=("Plate ID", "Well", "RFU"),
                    padded: bool = False) -> None:
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Results")
    ws.append(list(header))
    for p, pid in enumerate(ids):
        for r in range(16):
            for c in range(24):
                well = f"{ROW_LETTERS[r]}{c + 1:02d}" if padded else f"{ROW_LETTERS[r]}{c + 1}"
                ws.append([pid, well, float(values[p, r, c])])
    wb.save(path)


def _write_plate_definition(path) -> None:
    fmt = PlateFormat.of(384)
    rows = ["Well,Type"] + [f"{ROW_LETTERS[r]}{c + 1},{_content(r, c)}" for r in range(fmt.rows) for c in range(fmt.cols)]
    path.write_text("\n".join(rows) + "\n")


def test_long_workbook_with_plate_definition_is_read_as_160_plates(tmp_path, process):
    """Issue 9 item 7: an internal `_NoGrid` traceback.  Read as 160 plates of 384 wells, the
    plate definition giving the controls of every plate."""
    ids, values = _readings(N_PLATES)
    _write_workbook(tmp_path / "plate_reader_export.xlsx", ids, values)
    _write_plate_definition(tmp_path / "plate_definition.csv")
    write_experiment(tmp_path)
    found = resolve(tmp_path, {})
    assert found.kind == "long" and [u.file.name for u in found.units] == ["plate_reader_export.xlsx"]
    assert found.plate_map is not None and found.plate_map.name == "plate_definition.csv"
    out = process(tmp_path, {}, tmp_path / "out")
    wells = pd.read_parquet(out["wells"])
    assert len(wells) == N_PLATES * 384 and wells.plate.nunique() == N_PLATES
    assert wells.groupby("plate").plate_id.first().tolist() == ids  # natural order of the ids
    first = wells[(wells.plate_id == "PL00007") & (wells.well == "C05")].iloc[0]
    assert first.raw == values[6, 2, 4] and first.control == "sample"
    assert (wells[wells.column <= 2].control == "negative").all()
    assert (wells[wells.column >= 23].control == "positive").all()
    plates = pd.read_parquet(out["plates"])
    assert len(plates) == N_PLATES and plates.qc_pass.all() and (plates.z_prime > 0.5).all()
