"""Headers, file roles and bad input: every problem names the file, the place and what is wrong."""

from __future__ import annotations

import bz2
import gzip
import shutil

import mrcfile
import numpy as np
import pytest
from cryoem_helpers import REAL_MAPS, write_mrc

from pipelines.describe.metadata import load_experiment
from pipelines.errors import InputError
from pipelines.modalities.cryoem import convert_maps, preflight, resolve_inputs
from pipelines.modalities.cryoem.mrc import iter_bricks, open_header, read_header, read_zyx
from tests.conftest import shared_data


# ------------------------------------------------------------------------- real headers
def test_emd_3001_geometry_axis_order_312_and_anisotropic_voxels():
    h = open_header(shared_data("cryoem") / "EMD-3001.map")
    assert h.axis_order == (3, 1, 2)
    assert h.file_shape == (25, 43, 73)  # sections (Y), rows (X), columns (Z)
    assert h.shape_zyx == (73, 25, 43)
    # cell / MX,MY,MZ, not cell / NX: 33.03/72 along Z, 4.71/12 along Y, 17.93/40 along X
    assert h.voxel_size_zyx == pytest.approx((0.45875, 0.3925, 0.44825), abs=1e-5)
    assert h.data_offset == 1024 + 160
    assert h.ext_header_bytes == 160
    assert h.space_group == 4
    assert h.cell_angles[1] == pytest.approx(94.326, abs=1e-3)
    # NXSTART (columns = Z) 0, NYSTART (rows = X) -21, NZSTART (sections = Y) -12
    assert h.start_xyz == (-21, -12, 0)
    assert h.translation_zyx() == pytest.approx((0.0, -12 * 0.3925, -21 * 0.44825), abs=1e-5)
    assert "EMD-3001" in h.labels[0]


def test_emd_3001_read_in_zyx_equals_mrcfile_transposed():
    path = shared_data("cryoem") / "EMD-3001.map"
    ours = read_zyx(open_header(path))
    with mrcfile.open(path) as mrc:
        # mrcfile keeps file order (Y sections, X rows, Z columns): z,y,x = axes 2, 0, 1
        expected = np.transpose(mrc.data, (2, 0, 1))
    assert ours.shape == (73, 25, 43)
    np.testing.assert_array_equal(ours, expected)


def test_gzip_map_streams_to_the_same_data_as_the_plain_file():
    folder = shared_data("cryoem")
    plain, packed = open_header(folder / "EMD-3001.map"), open_header(folder / "emd_3001.map.gz")
    assert packed.compression == "gzip" and plain.compression is None
    np.testing.assert_array_equal(read_zyx(packed), read_zyx(plain))


def test_bzip2_map_is_read(tmp_path):
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    src = write_mrc(tmp_path / "m.mrc", data)
    with open(src, "rb") as fin, bz2.open(tmp_path / "m.map.bz2", "wb") as fout:
        shutil.copyfileobj(fin, fout)
    h = open_header(tmp_path / "m.map.bz2")
    assert h.compression == "bzip2"
    np.testing.assert_array_equal(read_zyx(h), data)


def test_big_endian_map_is_read_into_native_order(tmp_path):
    data = np.arange(3 * 4 * 5, dtype=">f4").reshape(3, 4, 5)
    with mrcfile.new(tmp_path / "be.mrc") as mrc:
        mrc.set_data(data)  # mrcfile keeps the byte order (machine stamp 0x11 0x11)
    h = open_header(tmp_path / "be.mrc")
    assert h.file_dtype == np.dtype(">f4") and h.header_fields["machst"].startswith("1111")
    out = read_zyx(h)
    assert out.dtype == np.dtype("=f4")
    np.testing.assert_array_equal(out, data)


def test_bricks_tile_the_map_exactly(tmp_path):
    data = np.random.default_rng(1).normal(size=(11, 9, 5)).astype(np.float32)
    h = open_header(write_mrc(tmp_path / "m.mrc", data))
    seen = np.zeros(data.shape, int)
    for b in iter_bricks(h, depth=4, rows=3):
        seen[b.s, b.r] += 1
        np.testing.assert_array_equal(b.data, data[b.s, b.r])
    assert (seen == 1).all()


@pytest.mark.parametrize("name", REAL_MAPS)
def test_every_real_header_passes_the_checks(name):
    header, problems = read_header(shared_data("cryoem") / name)
    assert problems == [] and header is not None
    assert min(header.voxel_size_zyx) > 0


