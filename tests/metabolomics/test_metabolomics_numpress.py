"""MS-Numpress arrays (linear MS:1002312, positive integer MS:1002313, short logged float
MS:1002314, each with or without zlib) decoded exactly as pyopenms decodes them.

The files are written here by pyopenms itself (PeakFileOptions + NumpressConfig) from a real
mzML, in every encoding, and in ProteoWizard's style too (the numpress term next to a separate
"zlib compression" / "no compression" term, which main decoded as plain floats: 13 values
instead of 176, and the dataset was refused as inconsistent).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipelines.modalities.metabolomics.convert import convert_mzml
from pipelines.modalities.metabolomics.mzml import MzMLReader
from pipelines.modalities.metabolomics.numpress import DECODERS

oms = pytest.importorskip("pyopenms")


def _config(method: str) -> object:
    cfg = oms.NumpressConfig()
    cfg.setCompression(method)
    cfg.estimate_fixed_point = True
    cfg.numpressErrorTolerance = -1.0  # store whatever numpress gives; we compare the decoding
    return cfg


def _write(src: Path, dest: Path, *, mass: str, intensity: str, zlib: bool) -> Path:
    """``src`` re-written by pyopenms with numpress arrays, plus a 176-point chromatogram."""
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(src), exp)
    chrom = oms.MSChromatogram()
    chrom.setNativeID("TIC-numpress")
    rng = np.random.default_rng(7)
    chrom.set_peaks((np.linspace(0.0, 600.0, 176), rng.integers(0, 2_000_000, 176).astype(float)))
    exp.addChromatogram(chrom)
    f = oms.MzMLFile()
    opt = f.getOptions()
    opt.setNumpressConfigurationMassTime(_config(mass))
    opt.setNumpressConfigurationIntensity(_config(intensity))
    opt.setCompression(zlib)
    f.setOptions(opt)
    f.store(str(dest), exp)
    return dest


def _as_proteowizard(path: Path, *, zlib: bool) -> Path:
    """The same file with each numpress term split as ProteoWizard writes it: the numpress
    term and, after it, "zlib compression" (or "no compression")."""
    text = path.read_text()
    combined = {"MS:1002746": "MS:1002312", "MS:1002747": "MS:1002313", "MS:1002748": "MS:1002314"}
    second = (
        '<cvParam cvRef="MS" accession="MS:1000574" name="zlib compression" />'
        if zlib
        else '<cvParam cvRef="MS" accession="MS:1000576" name="no compression" />'
    )

    def split(m: re.Match[str]) -> str:
        acc = combined.get(m.group(1), m.group(1))
        return f'<cvParam cvRef="MS" accession="{acc}" name="MS-Numpress" />\n{second}'

    text, n = re.subn(
        r'<cvParam cvRef="MS" accession="(MS:100(?:2312|2313|2314|2746|2747|2748))" name="[^"]*" />',
        split,
        text,
    )
    assert n > 0
    out = path.with_name("pwiz-" + path.name)
    out.write_text(text)
    return out


def _pyopenms_arrays(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, tuple]]:
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(path), exp)
    spectra = [s.get_peaks() for s in exp.getSpectra()]
    chroms = {c.getNativeID(): c.get_peaks() for c in exp.getChromatograms()}
    return spectra, chroms


def _assert_same_as_pyopenms(path: Path, reference: Path | None = None) -> None:
    ref_spectra, ref_chroms = _pyopenms_arrays(reference or path)
    reader = MzMLReader(path)
    ours = list(reader.spectra())
    assert len(ours) == len(ref_spectra) > 0
    for s, (mz, inten) in zip(ours, ref_spectra, strict=True):
        np.testing.assert_array_equal(np.asarray(s.mz, dtype=mz.dtype), mz)
        np.testing.assert_array_equal(np.asarray(s.intensity, dtype=inten.dtype), inten)
    chroms = {c.native_id: c for c in reader.chromatograms()}
    assert len(chroms["TIC-numpress"].intensity) == 176
    for cid, (rt, inten) in ref_chroms.items():
        np.testing.assert_array_equal(np.asarray(chroms[cid].time_s, dtype=rt.dtype), rt)
        np.testing.assert_array_equal(np.asarray(chroms[cid].intensity, dtype=inten.dtype), inten)


ENCODINGS = [
    ("linear", "pic"),
    ("linear", "slof"),
    ("linear", "linear"),
    ("none", "pic"),
    ("linear", "none"),
]


@pytest.mark.parametrize("zlib", [False, True], ids=["plain", "zlib"])
@pytest.mark.parametrize(("mass", "intensity"), ENCODINGS, ids=["-".join(e) for e in ENCODINGS])
def test_numpress_arrays_read_as_pyopenms_reads_them(real_dir, tmp_path, mass, intensity, zlib):
    path = _write(
        real_dir / "example.mzML", tmp_path / "np.mzML", mass=mass, intensity=intensity, zlib=zlib
    )
    _assert_same_as_pyopenms(path)


@pytest.mark.parametrize("zlib", [False, True], ids=["no-compression", "zlib"])
def test_proteowizard_style_numpress_terms(real_dir, tmp_path, zlib):
    """Fails on main: the separate compression term won and numpress bytes were read as floats."""
    path = _write(
        real_dir / "example.mzML", tmp_path / "np.mzML", mass="linear", intensity="pic", zlib=zlib
    )
    pwiz = _as_proteowizard(path, zlib=zlib)
    _assert_same_as_pyopenms(pwiz, reference=path)


def test_numpress_run_converts_among_plain_files(real_dir, tmp_path):
    """A dataset of three files, one with a numpress positive-integer chromatogram: converts."""
    path = _as_proteowizard(
        _write(
            real_dir / "example.mzML", tmp_path / "c.mzML", mass="none", intensity="pic", zlib=False
        ),
        zlib=False,
    )
    for src in (real_dir / "example.mzML", real_dir / "SiriusExport_1_input.mzML", path):
        out = tmp_path / "out" / src.name
        qc = convert_mzml(
            src=src, spectra_out=out / "s.parquet", chromatograms_out=out / "c.parquet"
        )
        assert qc is not None and (out / "s.parquet").is_file()
    import pyarrow.parquet as pq

    chrom = pq.read_table(tmp_path / "out" / path.name / "c.parquet").to_pylist()
    (row,) = [r for r in chrom if r["chromatogram_id"] == "TIC-numpress"]
    values = next(v for k, v in row.items() if k.startswith("intensity"))
    assert len(values) == 176


@pytest.mark.parametrize("method", ["linear", "pic", "slof"])
def test_decoders_match_pyopenms_bit_for_bit(method):
    rng = np.random.default_rng(3)
    arrays = {
        "linear": [
            np.sort(rng.uniform(50, 2000, 5000)),
            rng.uniform(0, 2000, 777),
            np.array([1.0]),
            np.array([1.0, 2.0]),
            np.array([]),
        ],
        "pic": [
            rng.integers(0, 2**31, 500).astype(float),
            rng.integers(0, 20, 3000).astype(float),
            np.array([0.0]),
            np.array([7.0]),
            np.array([]),
        ],
        "slof": [rng.uniform(0, 3e4, 2000), np.array([0.0, 1.0, 12345.6]), np.array([])],
    }[method]
    coder = oms.MSNumpressCoder()
    for values in arrays:
        cfg = _config(method)
        raw = coder.encodeNPRaw(list(values), cfg)
        ref: list[float] = []
        coder.decodeNP(coder.encodeNP(list(values), False, cfg), ref, False, cfg)
        np.testing.assert_array_equal(DECODERS[method](raw), np.asarray(ref, dtype=np.float64))


@pytest.mark.slow
def test_three_file_run_with_a_numpress_chromatogram_is_processed(real_dir, tmp_path):
    """Fails on main: the run was refused ("the file is inconsistent; re-convert it")."""
    import pyarrow.parquet as pq
    from binds_testing import minimal_yaml, run_stage

    from pipelines.run.privacy_gate import run_ids
    from pipelines.run.runner import check_run_dir

    run = tmp_path / "run"
    run.mkdir()
    for name in ("example.mzML", "SiriusExport_1_input.mzML"):
        (run / name).symlink_to(real_dir / name)
    built = _write(
        real_dir / "example.mzML", tmp_path / "np.mzML", mass="none", intensity="pic", zlib=True
    )
    _as_proteowizard(built, zlib=True).rename(run / "numpress_run.mzML")
    (run / "experiment.yaml").write_text(minimal_yaml("metabolomics", title="Numpress run"))
    check_run_dir(run)
    stage = run_stage(run, tmp_path / "work")
    # human samples: the file travels under its run id (name order of the run's raw files)
    (rid,) = [r for r, p in run_ids(run.glob("*.mzML")).items() if p.name == "numpress_run.mzML"]
    chrom = pq.read_table(stage.root / "data" / "chromatograms.parquet" / f"{rid}.parquet")
    (row,) = [r for r in chrom.to_pylist() if r["chromatogram_id"] == "TIC-numpress"]
    assert len(next(v for k, v in row.items() if k.startswith("intensity"))) == 176
    assert (stage.root / "qc" / "metrics.json").is_file()
