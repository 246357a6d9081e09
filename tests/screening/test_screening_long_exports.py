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


def _write_workbook(
    path,
    ids: list[str],
    values: np.ndarray,
    *,
    header=("Plate ID", "Well", "RFU"),
    padded: bool = False,
) -> None:
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
    rows = ["Well,Type"] + [
        f"{ROW_LETTERS[r]}{c + 1},{_content(r, c)}"
        for r in range(fmt.rows)
        for c in range(fmt.cols)
    ]
    path.write_text("\n".join(rows) + "\n")


def test_long_workbook_with_plate_definition_is_read_as_160_plates(tmp_path, process):
    """Issue 9 item 7: an internal `_NoGrid` traceback.  Read as 160 plates of 384 wells, the
    plate definition giving the controls of every plate."""
    ids, values = _readings(N_PLATES)
    _write_workbook(tmp_path / "plate_reader_export.xlsx", ids, values)
    _write_plate_definition(tmp_path / "plate_definition.csv")
    write_experiment(tmp_path)
    found = resolve(tmp_path, {})
    assert found.kind == "long" and [u.file.name for u in found.units] == [
        "plate_reader_export.xlsx"
    ]
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


@pytest.mark.parametrize(
    ("header", "sep", "padded"),
    [
        (("plate_id", "well", "rfu"), ",", True),
        (("PLATE ID", "Well Position", "RFU"), "\t", False),
        ((" Plate-ID ", "WELL", "Signal"), ";", False),
        (("Barcode", "Well ID", "RLU"), ",", True),
    ],
    ids=["snake-csv", "upper-tsv", "dash-semicolon", "barcode-rlu"],
)
def test_long_text_tables_with_spelling_variants(tmp_path, process, header, sep, padded):
    ids, values = _readings(3, seed=1)
    lines = [sep.join(header)]
    for p, pid in enumerate(ids):
        for r in range(16):
            for c in range(24):
                well = f"{ROW_LETTERS[r]}{c + 1:02d}" if padded else f"{ROW_LETTERS[r]}{c + 1}"
                lines.append(sep.join([pid, well, f"{values[p, r, c]:.1f}"]))
    (tmp_path / ("readings.tsv" if sep == "\t" else "readings.csv")).write_text(
        "\r\n".join(lines) + "\r\n"
    )
    _write_plate_definition(tmp_path / "layout.csv")
    write_experiment(tmp_path)
    out = process(tmp_path, {}, tmp_path / "out")
    wells = pd.read_parquet(out["wells"])
    assert len(wells) == 3 * 384 and wells.groupby("plate").plate_id.first().tolist() == ids
    a1 = wells[(wells.plate == 2) & (wells.well == "A01")].iloc[0]
    assert a1.raw == values[1, 0, 0] and a1.control == "negative"
    assert pd.read_parquet(out["plates"]).qc_pass.all()


def test_workbook_with_neither_grid_nor_long_columns_is_one_clear_line(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Name", "Location", "Fluo (a.u.)"])
    ws.append(["PL1", "A1", 12.5])
    wb.save(tmp_path / "export.xlsx")
    write_experiment(tmp_path)
    with pytest.raises(InputError) as err:
        screening.read_batch(run_dir=tmp_path, block={}, batch=0, out=tmp_path / "raw.parquet")
    (p,) = err.value.problems
    assert str(p).startswith(
        "export.xlsx: plate 1, first row: 'Name', 'Location', 'Fluo (a.u.)': "
        "no plate grid and no plate, well and value columns found"
    ), str(p)
    assert "value (or signal, RFU, RLU, OD)" in p.hint


def test_two_plate_layouts_are_ambiguous(tmp_path):
    ids, values = _readings(1)
    _write_workbook(tmp_path / "readings.xlsx", ids, values)
    _write_plate_definition(tmp_path / "layout_a.csv")
    _write_plate_definition(tmp_path / "layout_b.csv")
    write_experiment(tmp_path)
    with pytest.raises(InputError) as err:
        resolve(tmp_path, {})
    assert "2 tables describe plate wells (layout_a.csv, layout_b.csv)" in str(err.value)
    assert "plate_map: layout_a.csv" in str(err.value)
    found = resolve(tmp_path, {"input": {"plate_map": "layout_b.csv"}})
    assert found.plate_map.name == "layout_b.csv" and found.kind == "long"


def test_header_checks_read_only_the_first_row(tmp_path):
    """Resolving the inputs asks for headers several times; each file is parsed once."""
    ids, values = _readings(2)
    _write_workbook(tmp_path / "r.xlsx", ids, values, header=("Plate ID", "Well", "RFU"))
    assert readers.table_columns(tmp_path / "r.xlsx") == ["plate_id", "well", "rfu"]
    assert readers.is_long_table(tmp_path / "r.xlsx") and not readers.is_plate_layout(
        tmp_path / "r.xlsx"
    )
    assert readers._table_columns.cache_info().hits >= 2
