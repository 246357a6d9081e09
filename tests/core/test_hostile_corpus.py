"""A corpus of hostile inputs across the modalities: each is refused cleanly by `binds validate`
(exit 2, file named, no traceback, nothing written) and by `binds run` (exit 2, nothing
published).  The files are built here, small: HDF5 external storage / external link / virtual
dataset, decompression bombs (mzML.gz element and file caps, a map.gz past the cap), and names
the workflow cannot carry (periodic wildcard, too long, line break, braces).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from binds_testing import minimal_yaml
from hostile_files import gz_map, hostile_h5, mzml_bomb, outside_file
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.modalities import get as get_modality
from pipelines.toolkit import limits
from tests.conftest import shared_data

MiB = 1 << 20


def _mzml_run(tmp_path: Path, name: str = "QC_01.mzML") -> Path:
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(shared_data("metabolomics") / "example.mzML", run / name)
    (run / "experiment.yaml").write_text(minimal_yaml("metabolomics"))
    return run


def _mzml_bomb(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    mzml_bomb(shared_data("metabolomics"), run / "QC_01.mzML.gz", spectrum_mib=12)
    (run / "experiment.yaml").write_text(minimal_yaml("metabolomics"))
    return run


def _map_run(tmp_path: Path, name: str = "map.mrc") -> Path:
    import mrcfile

    run = tmp_path / "run"
    run.mkdir()
    with mrcfile.new(run / name) as mrc:
        mrc.set_data(np.zeros((8, 8, 8), dtype=np.float32))
    (run / "experiment.yaml").write_text(minimal_yaml("cryoem"))
    return run


def _map_bomb(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    gz_map(tmp_path, run / "big.map.gz", 256)  # 64 MiB inside, ~70 kB outside
    (run / "experiment.yaml").write_text(minimal_yaml("cryoem"))
    return run


def _h5_run(kind: str) -> Callable[[Path], Path]:
    def build(tmp_path: Path) -> Path:
        run = tmp_path / "run"
        run.mkdir()
        (run / "experiment.yaml").write_text(minimal_yaml("transcriptomics"))
        hostile_h5(run / "filtered_feature_bc_matrix.h5", kind, outside_file(tmp_path))
        return run

    return build


def _screening_run(tmp_path: Path, new_name: str) -> Path:
    run = tmp_path / "run"
    get_modality("screening").make_demo_run(run)
    (run / "DEMO-P01_R2.csv").rename(run / new_name)
    plates = run / "Platelist.txt"
    plates.write_text(plates.read_text().replace("DEMO-P01_R2.csv", new_name))
    return run


# name -> (builder, text the refusal shows, env caps for the case)
CORPUS: dict[str, tuple[Callable[[Path], Path], str, dict[str, str]]] = {
    "h5 external storage": (_h5_run("external_storage"), "/matrix/features/name", {}),
    "h5 external link": (_h5_run("external_link"), "external link", {}),
    "h5 virtual dataset": (_h5_run("virtual"), "virtual dataset", {}),
    "mzML.gz element bomb": (
        _mzml_bomb,
        "one spectrum is larger than 4 MiB",
        {limits.MAX_ELEMENT_ENV: "4"},
    ),
    "mzML.gz file bomb": (
        _mzml_bomb,
        "decompresses to more than",
        {limits.MAX_DECOMPRESSED_ENV: str(8 / 1024)},
    ),
    "map.gz past the cap": (
        _map_bomb,
        "decompresses to more than",
        {limits.MAX_DECOMPRESSED_ENV: str(32 / 1024)},
    ),
    "mzML periodic name": (
        lambda t: _mzml_run(t, "a" * 120 + ".mzML"),
        "PeriodicWildcardError",
        {},
    ),
    "mzML line break": (lambda t: _mzml_run(t, "QC\n01.mzML"), "a line break", {}),
    "map too long": (lambda t: _map_run(t, "m" * 100 + "n" * 150 + ".mrc"), "at most 200", {}),
    "map brace": (lambda t: _map_run(t, "map_{run}.mrc"), "'{'", {}),
    "plate periodic name": (
        lambda t: _screening_run(t, "P01_" + "xy" * 40 + ".csv"),
        "PeriodicWildcardError",
        {},
    ),
    "plate too long": (
        lambda t: _screening_run(t, "P" + "0123456789" * 21 + ".csv"),
        "at most 200",
        {},
    ),
}


@pytest.fixture
def case(request, tmp_path, monkeypatch):
    build, shown, env = CORPUS[request.param]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return build(tmp_path), shown


@pytest.mark.parametrize("case", list(CORPUS), indirect=True)
def test_validate_refuses_each_hostile_input(case, tmp_path):
    run, shown = case
    before = sorted(p for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["validate", str(run)])
    assert result.exit_code == 2, result.output
    assert shown in result.output and "Traceback" not in result.output
    assert "SECRET" not in result.output and "elsewhere" not in result.output
    assert sorted(p for p in tmp_path.rglob("*")) == before  # validate writes nothing


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    ["h5 external storage", "mzML.gz element bomb", "map.gz past the cap", "plate periodic name"],
    indirect=True,
)
def test_run_refuses_and_publishes_nothing(case, tmp_path):
    run, shown = case
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app, ["run", str(run), "--store", str(store), "--work-dir", str(tmp_path / "work")]
    )
    assert result.exit_code == 2, result.output
    assert shown in result.output and "Traceback" not in result.output
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
    shutil.rmtree(tmp_path / "work", ignore_errors=True)


def test_any_compressed_input_past_the_cap_is_refused(tmp_path, monkeypatch):
    """A 10x matrix.mtx.gz that inflates past the per-file cap: refused by validate, counted as
    a stream (scipy would have read it whole into memory)."""
    import gzip

    monkeypatch.setenv(limits.MAX_DECOMPRESSED_ENV, str(4 / 1024))  # 4 MiB
    run = tmp_path / "run"
    mtx = run / "filtered_feature_bc_matrix"
    mtx.mkdir(parents=True)
    with gzip.open(mtx / "matrix.mtx.gz", "wb", compresslevel=9) as fh:
        fh.write(b"%%MatrixMarket matrix coordinate integer general\n2 2 1\n")
        for _ in range(8):
            fh.write(b"%" * MiB)  # comment lines' worth of padding: 8 MiB inside
    with gzip.open(mtx / "features.tsv.gz", "wt") as fh:
        fh.write("G1\tG1\tGene Expression\nG2\tG2\tGene Expression\n")
    with gzip.open(mtx / "barcodes.tsv.gz", "wt") as fh:
        fh.write("AAAC-1\nAAAG-1\n")
    (run / "experiment.yaml").write_text(minimal_yaml("transcriptomics"))
    result = CliRunner().invoke(app, ["validate", str(run)])
    assert result.exit_code == 2, result.output
    assert "filtered_feature_bc_matrix/matrix.mtx.gz: decompresses to more than" in result.output
