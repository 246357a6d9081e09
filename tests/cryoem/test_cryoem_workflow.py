"""Real Snakemake runs of workflows/cryoem into tmp_path: the demo run, a real map, bad input."""

from __future__ import annotations

import json
import sys

import mrcfile
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from cryoem_helpers import run_stage
from ome_zarr_models.v05 import Image, ImageLabel

from pipelines.describe.metadata import load_experiment
from pipelines.errors import InputError
from pipelines.modalities.cryoem import make_demo_run
from pipelines.toolkit.stage import StagedDataset
from tests.conftest import shared_data


def test_demo_run_end_to_end(demo_run, tmp_path):
    stage = run_stage(demo_run, tmp_path)
    published = [rel for rel, _ in stage.published_files()]
    for name in (
        "qc/metrics.json",
        "qc/map_stats.json",
        "qc/map_histogram.parquet",
        "qc/map_slices.png",
        "qc/map_projections.png",
        "qc/fsc.parquet",
        "qc/fsc.json",
        "qc/fsc.png",
        "data/map.ome.zarr/zarr.json",
        "data/map.ome.zarr/half_map_2/0/zarr.json",
        "data/map.ome.zarr/labels/mask/0/zarr.json",
    ):
        assert name in published, name
    root = zarr.open_group(str(stage.data_dir / "map.ome.zarr"), mode="r")
    Image.from_zarr(root)
    ImageLabel.from_zarr(root["labels/mask"])
    np.testing.assert_array_equal(root["0"][:], mrcfile.read(demo_run / "demo_map.mrc"))
    m = stage.metrics
    assert (m["nz"], m["ny"], m["nx"]) == (96, 96, 96) and m["voxel_size_x_angstrom"] == 1.06
    assert m["pyramid_levels"] == 3 and m["n_half_maps"] == 2 and m["has_mask"] == 1
    assert m["fsc_masked"] == 1 and 2.5 < m["resolution_fsc0143_angstrom"] < 4.5
    assert m["meets_expected_resolution"] == 1 and m["symmetry"] == "C1"
    assert all(isinstance(v, (int, float, str)) for v in m.values())  # flat: the catalog keeps it
    facts = stage.facts
    # human samples (the demo's HEK293 cells): run ids in path order, as _meta/run_ids.json has
    # them (demo_half_map_1.mrc, demo_half_map_2.mrc, demo_map.mrc, demo_mask.mrc)
    assert facts["facts"]["half_maps"] == ["run-001", "run-002"]
    assert m["map_file"] == "run-003"
    assert facts["conflicts"] == []
    assert pq.read_table(stage.qc_dir / "fsc.parquet")["fsc_masked"].null_count == 0
    assert (stage.meta_dir / "benchmarks" / "cryoem_convert.tsv").is_file()


def test_real_map_with_axis_order_312_gzip(run_folder, tmp_path):
    # the gzipped EMD-3001 (axis order 3,1,2, 160-byte extended header), no half maps
    run = run_folder(
        {"emd_3001.map.gz": shared_data("cryoem") / "emd_3001.map.gz"},
        block="cryoem:\n  symmetry: C1\n",
    )
    stage = run_stage(run, tmp_path / "work")
    root = zarr.open_group(str(stage.data_dir / "map.ome.zarr"), mode="r")
    with mrcfile.open(shared_data("cryoem") / "EMD-3001.map") as mrc:
        np.testing.assert_array_equal(root["0"][:], np.transpose(mrc.data, (2, 0, 1)))
    m = stage.metrics
    assert (m["nz"], m["ny"], m["nx"]) == (73, 25, 43) and m["pyramid_levels"] == 1
    assert "resolution_fsc0143_angstrom" not in m and m["n_half_maps"] == 0
    assert not (stage.qc_dir / "fsc.json").exists()
    facts = json.loads((stage.meta_dir / "facts.json").read_text())["facts"]
    assert (
        facts["axis_order_crs"] == "ZXY"
        and facts["space_group"] == 4
        and facts["compression"] == "gzip"
    )


def test_bad_mask_stops_the_run_with_exit_2_and_nothing_staged(run_folder, tmp_path):
    folder = shared_data("cryoem")
    run = run_folder(
        {
            "emd_3488.mrc": folder / "emd_3488.mrc",
            "emd_3488_contour_mask.mrc": folder / "emd_3488_contour_mask.mrc",
        }
    )
    with pytest.raises(InputError) as err:
        run_stage(run, tmp_path / "work")
    assert err.value.exit_code == 2
    (problem,) = err.value.problems
    # the run's samples are human: inside the workflow the files go by their run ids, in path
    # order (binds validate / binds run name them before, from the same check: preflight)
    assert problem.file == "run-002"  # emd_3488_contour_mask.mrc
    assert "grid 100x91x91 (z, y, x) differs from run-001's 100x100x100" in problem.message
    stage = StagedDataset(tmp_path / "work" / "stage")
    assert not stage.data_dir.exists() and not (stage.qc_dir / "metrics.json").exists()


def test_ambiguous_files_stop_the_workflow_at_the_header_check(run_folder, tmp_path):
    # a run by hand (no binds preflight): the parse-time file roles have a problem, so only
    # cryoem_inspect is scheduled and it reports the problem as an InputError (exit 2)
    run = run_folder(
        {"a.mrc": np.zeros((4, 4, 4), np.float32), "b.mrc": np.zeros((4, 4, 4), np.float32)}
    )
    with pytest.raises(InputError) as err:
        run_stage(run, tmp_path / "work")
    (problem,) = err.value.problems
    assert (
        problem.where == "cryoem.map" and "several candidate maps: a.mrc, b.mrc" in problem.message
    )
    assert not (tmp_path / "work" / "stage" / "data").exists()


def test_demo_generator_is_deterministic_and_valid(tmp_path):
    a = make_demo_run(tmp_path / "a", seed=3)
    b = make_demo_run(tmp_path / "b", seed=3)
    names = sorted(p.name for p in a.iterdir())
    assert names == [
        "demo_half_map_1.mrc",
        "demo_half_map_2.mrc",
        "demo_map.mrc",
        "demo_mask.mrc",
        "experiment.yaml",
    ]
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    exp = load_experiment(a)
    assert exp.modality == "cryoem" and exp.block["expected_resolution"] == 4.5
    with mrcfile.open(a / "demo_map.mrc") as mrc:
        assert mrc.voxel_size.x == pytest.approx(1.06) and mrc.data.shape == (96, 96, 96)
        assert mrcfile.validate(str(a / "demo_map.mrc"), print_file=open("/dev/null", "w"))
    assert (
        make_demo_run(tmp_path / "c", seed=4).joinpath("demo_map.mrc").read_bytes()
        != (a / "demo_map.mrc").read_bytes()
    )


def test_cli_free_entry_points_exist():
    # the modality contract: what binds init/validate/demo call
    from pipelines.modalities import cryoem, find_raw_files

    assert cryoem.DESCRIPTION and "**/*.map.gz" in cryoem.RAW_PATTERNS
    assert callable(cryoem.preflight) and callable(cryoem.make_demo_run)
    found = find_raw_files(shared_data("cryoem"), "cryoem")
    assert {p.name for p in found} >= {
        "EMD-3001.map",
        "emd_3001.map.gz",
        "emd_3488.mrc",
        "3650.map",
    }
    assert sys.modules["pipelines.modalities.cryoem"] is cryoem