# ------------------------------------------------------------------------- file roles
def test_roles_by_name(tmp_path):
    for name in (
        "emd_1234.map",
        "emd_1234_half_map_1.map.gz",
        "emd_1234_half_map_2.map.gz",
        "emd_1234_msk_1.map",
        "notes.txt",
    ):
        (tmp_path / name).write_bytes(b"x")
    inputs = resolve_inputs(run_dir=tmp_path)
    assert inputs.problems == ()
    assert inputs.map.name == "emd_1234.map"
    assert [p.name for p in inputs.half_maps] == [
        "emd_1234_half_map_1.map.gz",
        "emd_1234_half_map_2.map.gz",
    ]
    assert inputs.mask.name == "emd_1234_msk_1.map"


@pytest.mark.parametrize(
    "names",
    [
        ("run_half1_class001_unfil.mrc", "run_half2_class001_unfil.mrc"),
        ("J42_map_half_A.mrc", "J42_map_half_B.mrc"),
    ],
    ids=["relion", "cryosparc"],
)
def test_half_map_names_of_relion_and_cryosparc(tmp_path, names):
    for name in (*names, "postprocess.mrc", "mask.mrc"):
        (tmp_path / name).write_bytes(b"x")
    inputs = resolve_inputs(run_dir=tmp_path)
    assert [p.name for p in inputs.half_maps] == list(names)
    assert inputs.map.name == "postprocess.mrc"


def test_block_names_win_and_half_maps_may_be_switched_off(tmp_path):
    for name in ("a.mrc", "b.mrc", "c_half_1.mrc", "c_half_2.mrc"):
        (tmp_path / name).write_bytes(b"x")
    inputs = resolve_inputs(
        run_dir=tmp_path, block={"map": "b.mrc", "half_maps": [], "mask": False}
    )
    assert inputs.problems == ()
    assert inputs.map.name == "b.mrc" and inputs.half_maps == () and inputs.mask is None


def test_two_candidate_maps_ask_for_cryoem_map(tmp_path):
    for name in ("a.mrc", "b.mrc"):
        (tmp_path / name).write_bytes(b"x")
    (problem,) = resolve_inputs(run_dir=tmp_path).problems
    assert problem.where == "cryoem.map" and "a.mrc, b.mrc" in problem.message
    assert "map: FILE" in problem.hint


def test_missing_named_file_points_at_the_yaml_field(tmp_path):
    (tmp_path / "a.mrc").write_bytes(b"x")
    (problem,) = resolve_inputs(run_dir=tmp_path, block={"mask": "nope.mrc"}).problems
    assert (problem.file, problem.where) == ("experiment.yaml", "cryoem.mask")
    assert "'nope.mrc' not found" in problem.message


def test_block_typo_is_reported_by_the_schema(run_folder):
    run = run_folder(
        {"m.mrc": np.zeros((4, 4, 4), np.float32)}, block="cryoem:\n  half_map: [a.mrc, b.mrc]\n"
    )
    with pytest.raises(InputError) as err:
        load_experiment(run)
    (problem,) = err.value.problems
    assert "unknown field 'half_map'" in problem.message and "half_maps" in problem.hint


# ------------------------------------------------------------------------- bad input
def _one(problems):
    assert len(problems) == 1, problems
    return problems[0]


def test_empty_file_named_mrc(tmp_path):
    (tmp_path / "map.mrc").write_bytes(b"")
    p = _one(read_header(tmp_path / "map.mrc")[1])
    assert p.file == "map.mrc" and "empty" in p.message


def test_text_file_named_mrc_is_not_a_map():
    # SOURCES.md is real text: read it under a .mrc name through a symlink
    p = _one(read_header(shared_data("cryoem") / "SOURCES.md", display="notes.mrc")[1])
    assert p.file == "notes.mrc" and "not an MRC/CCP4 map" in p.message and p.where == "header MAP"


def test_truncated_real_map(tmp_path):
    src = shared_data("cryoem") / "emd_3488.mrc"
    cut = tmp_path / "emd_3488.mrc"
    cut.write_bytes(src.read_bytes()[:2_000_000])
    p = _one(read_header(cut)[1])
    assert "truncated file" in p.message and "4001024" in p.message and "2000000" in p.message
    assert p.where == "data" and "copy the map again" in p.hint


