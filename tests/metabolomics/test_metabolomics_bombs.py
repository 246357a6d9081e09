"""Decompression bombs: a small .mzML.gz holding one huge spectrum is refused by `validate`
(and by the conversion) at the element cap, quickly, without inflating past the cap.

On main a 2.3 MB .mzML.gz with one 512 MiB spectrum passed `validate` and drove the conversion
to 1.6 GB of memory before failing.
"""

from __future__ import annotations

import time

import pytest
from hostile_files import mzml_bomb

from pipelines.errors import InputError
from pipelines.modalities.metabolomics import preflight
from pipelines.modalities.metabolomics.convert import check_readable, convert_mzml
from pipelines.toolkit import limits

MiB = 1 << 20


@pytest.fixture(scope="module")
def bomb_512(real_dir, tmp_path_factory):
    return mzml_bomb(
        real_dir, tmp_path_factory.mktemp("bomb") / "QC_bomb.mzML.gz", spectrum_mib=512
    )


def test_bomb_is_small(bomb_512):
    assert bomb_512.stat().st_size < 3 * MiB


def test_validate_refuses_a_512_mib_spectrum_quickly(bomb_512):
    """Fails on main: the preflight read the header only and said nothing."""
    t0 = time.monotonic()
    (p,) = check_readable(bomb_512)
    seconds = time.monotonic() - t0
    assert "one spectrum is larger than 256 MiB" in p.message and p.where == "spectrum index 0"
    assert "BINDS_MAX_ELEMENT_MB" in p.hint
    assert seconds < 30, seconds  # inflates at most the 256 MiB cap (~1-3 s here)


def test_the_conversion_stops_at_the_cap_and_writes_nothing(real_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(limits.MAX_ELEMENT_ENV, "4")
    bomb = mzml_bomb(real_dir, tmp_path / "b.mzML.gz", spectrum_mib=16)
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        convert_mzml(src=bomb, spectra_out=out / "s.parquet", chromatograms_out=out / "c.parquet")
    (p,) = info.value.problems
    assert "larger than 4 MiB" in p.message and p.file == "b.mzML.gz"
    assert not any(out.glob("*"))


def test_decompressed_size_cap_for_the_whole_file(real_dir, tmp_path, monkeypatch):
    """A file whose elements are each small but which inflates past the per-file cap."""
    monkeypatch.setenv(limits.MAX_DECOMPRESSED_ENV, str(8 / 1024))  # 8 MiB
    bomb = mzml_bomb(real_dir, tmp_path / "b.mzML.gz", spectrum_mib=12)
    (p,) = check_readable(bomb)
    assert "decompresses to more than" in p.message and p.file == "b.mzML.gz"


def test_validate_of_a_run_folder_names_the_file(real_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(limits.MAX_ELEMENT_ENV, "2")
    run = tmp_path / "run"
    run.mkdir()
    mzml_bomb(real_dir, run / "QC_01.mzML.gz", spectrum_mib=8)
    problems = preflight(run, {"metabolomics": {}})
    assert [(p.file, p.where) for p in problems] == [("QC_01.mzML.gz", "spectrum index 0")]


@pytest.mark.parametrize(
    "name", ["example.mzML", "example.mzML.gz", "InternalCalibration_2_lockmass.mzML.gz"]
)
def test_real_files_pass_the_caps(real_dir, name):
    assert check_readable(real_dir / name) == []


def test_streaming_count_stops_at_the_cap(real_dir, tmp_path):
    bomb = mzml_bomb(real_dir, tmp_path / "b.mzML.gz", spectrum_mib=64)
    found = limits.decompressed_size(bomb, cap=8 * MiB)
    assert found.over_cap and found.size <= 9 * MiB
    full = limits.decompressed_size(bomb)
    assert not full.over_cap and full.size > 64 * MiB
    assert limits.gzip_isize(bomb) == full.size  # one member, under 4 GiB: the trailer agrees
