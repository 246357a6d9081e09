"""FSC (synthetic band limit, real half maps), map statistics, pictures, determinism of QC files."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pyarrow.parquet as pq
import pytest
from cryoem_helpers import write_mrc

from pipelines.errors import InputError
from pipelines.modalities.cryoem import fsc_half_maps, map_qc
from pipelines.modalities.cryoem.qc import fsc_curve, resolution_at
from tests.conftest import shared_data


def _band_limited_pair(
    n: int, voxel: float, resolution: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Signal with all Fourier power below 1/resolution, plus independent noise per half."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n, d=voxel)
    kx = np.fft.rfftfreq(n, d=voxel)
    radius = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)
    spectrum = np.fft.rfftn(rng.normal(size=(n, n, n)))
    signal = np.fft.irfftn(spectrum * (radius <= 1 / resolution), s=(n, n, n), axes=(0, 1, 2))
    noise_rms = 0.5 * signal.std()
    return (
        signal + rng.normal(scale=noise_rms, size=signal.shape),
        signal + rng.normal(scale=noise_rms, size=signal.shape),
    )


@pytest.mark.parametrize("resolution", [8.0, 5.0])
def test_fsc_0143_crossing_within_one_shell_of_the_band_limit(resolution):
    n, voxel = 64, 1.25
    half1, half2 = _band_limited_pair(n, voxel, resolution, seed=int(resolution))
    freq, fsc, _ = fsc_curve(half1, half2, voxel_size_zyx=(voxel,) * 3)
    shell = freq[1]
    assert shell == pytest.approx(1 / (n * voxel))
    found = resolution_at(freq, fsc, 0.143)
    assert abs(1 / found - 1 / resolution) <= shell, (found, resolution)
    # inside the band the halves agree, beyond it they do not
    inside = freq < 0.8 / resolution
    assert fsc[1:][inside[1:]].min() > 0.6 and abs(fsc[freq > 1.2 / resolution]).max() < 0.2


def test_fsc_with_anisotropic_voxels_uses_physical_frequency():
    half1, half2 = _band_limited_pair(48, 1.0, 6.0, seed=11)
    # the same volumes declared with a 2x coarser z sampling: shells follow 1/angstrom, and the
    # coarsest axis sets Nyquist (1 / (2 x 2.0 A))
    freq, fsc, _ = fsc_curve(half1, half2, voxel_size_zyx=(2.0, 1.0, 1.0))
    assert freq[-1] <= 1 / 4.0 + 1e-9
    assert fsc[1] > 0.9


def test_real_emd_3650_half_maps(tmp_path):
    folder = shared_data("cryoem") / "EMD-3650_halfmaps"
    result = fsc_half_maps(
        half1=folder / "1.0" / "3650.map",
        half2=folder / "2.0" / "3650.map",
        mask=None,
        fsc_parquet=tmp_path / "fsc.parquet",
        fsc_png=tmp_path / "fsc.png",
        fsc_json=tmp_path / "fsc.json",
    )
    voxel = 1.6406249
    assert result.nyquist_resolution == pytest.approx(2 * voxel, rel=1e-5)
    # This pair was re-processed (clipped, normalised; see SOURCES.md): the halves agree up to
    # Nyquist, so no crossing exists and the resolution is reported as Nyquist-limited (None).
    assert result.fsc[1] > 0.99 and result.fsc.min() > 0.5
    assert result.resolution_0143 is None and result.resolution_05 is None
    table = pq.read_table(tmp_path / "fsc.parquet")
    assert table.column_names == [
        "shell",
        "frequency_per_angstrom",
        "resolution_angstrom",
        "fsc",
        "fsc_masked",
        "n_coefficients",
    ]
    assert table.num_rows == len(result.fsc) == 33  # shells 0..32 of a 64-voxel box
    assert table["fsc_masked"].null_count == table.num_rows
    summary = json.loads((tmp_path / "fsc.json").read_text())
    assert summary["resolution_fsc0143_angstrom"] is None
    assert summary["nyquist_resolution_angstrom"] == pytest.approx(3.2812, abs=1e-3)
    assert (tmp_path / "fsc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_masked_fsc_of_the_demo_reaches_its_expected_resolution(demo_run, tmp_path):
    result = fsc_half_maps(
        half1=demo_run / "demo_half_map_1.mrc",
        half2=demo_run / "demo_half_map_2.mrc",
        mask=demo_run / "demo_mask.mrc",
        fsc_parquet=tmp_path / "f.parquet",
        fsc_png=tmp_path / "f.png",
        fsc_json=tmp_path / "f.json",
    )
    assert result.masked and result.fsc_masked is not None
    unmasked = resolution_at(result.frequency, result.fsc, 0.143)
    # the mask removes solvent noise: a better (smaller) resolution than unmasked
    assert 2.5 < result.resolution_0143 < unmasked
    assert result.resolution_0143 < 4.5  # the demo's expected_resolution


@pytest.mark.filterwarnings(
    "ignore::RuntimeWarning"
)  # mrcfile computing header stats of the fixture
def test_half_maps_with_nan_are_refused(tmp_path):
    a = np.zeros((8, 8, 8), np.float32)
    b = a.copy()
    b[1, 2, 3] = np.inf
    write_mrc(tmp_path / "h1.mrc", a)
    write_mrc(tmp_path / "h2.mrc", b)
    with pytest.raises(InputError) as err:
        fsc_half_maps(
            half1=tmp_path / "h1.mrc",
            half2=tmp_path / "h2.mrc",
            mask=None,
            fsc_parquet=tmp_path / "f.parquet",
            fsc_png=tmp_path / "f.png",
            fsc_json=tmp_path / "f.json",
        )
    (problem,) = err.value.problems
    assert problem.file == "h2.mrc" and problem.where == "voxel z=1, y=2, x=3"


def _qc(src, out, name="m"):
    return map_qc(
        src=src,
        stats_json=out / f"{name}.json",
        histogram_parquet=out / f"{name}.parquet",
        slices_png=out / f"{name}_slices.png",
        projections_png=out / f"{name}_proj.png",
    )


def test_map_statistics_of_real_map_match_numpy(tmp_path):
    src = shared_data("cryoem") / "emd_5168.map"
    stats = _qc(src, tmp_path)
    data = mrcfile.read(src).astype(np.float64)
    assert stats.n_voxels == data.size
    assert (stats.min, stats.max) == (pytest.approx(data.min()), pytest.approx(data.max()))
    assert stats.mean == pytest.approx(data.mean(), rel=1e-9)
    assert stats.rms == pytest.approx(data.std(), rel=1e-6)  # deviations are taken in float32
    hist = pq.read_table(tmp_path / "m.parquet")
    assert sum(hist["count"].to_pylist()) == data.size and hist.num_rows == 256
    assert hist["bin_start"][0].as_py() == pytest.approx(data.min())
    for png in ("m_slices.png", "m_proj.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qc_files_are_deterministic(tmp_path):
    src = shared_data("cryoem") / "EMD-3001.map"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _qc(src, tmp_path / "a")
    _qc(src, tmp_path / "b")
    for name in ("m.json", "m.parquet", "m_slices.png", "m_proj.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    png = (tmp_path / "a" / "m_slices.png").read_bytes()
    assert b"tIME" not in png and b"matplotlib" not in png  # no timestamp, no version stamp
