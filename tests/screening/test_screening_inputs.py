"""Readers of every input kind: cellHTS2 files, reader grids (CSV/TSV/XLSX, CRLF, Latin-1,
1536 wells, several channels), long tables with a plate map."""

from __future__ import annotations

import numpy as np
import openpyxl
import pandas as pd
from screening_helpers import (
    PLATECONF_384,
    cellhts2_run,
    grid_csv,
    synthetic_grid,
    write_experiment,
)

from pipelines.modalities.screening import readers
from pipelines.modalities.screening.inputs import resolve
from pipelines.modalities.screening.plates import PlateFormat, parse_well


def test_well_ids_in_all_formats():
    assert (
        parse_well("A01") == (0, 0) and parse_well("p24") == (15, 23) and parse_well("B7") == (1, 6)
    )
    assert parse_well("AF48") == (31, 47)  # 1536-well plates run past Z
    assert parse_well("A00") is None and parse_well("17") is None
    assert PlateFormat.of(1536).well_names()[-1] == "AF48"


def test_plate_config_rules_later_override_and_are_anchored(tmp_path):
    conf = tmp_path / "Plateconf.txt"
    conf.write_text(
        "Wells: 96\nPlates: 12\nPlate\tWell\tContent\n*\t*\tsample\n*\tA0[1-2]\tNeg\n"
        "1\tA01\tPos\n*\tH12\tempty\n"
    )
    pc = readers.read_plate_config(conf)
    contents = pc.contents(np.array([1, 10, 11]), PlateFormat.of(96))
    assert contents[0, 0, 0] == "Pos"  # the later plate-1 rule wins over '* A0[1-2]'
    assert contents[1, 0, 0] == "Neg"  # plate pattern '1' does not select plate 10
    assert (
        contents[2, 0, 1] == "Neg"
        and contents[2, 7, 11] == "empty"
        and contents[2, 3, 3] == "sample"
    )


def test_fusion_csv_export_latin1_crlf(twoway):
    reading = readers.read_plate_file(twoway / "DHA001LU1.CSV", plate=1)
    assert len(reading.grids) == 1 and reading.grids[0].shape == (8, 12)
    assert reading.grids[0][0, 0] == 1919 and reading.grids[0][7, 11] == 1487  # first and last well
    assert reading.facts["plate_size"] == "96" and reading.facts["software"] == "Fusion 3.50"


def test_cellhts2_three_column_file(kcviab):
    reading = readers.read_plate_file(kcviab / "FT01-G01.txt", plate=1)
    assert reading.long is not None and len(reading.long) == 384
    assert reading.long.iloc[0].tolist() == ["A01", 887763.0]


def test_annotation_with_trailing_tabs(kcviab):
    ann = readers.read_annotation(kcviab / "GeneIDs_Dm_HFA_1.1.txt")
    assert len(ann) == 57 * 384 and list(ann.columns) == ["plate", "well", "HFAID", "GeneID"]
    row = ann[(ann.plate == 1) & (ann.well == "A03")].iloc[0]
    assert (row.HFAID, row.GeneID) == ("HFA00274", "CG11371")
    assert ann[(ann.plate == 56) & (ann.well == "A01")].iloc[0].HFAID is None  # 'NA<TAB>' line


def test_grid_formats_tsv_semicolon_decimal_comma_and_1536(tmp_path):
    g96 = synthetic_grid(8, 12)
    (tmp_path / "a.tsv").write_text(grid_csv(g96, sep="\t", header=["Reader: X", ""]))
    assert np.array_equal(readers.read_plate_file(tmp_path / "a.tsv", plate=1).grids[0], g96)
    text = grid_csv(np.full((8, 12), "1,5", dtype=object), sep=";")
    (tmp_path / "b.csv").write_text(text)
    assert readers.read_plate_file(tmp_path / "b.csv", plate=1).grids[0][3, 3] == 1.5
    g1536 = synthetic_grid(32, 48)
    (tmp_path / "c.csv").write_text(grid_csv(g1536))
    assert readers.read_plate_file(tmp_path / "c.csv", plate=1).grids[0].shape == (32, 48)


def test_two_grids_in_one_file_are_two_channels(tmp_path):
    a, b = synthetic_grid(16, 24, seed=1), synthetic_grid(16, 24, seed=2)
    (tmp_path / "two.csv").write_text(
        grid_csv(a, header=["Channel 1"]) + "\r\n" + grid_csv(b, header=["Channel 2"])
    )
    grids = readers.read_plate_file(tmp_path / "two.csv", plate=1).grids
    assert len(grids) == 2 and np.array_equal(grids[1], b)


def test_xlsx_grid_export(tmp_path):
    grid = synthetic_grid(16, 24)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Plate reader export"])
    ws.append([None, *range(1, 25)])
    for r, letter in enumerate("ABCDEFGHIJKLMNOP"):
        ws.append([letter, *[float(v) for v in grid[r]]])
    wb.save(tmp_path / "plate.xlsx")
    assert np.array_equal(readers.read_plate_file(tmp_path / "plate.xlsx", plate=1).grids[0], grid)


