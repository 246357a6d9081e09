"""MRC -> OME-Zarr: conformance (ome-zarr-models), read-back (ome-zarr), pyramid, streaming."""

from __future__ import annotations

import tracemalloc

import mrcfile
import numpy as np
import pytest
import zarr
from cryoem_helpers import REAL_MAPS, tree_digest, write_mrc
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05 import Image, ImageLabel

from pipelines.modalities.cryoem import convert_maps, ngff
from pipelines.modalities.cryoem.ngff import halve, level_shapes
from tests.conftest import shared_data


def _expected_zyx(path) -> np.ndarray:
    """The mrcfile array moved to z, y, x by MAPC/MAPR/MAPS (file axes: sections, rows, columns)."""
    with mrcfile.open(path) as mrc:
        h = mrc.header
        data = np.asarray(mrc.data)
        crs = (int(h.maps), int(h.mapr), int(h.mapc))  # the X/Y/Z (1/2/3) of file axes 0, 1, 2
    return np.moveaxis(data, [0, 1, 2], [3 - a for a in crs])


@pytest.mark.parametrize("name", REAL_MAPS)
def test_real_map_converts_validates_and_round_trips(tmp_path, name):
    src = shared_data("cryoem") / name
    out = tmp_path / "map.ome.zarr"
    convert_maps(map=src, out=out)
    root = zarr.open_group(str(out), mode="r")
    Image.from_zarr(root)  # NGFF 0.5 conformance
    nodes = list(Reader(parse_url(str(out)))())  # read back with ome-zarr
    level0 = np.asarray(nodes[0].data[0])
    expected = _expected_zyx(src)
    assert level0.dtype == expected.dtype
    np.testing.assert_array_equal(level0, expected)
    ms = root.attrs["ome"]["multiscales"][0]
    assert [a["unit"] for a in ms["axes"]] == ["angstrom"] * 3
    assert [len(d) for d in nodes[0].data] == [s[0] for s in level_shapes(expected.shape)]
    assert root.attrs["binds"]["mrc_header"]["nx"] == mrcfile.open(src, header_only=True).header.nx


def test_emd_3001_scale_translation_and_header_attributes(tmp_path):
    out = tmp_path / "map.ome.zarr"
    convert_maps(map=shared_data("cryoem") / "EMD-3001.map", out=out)
    root = zarr.open_group(str(out), mode="r")
    (ds,) = root.attrs["ome"]["multiscales"][0]["datasets"]  # smallest axis 25 < 32: one level
    scale, translation = ds["coordinateTransformations"]
    assert scale["scale"] == pytest.approx([0.45875, 0.3925, 0.44825], abs=1e-6)
    assert translation["translation"] == pytest.approx([0.0, -12 * 0.3925, -21 * 0.44825], abs=1e-6)
    binds = root.attrs["binds"]
    assert binds["format"] == "binds-cryoem-map" and binds["format_version"] == 1
    assert binds["mrc_header"]["nsymbt"] == 160 and binds["header_facts"]["axis_order_crs"] == "ZXY"
    assert root["0"].metadata.dimension_names == ("z", "y", "x")


