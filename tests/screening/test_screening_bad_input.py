"""Bad input: a clear error naming the file, plate and well (exit 2 through the workflow), or a
QC flag where the issue says so (a plate without controls), never a traceback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from screening_helpers import cellhts2_run, grid_csv, synthetic_grid, write_experiment

from pipelines.errors import InputError
from pipelines.modalities import screening
from pipelines.modalities.screening.plates import PlateFormat


def _messages(err: pytest.ExceptionInfo) -> str:
    return "\n".join(str(p) for p in err.value.problems)


def _three_column(path, wells, values, barcode="PL1"):
    path.write_text("".join(f"{barcode}\t{w}\t{v}\n" for w, v in zip(wells, values, strict=False)))


def _cellhts2_long_run(tmp_path, lines_by_file: dict[str, tuple[list, list]], wells_header=384):
    tmp_path.mkdir(parents=True, exist_ok=True)
    plate_list = ["Filename\tPlate\tReplicate"]
    for i, (name, (wells, values)) in enumerate(sorted(lines_by_file.items()), start=1):
        _three_column(tmp_path / name, wells, values)
        plate_list.append(f"{name}\t{i}\t1")
    (tmp_path / "Platelist.txt").write_text("\n".join(plate_list) + "\n")
    (tmp_path / "Plateconf.txt").write_text(
        f"Wells: {wells_header}\nPlates: 9\nPlate\tWell\tContent\n*\t*\tsample\n"
    )
    write_experiment(tmp_path)
    return tmp_path


def _read_all(run, block=None):
    return [
        screening.read_batch(run_dir=run, block=block, batch=b, out=run.parent / f"raw{b}.parquet")
        for b in range(screening.batch_count(run, block))
    ]


def test_wrong_well_count_for_declared_format(tmp_path):
    grids = {(1, 1): grid_csv(synthetic_grid(16, 24)), (2, 1): grid_csv(synthetic_grid(8, 12))}
    run = cellhts2_run(tmp_path / "run", grids)
    with pytest.raises(InputError) as err:
        _read_all(run)
    msg = _messages(err)
    assert (
        "P002_R1.csv: plate 2, channel 1: wrong well count" in msg
        and "96 wells" in msg
        and "384" in msg
    )


def test_wrong_well_count_in_a_three_column_file_lists_missing_wells(tmp_path):
    wells = list(PlateFormat.of(384).well_names())
    run = _cellhts2_long_run(tmp_path / "run", {"a.txt": (wells[:-4], [1] * 380)})
    with pytest.raises(InputError) as err:
        _read_all(run)
    msg = _messages(err)
    assert (
        "a.txt: plate 1, channel 1: wrong well count: 380 wells" in msg
        and "P21, P22, P23, P24" in msg
    )


def test_wells_outside_the_plate(tmp_path):
    wells = [*list(PlateFormat.of(384).well_names()), "Q01", "A25"]
    run = _cellhts2_long_run(tmp_path / "run", {"a.txt": (wells, [1] * len(wells))})
    with pytest.raises(InputError) as err:
        _read_all(run)
    msg = _messages(err)
    assert "a.txt: plate 1, well Q01: well Q01 is outside a 384-well plate (16 x 24)" in msg
    assert "plate 1, well A25" in msg


def test_grid_row_beyond_the_plate(tmp_path):
    rows = grid_csv(synthetic_grid(8, 12)).rstrip("\r\n") + "\r\nI," + ",".join(["5"] * 12) + "\r\n"
    run = cellhts2_run(
        tmp_path / "run",
        {(1, 1): rows},
        plateconf="Wells: 96\nPlates: 1\nPlate\tWell\tContent\n*\t*\tsample\n",
    )
    with pytest.raises(InputError) as err:
        _read_all(run)
    assert "P001_R1.csv: plate 1, row I: row I is outside a 8 x 12 plate" in _messages(err)


def test_duplicated_wells(tmp_path):
    wells = list(PlateFormat.of(384).well_names())
    run = _cellhts2_long_run(tmp_path / "run", {"a.txt": ([*wells, "B07"], [1] * 385)})
    with pytest.raises(InputError) as err:
        _read_all(run)
    assert "a.txt: plate 1, well B07: well B07 appears more than once" in _messages(err)


def test_duplicated_plate_in_plate_list(tmp_path):
    run = cellhts2_run(tmp_path / "run", {(1, 1): grid_csv(synthetic_grid())})
    (run / "Platelist.txt").write_text(
        "Filename\tPlate\tReplicate\nP001_R1.csv\t1\t1\nP001_R1.csv\t1\t1\n"
    )
    with pytest.raises(InputError) as err:
        screening.resolve(run, {})
    assert (
        "Platelist.txt: line 3: plate 1, replicate 1, channel 1 is listed more than once"
        in _messages(err)
    )


def test_non_numeric_readings_name_plate_and_well(tmp_path):
    grid = synthetic_grid(16, 24).astype(object)
    grid[2, 6] = "OVRFLW"
    run = cellhts2_run(
        tmp_path / "run", {(1, 1): grid_csv(synthetic_grid()), (3, 2): grid_csv(grid)}
    )
    with pytest.raises(InputError) as err:
        _read_all(run)
    msg = _messages(err)
    assert "P003_R2.csv: plate 3, well C07: reading 'OVRFLW' is not a number" in msg
    wells = list(PlateFormat.of(384).well_names())
    run = _cellhts2_long_run(
        tmp_path / "run3", {"a.txt": (wells, ["12"] * 100 + ["1.2.3"] + ["1"] * 283)}
    )
    with pytest.raises(InputError) as err:
        _read_all(run)
    assert "a.txt: plate 1, well E05 (line 101): reading '1.2.3' is not a number" in _messages(err)


def test_long_table_errors_name_plate_and_well(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "readings.csv").write_text("plate,well,value\nBC1,A01,1\nBC1,A02,x\n")
    write_experiment(run)
    with pytest.raises(InputError) as err:
        _read_all(run, {"plate_format": 96})
    assert "readings.csv: plate BC1, well A02 (line 3): reading 'x' is not a number" in _messages(
        err
    )


def test_plate_without_controls_is_flagged_in_qc_not_a_crash(tmp_path, process):
    grids = {(p, 1): grid_csv(synthetic_grid(seed=p)) for p in (1, 2)}
    conf = "Wells: 384\nPlates: {n}\nPlate\tWell\tContent\n*\t*\tsample\n1\t[A-P]01\tneg\n1\t[A-P]02\tpos\n"
    run = cellhts2_run(tmp_path / "run", grids, plateconf=conf)
    out = process(run, {"normalisation": "poc"}, tmp_path / "out")
    plates = pd.read_parquet(out["plates"]).set_index("plate")
    assert plates.loc[1, "qc_pass"] and plates.loc[1, "z_prime"] > 0.5
    assert not plates.loc[2, "qc_pass"] and np.isnan(plates.loc[2, "z_prime"])
    assert "no controls: Z' undefined" in plates.loc[2, "qc_notes"]
    assert "normalisation 'poc' undefined" in plates.loc[2, "qc_notes"]
    wells = pd.read_parquet(out["wells"])
    assert (
        wells[wells.plate == 2].normalised.isna().all()
        and wells[wells.plate == 1].normalised.notna().all()
    )


def test_missing_file_in_plate_list_preflight(tmp_path):
    run = cellhts2_run(tmp_path / "run", {(1, 1): grid_csv(synthetic_grid())})
    with open(run / "Platelist.txt", "a") as fh:
        fh.write("P002_R1.CSV\t2\t1\n")
    problems = screening.preflight(run, {})
    assert [str(p) for p in problems] == [
        "P002_R1.CSV: plate 2, replicate 1: file not found (check the file name in the plate list (names are case-sensitive))"
    ]
    with pytest.raises(InputError) as err:
        _read_all(run)
    assert "P002_R1.CSV: plate 2: file not found" in _messages(err)


def test_bad_block_values_are_schema_errors():
    from screening_helpers import MINIMAL_EXPERIMENT

    from pipelines.describe.metadata import validate_experiment

    data = dict(
        MINIMAL_EXPERIMENT,
        screening={"plate_format": 385, "normalisation": "zscore", "hits": {"treshold": 3}},
    )
    problems, _ = validate_experiment(data)
    text = "\n".join(map(str, problems))
    assert "screening.plate_format: 385 is not one of auto, 96, 384, 1536" in text
    assert "screening.normalisation: 'zscore' is not one of" in text
    assert "screening.hits.treshold: unknown field 'treshold' (did you mean 'threshold'?)" in text