def test_empty_and_na_cells_are_missing_readings(tmp_path):
    grid = synthetic_grid(8, 12).astype(object)
    grid[2, 3] = ""
    grid[4, 5] = "NA"
    (tmp_path / "p.csv").write_text(grid_csv(grid))
    g = readers.read_plate_file(tmp_path / "p.csv", plate=1).grids[0]
    assert np.isnan(g[2, 3]) and np.isnan(g[4, 5]) and np.isfinite(g).sum() == 94


def test_auto_detects_each_input_kind(tmp_path, kcviab, twoway):
    assert resolve(kcviab, {}).kind == "cellhts2" and len(resolve(kcviab, {}).units) == 114
    assert resolve(twoway, {}).annotation.name == "GeneIDs.txt"  # named in Description.txt [Files]
    grids = tmp_path / "grids"
    grids.mkdir()
    for i in range(3):
        (grids / f"plate{i + 1}.csv").write_text(grid_csv(synthetic_grid(seed=i)))
    write_experiment(grids)
    found = resolve(grids, {})
    assert found.kind == "grid" and [u.plate for u in found.units] == [1, 2, 3]
    long = tmp_path / "long"
    long.mkdir()
    (long / "readings.csv").write_text("Plate,Well,Signal\nB1,A01,1\n")
    (long / "platemap.csv").write_text("well,content\nA01,neg\n")
    found = resolve(long, {})
    assert found.kind == "long" and found.plate_map.name == "platemap.csv"


def test_long_table_with_plate_map_end_to_end(tmp_path, process):
    """Barcoded plates in one long table, two replicates; a plate map without a plate column
    applies to every plate and carries compound and concentration."""
    rng = np.random.default_rng(0)
    fmt = PlateFormat.of(96)
    rows = []
    for barcode in ("BC-2", "BC-10"):
        for rep in (1, 2):
            for w in fmt.well_names():
                v = (
                    100.0
                    if w.endswith("01")
                    else 1000.0
                    if w.endswith("12")
                    else rng.normal(500, 20)
                )
                rows.append((barcode, w, rep, v))
    pd.DataFrame(rows, columns=["Plate", "Well", "Replicate", "Value"]).to_csv(
        tmp_path / "readings.csv", index=False
    )
    pm = pd.DataFrame({"Well": fmt.well_names()})
    pm["Content"] = np.where(
        pm.Well.str.endswith("01"), "POS", np.where(pm.Well.str.endswith("12"), "neg", "sample")
    )
    pm["Compound"] = np.where(pm.Content == "sample", "C-" + pm.Well, None)
    pm["Concentration"] = 10.0
    pm.to_csv(tmp_path / "plate_map.csv", index=False)
    write_experiment(tmp_path)
    out = process(tmp_path, {}, tmp_path / "out")
    wells = pd.read_parquet(out["wells"])
    # plates numbered in natural barcode order (BC-2 before BC-10), ids kept
    assert wells.groupby("plate").plate_id.first().to_dict() == {1: "BC-2", 2: "BC-10"}
    assert set(wells.replicate) == {1, 2} and len(wells) == 2 * 2 * 96
    assert (
        wells[wells.well == "A01"].control == "positive"
    ).all()  # 'POS' matched case-insensitively
    assert wells.loc[wells.well == "B05", "compound"].iloc[0] == "C-B05"
    plates = pd.read_parquet(out["plates"])
    assert plates.qc_pass.all() and (plates.z_prime > 0.5).all()


def test_plate_list_with_channel_column_and_batches(tmp_path, process):
    grids = {(p, r): grid_csv(synthetic_grid(seed=10 * p + r)) for p in (1, 2, 3) for r in (1, 2)}
    run = cellhts2_run(tmp_path / "run", grids, block={"batch_size": 4})
    assert len(resolve(run, {"batch_size": 4}).batches()) == 2
    out = process(run, {"batch_size": 4}, tmp_path / "out")
    assert len(out["raws"]) == 2
    wells = pd.read_parquet(out["wells"])
    assert len(wells) == 3 * 2 * 384 and (wells.content[wells.column == 1] == "neg").all()
    assert PLATECONF_384.startswith("Wells: 384")


def test_xlsx_long_table_and_plate_map(tmp_path, process):
    """Spreadsheets store plate numbers as floats (3.0); they must still match the plate map."""
    fmt = PlateFormat.of(96)
    rng = np.random.default_rng(5)
    readings = pd.DataFrame(
        {
            "Plate": np.repeat([3.0, 4.0], 96),
            "Well": np.tile(fmt.well_names(), 2),
            "RLU": rng.normal(1000, 30, 192).round(),
        }
    )
    readings.to_excel(tmp_path / "readings.xlsx", index=False)
    pm = pd.DataFrame(
        {
            "Plate": [3.0, 4.0],
            "Well": ["H12", "H12"],
            "Sample ID": ["S-3", "S-4"],
            "Concentration": [1.5, 2.5],
        }
    )
    pm.to_excel(tmp_path / "platemap.xlsx", index=False)
    write_experiment(tmp_path)
    out = process(tmp_path, {}, tmp_path / "out")
    wells = pd.read_parquet(out["wells"])
    h12 = wells[wells.well == "H12"].set_index("plate")
    assert h12.loc[3, "sample_id"] == "S-3" and h12.loc[4, "concentration"] == 2.5
    assert list(wells.plate.unique()) == [3, 4] and wells.raw.notna().all()