def test_pyramid_levels_shapes_and_transforms(tmp_path):
    data = np.random.default_rng(0).normal(size=(70, 64, 33)).astype(np.float32)
    src = write_mrc(tmp_path / "m.mrc", data, voxel_size=(1.5, 1.0, 2.0), start=(10, 0, 0))
    out = tmp_path / "m.ome.zarr"
    convert_maps(map=src, out=out)
    root = zarr.open_group(str(out), mode="r")
    shapes = [
        root[str(k)].shape for k in range(len(root.attrs["ome"]["multiscales"][0]["datasets"]))
    ]
    assert shapes == [(70, 64, 33), (35, 32, 17)]  # 17 < 32: the last level
    # level 1 = 2x2x2 mean; the odd x edge is averaged with itself
    padded = np.concatenate([data, data[:, :, -1:]], axis=2)
    expected = padded.reshape(35, 2, 32, 2, 17, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(root["1"][:], expected, rtol=1e-6, atol=1e-6)
    ds = root.attrs["ome"]["multiscales"][0]["datasets"]
    # voxel (z, y, x) = (2.0, 1.0, 1.5); translation from NXSTART=10 along x; level-1 centres
    # shift by half a voxel
    assert ds[0]["coordinateTransformations"][1]["translation"] == pytest.approx([0, 0, 15.0])
    assert ds[1]["coordinateTransformations"][0]["scale"] == pytest.approx([4.0, 2.0, 3.0])
    assert ds[1]["coordinateTransformations"][1]["translation"] == pytest.approx([1.0, 0.5, 15.75])


def test_level_shapes_stop_below_32():
    assert level_shapes((100, 100, 100)) == [(100,) * 3, (50,) * 3, (25,) * 3]
    assert level_shapes((800,) * 3)[-1] == (25,) * 3 and len(level_shapes((800,) * 3)) == 6
    assert level_shapes((31, 500, 500)) == [(31, 500, 500)]


@pytest.mark.parametrize(
    "dtype",
    [np.int8, np.int16, np.float32, np.uint16, np.float16],
    ids=["mode0", "mode1", "mode2", "mode6", "mode12"],
)
def test_every_mode_keeps_its_dtype(tmp_path, dtype):
    data = (np.arange(40 * 36 * 34) % 100).astype(dtype).reshape(40, 36, 34)
    src = write_mrc(tmp_path / "m.mrc", data)
    out = tmp_path / "m.ome.zarr"
    convert_maps(map=src, out=out)
    root = zarr.open_group(str(out), mode="r")
    assert root["0"].dtype == np.dtype(dtype) and root["1"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(root["0"][:], data)
    expected = data.astype(np.float32).reshape(20, 2, 18, 2, 17, 2).mean(axis=(1, 3, 5))
    tol = 0.5 if np.issubdtype(dtype, np.integer) else 0.1  # integers are rounded
    np.testing.assert_allclose(root["1"][:].astype(np.float32), expected, atol=tol)


def test_streaming_over_many_bricks_matches_whole_array(tmp_path, monkeypatch):
    # small chunks force many bricks, partial blocks and level buffers flushed mid-stream,
    # with the awkward axis order of EMD-3001 (sections = Y, rows = X, columns = Z)
    monkeypatch.setattr(ngff, "CHUNK", 8)
    monkeypatch.setattr(ngff, "MIN_LEVEL_SIZE", 4)
    data = np.random.default_rng(3).normal(size=(37, 29, 45)).astype(np.float32)
    src = write_mrc(tmp_path / "m.mrc", data, axis_order=(3, 1, 2))
    out = tmp_path / "m.ome.zarr"
    convert_maps(map=src, out=out)
    root = zarr.open_group(str(out), mode="r")
    zyx = np.transpose(data, (2, 0, 1))  # Z columns, Y sections, X rows
    np.testing.assert_array_equal(root["0"][:], zyx)
    assert root["0"].chunks == (8, 8, 8)
    level = zyx
    for k in range(1, len(root.attrs["ome"]["multiscales"][0]["datasets"])):
        level = halve(level, how="mean")
        np.testing.assert_allclose(root[str(k)][:], level, rtol=1e-5, atol=1e-6)
    assert k >= 3


def test_halve_against_reshape_mean_and_max():
    a = np.random.default_rng(5).normal(size=(6, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(
        halve(a, how="mean"), a.reshape(3, 2, 2, 2, 4, 2).mean(axis=(1, 3, 5)), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_array_equal(
        halve(a, how="max"), a.reshape(3, 2, 2, 2, 4, 2).max(axis=(1, 3, 5))
    )


def test_half_maps_and_mask_in_the_same_store(demo_run, tmp_path):
    out = tmp_path / "map.ome.zarr"
    convert_maps(
        map=demo_run / "demo_map.mrc",
        half_maps=[demo_run / "demo_half_map_1.mrc", demo_run / "demo_half_map_2.mrc"],
        mask=demo_run / "demo_mask.mrc",
        out=out,
    )
    root = zarr.open_group(str(out), mode="r")
    for half in ("half_map_1", "half_map_2"):
        Image.from_zarr(root[half])
        np.testing.assert_array_equal(
            root[half]["0"][:], mrcfile.read(demo_run / f"demo_{half}.mrc")
        )
    ImageLabel.from_zarr(root["labels/mask"])
    assert root["labels"].attrs["ome"]["labels"] == ["mask"]
    mask = mrcfile.read(demo_run / "demo_mask.mrc")
    labels = root["labels/mask/0"][:]
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, (mask >= 0.5).astype(np.uint8))
    assert 0.01 < labels.mean() < 0.5
    # ome-zarr finds the label image through the root's labels group
    nodes = list(Reader(parse_url(str(out)))())
    assert any(
        str(n).endswith("labels/mask [zgroup] (hidden)") or "labels/mask" in str(n) for n in nodes
    )


def test_same_input_same_bytes(tmp_path):
    src = shared_data("cryoem") / "emd_5168.map"
    convert_maps(map=src, out=tmp_path / "a.ome.zarr")
    convert_maps(map=src, out=tmp_path / "b.ome.zarr")
    assert tree_digest(tmp_path / "a.ome.zarr") == tree_digest(tmp_path / "b.ome.zarr")


def test_memory_is_bounded_by_bricks_not_the_map(tmp_path):
    # 128 MiB map of 1024 x 1024 sections: a brick (128 x 128 rows) is 1.6 % of it and a level-1
    # buffer 3 %; holding the array (or an mmap of it) would show up as >= 100 %.
    shape = (1024, 1024, 32)
    src = tmp_path / "big.mrc"
    pattern = (np.arange(1024 * 32, dtype=np.float32) % 251).reshape(1024, 32)
    with mrcfile.new_mmap(src, shape=shape, mrc_mode=2) as mrc:
        for z in range(0, shape[0], 128):
            mrc.data[z : z + 128] = pattern + np.arange(z, z + 128, dtype=np.float32)[:, None, None]
    map_bytes = 4 * np.prod(shape)
    tracemalloc.start()
    try:
        convert_maps(map=src, out=tmp_path / "big.ome.zarr")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * map_bytes, (
        f"peak {peak / 2**20:.0f} MiB for a {map_bytes / 2**20:.0f} MiB map"
    )
    level1 = zarr.open_array(str(tmp_path / "big.ome.zarr" / "1"), mode="r")
    assert level1.shape == (512, 512, 16) and level1[5, 7, 3] == pytest.approx(
        (np.arange(10, 12)[:, None, None] + pattern[14:16, 6:8][None]).mean()
    )
