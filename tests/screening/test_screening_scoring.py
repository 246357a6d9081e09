"""Score options of the screening block, on small synthetic screens with a planted hit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from screening_helpers import cellhts2_run, grid_csv, synthetic_grid, write_experiment


def _screen(tmp_path, *, bad_plate_cv=False):
    grids = {}
    for p in (1, 2):
        for r in (1, 2):
            g = synthetic_grid(seed=10 * p + r)
            g[4, 10] = 200  # planted strong inhibitor on both plates, both replicates
            if bad_plate_cv and p == 2:
                g[:, 0] = np.where(np.arange(16) % 2, 300, 1700)  # negatives all over the place
            grids[(p, r)] = grid_csv(g)
    return cellhts2_run(tmp_path / "run", grids)


@pytest.mark.parametrize("method", ["zscore", "robust_z", "b_score", "normalised"])
def test_every_score_method_finds_the_planted_hit(tmp_path, process, method):
    run = _screen(tmp_path)
    block = {
        "score": {"method": method, "sign": "-"},
        "hits": {"threshold": 3.0, "direction": "up"},
    }
    if method == "normalised":
        # the normalised value itself as the score: percent inhibition (0 % at the negatives,
        # 100 % at the positives), hits above 50 %
        block = {
            "normalisation": "percent_inhibition",
            "score": {"method": method},
            "hits": {"threshold": 50.0, "direction": "up"},
        }
    out = process(run, block, tmp_path / "out")
    hits = pd.read_parquet(out["hits"])
    top = hits[hits["rank"] <= 2]
    assert set(zip(top.plate, top.well, strict=False)) == {(1, "E11"), (2, "E11")}
    assert (top.n_replicates == 2).all() and len(hits) <= 6  # a few noise tails at most


def test_direction_and_sign(tmp_path, process):
    run = _screen(tmp_path)
    up = pd.read_parquet(
        process(run, {"hits": {"threshold": 3.0, "direction": "up"}}, tmp_path / "a")["hits"]
    )
    down = pd.read_parquet(
        process(run, {"hits": {"threshold": 3.0, "direction": "down"}}, tmp_path / "b")["hits"]
    )
    assert "E11" not in set(up.well) and "E11" in set(down.well)  # a loss of signal scores negative


def test_require_qc_pass_drops_hits_of_failed_plates(tmp_path, process):
    run = _screen(tmp_path, bad_plate_cv=True)
    block = {"score": {"sign": "-"}, "hits": {"threshold": 3.0, "direction": "up"}}
    plates = pd.read_parquet(process(run, block, tmp_path / "a")["plates"]).set_index(
        ["plate", "replicate"]
    )
    assert (
        not plates.loc[(2, 1), "qc_pass"]
        and "CV of negative controls" in plates.loc[(2, 1), "qc_notes"]
    )
    loose = pd.read_parquet(process(run, block, tmp_path / "a")["hits"])
    strict = pd.read_parquet(
        process(run, {**block, "hits": {**block["hits"], "require_qc_pass": True}}, tmp_path / "b")[
            "hits"
        ]
    )
    assert 2 in set(loose.plate) and set(strict.plate) == {1}


def test_minimal_run_folder_processes_with_defaults(tmp_path, process):
    """Only the required metadata plus reader exports: found by extension, numbered in name
    order, every well a sample; no controls, so QC says so instead of failing the run."""
    run = tmp_path / "run"
    run.mkdir()
    for i in (1, 2):
        (run / f"export_{i}.csv").write_text(grid_csv(synthetic_grid(8, 12, seed=i)))
    write_experiment(run)
    out = process(run, {}, tmp_path / "out")
    plates = pd.read_parquet(out["plates"])
    assert list(plates.plate_id) == ["export_1", "export_2"] and list(plates.n_wells) == [96, 96]
    assert (~plates.qc_pass).all() and plates.qc_notes.str.startswith("no controls").all()
    wells = pd.read_parquet(out["wells"])
    assert wells.normalised.notna().all() and (wells.control == "sample").all()