def test_truncated_gzip_map_is_caught_while_streaming(tmp_path):
    data = np.ones((8, 8, 8), np.float32)
    src = write_mrc(tmp_path / "m.mrc", data)
    raw = src.read_bytes()[:-100]  # the data end early
    with gzip.open(tmp_path / "m.map.gz", "wb") as fh:
        fh.write(raw)
    _header, problems = read_header(tmp_path / "m.map.gz")
    assert problems and "truncated" in problems[0].message  # the gzip trailer gives the size away


def test_header_dims_inconsistent_with_file_size(tmp_path):
    path = write_mrc(tmp_path / "m.mrc", np.zeros((10, 10, 10), np.float32))
    with mrcfile.open(path, "r+", permissive=True) as mrc:
        mrc.header.nz = 8  # claims 8 sections, the file holds 10
    p = _one(read_header(path)[1])
    assert (
        "header dimensions do not match the file size" in p.message
        and p.where == "header NX/NY/NZ/MODE"
    )


def test_unsupported_mode(tmp_path):
    path = tmp_path / "complex.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((4, 4, 4), np.complex64))
    p = _one(read_header(path)[1])
    assert p.message == "unsupported mode 4 (complex float32)" and p.where == "header MODE"


@pytest.mark.filterwarnings(
    "ignore:Data array contains NaN:RuntimeWarning"
)  # mrcfile, writing the fixture
def test_nan_in_data_is_reported_with_its_voxel_not_converted(tmp_path):
    data = np.zeros((6, 5, 4), np.float32)
    data[3, 2, 1] = np.nan
    data[4, 0, 0] = np.inf
    src = write_mrc(tmp_path / "m.mrc", data)
    with pytest.raises(InputError) as err:
        convert_maps(map=src, out=tmp_path / "out.ome.zarr")
    p = _one(err.value.problems)
    assert (
        p.file == "m.mrc" and "2 NaN/Inf value(s)" in p.message and p.where == "voxel z=3, y=2, x=1"
    )


def test_half_maps_of_different_shape_and_voxel_size(run_folder):
    run = run_folder(
        {
            "m.mrc": np.zeros((8, 8, 8), np.float32),
            "m_half_1.mrc": np.zeros((8, 8, 6), np.float32),
            "m_half_2.mrc": np.zeros((8, 8, 8), np.float32),
        }
    )
    write_mrc(run / "m_half_2.mrc", np.zeros((8, 8, 8), np.float32), voxel_size=1.3)
    problems = preflight(run, {})
    assert [p.file for p in problems] == ["m_half_1.mrc", "m_half_2.mrc"]
    assert "grid 8x8x6 (z, y, x) differs from m.mrc's 8x8x8" in problems[0].message
    assert "voxel size 1.3/1.3/1.3 Å differs from m.mrc's 1/1/1 Å" in problems[1].message


def test_real_mask_on_a_different_grid(run_folder):
    folder = shared_data("cryoem")
    run = run_folder(
        {
            "emd_3488.mrc": folder / "emd_3488.mrc",
            "emd_3488_contour_mask.mrc": folder / "emd_3488_contour_mask.mrc",
        }
    )
    p = _one(preflight(run, {}))
    assert p.file == "emd_3488_contour_mask.mrc" and p.where == "header NX/NY/NZ"
    assert "grid 100x91x91 (z, y, x) differs from emd_3488.mrc's 100x100x100" in p.message
    assert "resample" in p.hint
    # the conversion refuses too (a run by hand, without preflight)
    with pytest.raises(InputError, match="differs from"):
        convert_maps(
            map=run / "emd_3488.mrc", mask=run / "emd_3488_contour_mask.mrc", out=run / "x.ome.zarr"
        )


def test_voxel_size_override_is_a_reported_conflict(run_folder, tmp_path):
    from pipelines.modalities.cryoem import inspect_inputs

    run = run_folder(
        {"m.mrc": np.zeros((8, 8, 8), np.float32)}, block="cryoem:\n  voxel_size: 1.1\n"
    )
    block = load_experiment(run).block
    facts = inspect_inputs(run_dir=run, block=block, facts_json=tmp_path / "facts.json")
    assert (
        facts["voxel_size_zyx_angstrom"] == [1.1, 1.1, 1.1]
        and facts["voxel_size_source"] == "experiment.yaml"
    )
    import json

    (conflict,) = json.loads((tmp_path / "facts.json").read_text())["conflicts"]
    assert conflict["field"] == "voxel_size_zyx_angstrom" and conflict["header"] == [1.0, 1.0, 1.0]
