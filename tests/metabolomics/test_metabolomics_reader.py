"""The streaming mzML reader against pymzml (the reference) on every real file, array for array."""

from __future__ import annotations

import gzip

import numpy as np
import pymzml
import pytest

from pipelines.modalities.metabolomics import mzml
from pipelines.modalities.metabolomics.mzml import MzMLReader
from tests.metabolomics.conftest import REAL_FILES


def _read_all(path, **kw):
    with MzMLReader(path, **kw) as reader:
        spectra = list(reader.spectra())
        chroms = list(reader.chromatograms())
        info = reader.finish()
    return spectra, chroms, info


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_every_real_file_equals_pymzml_array_for_array(real_dir, name):
    expected = REAL_FILES[name]
    ours, _, info = _read_all(real_dir / name)
    ref = list(pymzml.run.Reader(str(real_dir / name)))
    assert len(ours) == len(ref) == expected["n"]
    for s, r in zip(ours, ref, strict=False):
        where = f"{name} spectrum {s.index}"
        assert s.native_id == r.id_dict.get("id", s.native_id) or str(r.ID) in s.native_id, where
        assert s.ms_level == r.ms_level, where
        assert s.rt_s == pytest.approx(r.scan_time_in_minutes() * 60.0, abs=1e-9), where
        # m/z exactly (32-bit files widen exactly); intensity is float32 in our output
        np.testing.assert_array_equal(s.mz, np.asarray(r.mz, dtype=np.float64), err_msg=where)
        np.testing.assert_array_equal(
            s.intensity, np.asarray(r.i).astype(np.float32), err_msg=where
        )
        assert s.centroided is expected["centroid"], where
    assert sum(s.ms_level == 1 for s in ours) == expected["ms1"]
    assert sum(s.ms_level == 2 for s in ours) == expected["ms2"]
    assert len(info.sha256) == 64 and info.instrument_models


def test_rt_units_are_normalised_to_seconds(real_dir):
    # 171103 stores minutes (4.00-5.00 min), SiriusExport stores seconds (404.0-420.9 s)
    minutes, _, _ = _read_all(real_dir / "171103_PMA_TK_QC_04-4to5min.mzML")
    seconds, _, _ = _read_all(real_dir / "SiriusExport_1_input.mzML")
    rt_min = [s.rt_s for s in minutes]
    assert 239.9 < min(rt_min) and max(rt_min) < 300.1
    rt_s = [s.rt_s for s in seconds]
    assert min(rt_s) == pytest.approx(404.036, abs=1e-3) and max(rt_s) == pytest.approx(
        420.854, abs=1e-3
    )


def test_gzip_and_indexed_gzip_read_like_the_plain_file(real_dir):
    plain, pc, _ = _read_all(real_dir / "example.mzML")
    for variant in ("example.mzML.gz", "example.mzML.idx.gz"):
        other, oc, info = _read_all(real_dir / variant)
        assert info.compression == "gzip"
        assert [s.native_id for s in other] == [s.native_id for s in plain]
        for a, b in zip(plain, other, strict=False):
            np.testing.assert_array_equal(a.mz, b.mz)
            np.testing.assert_array_equal(a.intensity, b.intensity)
        assert [c.native_id for c in oc] == [c.native_id for c in pc]


def test_precursor_fields_of_an_ms2_spectrum(real_dir):
    spectra, _, _ = _read_all(real_dir / "171103_PMA_TK_QC_04-4to5min.mzML")
    first = spectra[0]  # SOURCES: starts with an HCD MS2 of 167.0134
    assert (
        first.ms_level == 2 and first.native_id == "controllerType=0 controllerNumber=1 scan=2122"
    )
    assert first.precursor_mz == pytest.approx(167.013366699219)
    assert first.precursor_charge == 1
    assert first.isolation_window_lower_offset == 0.5 and first.isolation_window_upper_offset == 0.5
    assert first.collision_energy == 30.0
    assert first.polarity == "positive" and first.tic == 5068703.5


def test_tiny_blocks_and_batches_give_the_same_spectra(real_dir, monkeypatch):
    """Element boundaries falling anywhere in a read block must not change a single value."""
    path = real_dir / "InternalCalibration_2_lockmass.mzML.gz"
    reference, ref_chroms, _ = _read_all(path)
    monkeypatch.setattr(mzml, "READ_BLOCK", 997)
    small, chroms, _ = _read_all(path, batch_bytes=5000, threads=2)
    single, _, _ = _read_all(path, batch_bytes=1, threads=1)
    for other in (small, single):
        assert [s.index for s in other] == [s.index for s in reference]
        for a, b in zip(reference, other, strict=False):
            np.testing.assert_array_equal(a.mz, b.mz)
            np.testing.assert_array_equal(a.intensity, b.intensity)
    assert [len(c.time_s) for c in chroms] == [len(c.time_s) for c in ref_chroms]


@pytest.mark.parametrize("scan", [1, 11, 12, 500])
def test_closing_tags_found_by_hopping_from_tag_to_tag(real_dir, monkeypatch, scan):
    """Past the first ``_SCAN`` bytes the splitter hops ``<`` to ``<``: any window, same elements."""
    for name in ("171103_PMA_TK_QC_04-4to5min.mzML", "InternalCalibration_2_lockmass.mzML.gz"):
        reference, ref_chroms, _ = _read_all(real_dir / name)
        monkeypatch.setattr(mzml, "_SCAN", scan)
        monkeypatch.setattr(mzml, "READ_BLOCK", 4093)
        hopped, chroms, _ = _read_all(real_dir / name, threads=1)
        monkeypatch.undo()
        assert [_fields(s) for s in hopped] == [_fields(s) for s in reference]
        for a, b in zip(reference, hopped, strict=False):
            np.testing.assert_array_equal(a.mz, b.mz)
        assert [c.native_id for c in chroms] == [c.native_id for c in ref_chroms]
    monkeypatch.setattr(mzml, "_SCAN", 8)  # the hops, on their own
    assert mzml._find_closer(b"<a>" + b"x" * 40 + b"</a>", b"</b>", 0) == -1
    assert mzml._find_closer(b"<a>" + b"x" * 40 + b"</a></s>", b"</s>", 0) == 47
    assert mzml._find_closer(b"<a></s>" + b"x" * 40 + b"</s>", b"</s>", 0) == 3  # inside the window


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_worker_processes_and_threads_give_what_one_process_gives(real_dir, name):
    """Batches decoded on forked workers (pickled back) or on threads: every value and note the same."""
    here, here_chroms, here_info = _read_all(real_dir / name, threads=1)
    for kw in (dict(processes=True), dict(processes=False)):
        other, chroms, info = _read_all(real_dir / name, threads=2, batch_bytes=20_000, **kw)
        assert len(other) == len(here)
        for a, b in zip(here, other, strict=False):
            assert _fields(a) == _fields(b)
            np.testing.assert_array_equal(a.mz, b.mz)
            np.testing.assert_array_equal(a.intensity, b.intensity)
        assert info.notes == here_info.notes and info.sha256 == here_info.sha256
        assert len(chroms) == len(here_chroms)


def test_large_files_of_small_spectra_go_to_processes_large_spectra_to_threads(
    real_dir, tmp_path, monkeypatch
):
    import threading

    monkeypatch.setattr(mzml, "PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # pytest's own threads aside

    def placement(path, **kw):
        with MzMLReader(path, **kw) as reader:
            return reader._decode_on()

    small = real_dir / "171103_PMA_TK_QC_04-4to5min.mzML"  # DDA: a few KB per spectrum
    assert placement(small) == "processes"
    assert placement(small, threads=1) == "here"
    monkeypatch.setattr(mzml, "PROCESS_MAX_SPECTRUM_BYTES", 100)  # as if every spectrum were large
    assert placement(small) == "threads"
    monkeypatch.setattr(mzml, "PROCESS_MAX_SPECTRUM_BYTES", 32 << 10)
    monkeypatch.setattr(threading, "active_count", lambda: 3)  # never fork a process with threads
    assert placement(small) == "threads"
    assert placement(small, processes=True) == "processes"
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(mzml.sys, "platform", "darwin")  # nor off Linux
    assert placement(small) == "threads"


def test_a_damaged_spectrum_decoded_in_a_worker_process_names_file_and_index(real_dir, tmp_path):
    from pipelines.errors import InputError

    text = (real_dir / "example.mzML").read_bytes()
    start = text.index(b'<spectrum index="7"')
    b = text.index(b"<binary>", start) + len(b"<binary>")
    bad = tmp_path / "damaged.mzML"
    bad.write_bytes(text[: b + 10] + b"!" + text[b + 11 :])
    with pytest.raises(InputError) as info:
        _read_all(bad, threads=2, processes=True, batch_bytes=1)
    (problem,) = info.value.problems
    assert problem.file == "damaged.mzML" and problem.where.startswith("spectrum index 7 ")
    assert problem.message == "m/z array: invalid base64: '!' at character 10"


def test_chromatograms_of_the_file_are_read_with_time_in_seconds(real_dir):
    _, chroms, _ = _read_all(real_dir / "171103_PMA_TK_QC_04-4to5min.mzML")
    assert [(c.native_id, c.kind, c.accession) for c in chroms] == [
        ("BasePeak_0", "BPC", "MS:1000628")
    ]
    assert len(chroms[0].time_s) == 4628
    # stored in minutes (UO:0000031) up to 9.003 min: unconverted it would stay below 10
    assert chroms[0].time_s.max() == pytest.approx(540.19, abs=0.01)
    assert np.all(np.diff(chroms[0].time_s) > 0)


def test_chromatogram_only_file_keeps_chromatograms_and_says_there_are_no_spectra(
    real_dir, tmp_path
):
    text = (real_dir / "example.mzML").read_bytes()
    start = text.index(b"<spectrumList")
    end = text.index(b"</spectrumList>") + len(b"</spectrumList>")
    only = tmp_path / "chrom_only.mzML"
    only.write_bytes(text[:start] + text[end:])
    from pipelines.modalities.metabolomics.convert import convert_mzml

    qc = convert_mzml(
        src=only, spectra_out=tmp_path / "s.parquet", chromatograms_out=tmp_path / "c.parquet"
    )
    assert qc.n_spectra == 0 and qc.n_chromatograms_in_file == 1
    assert any("no spectra (chromatograms only)" in n for n in qc.notes)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "s.parquet").num_rows == 0
    chrom = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [c["source"] for c in chrom] == ["computed", "computed", "file"]
    assert len(chrom[2]["time_s"]) == 2918


@pytest.mark.parametrize("intensity_codec", ["SLOF", "PIC"])
def test_numpress_arrays_decode_like_pyopenms(real_dir, tmp_path, intensity_codec):
    """MS-Numpress (linear m/z + slof/pic intensity, zlib'ed): same values as OpenMS decodes."""
    oms = pytest.importorskip("pyopenms")
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(real_dir / "example.mzML"), exp)
    f = oms.MzMLFile()
    opts = f.getOptions()
    codec = oms.MSNumpressCoder.NumpressCompression
    for setter, kind in (
        (opts.setNumpressConfigurationMassTime, codec.LINEAR),
        (opts.setNumpressConfigurationIntensity, getattr(codec, intensity_codec)),
    ):
        cfg = oms.NumpressConfig()
        cfg.np_compression = kind
        cfg.estimate_fixed_point = True
        cfg.numpressErrorTolerance = -1.0  # always numpress, never fall back to plain zlib
        setter(cfg)
    opts.setCompression(True)
    f.setOptions(opts)
    out = tmp_path / "numpress.mzML"
    f.store(str(out), exp)
    assert b"MS:1002746" in out.read_bytes()  # linear + zlib really used
    back = oms.MSExperiment()
    oms.MzMLFile().load(str(out), back)
    ours, _, _ = _read_all(out)
    assert len(ours) == back.getNrSpectra() == 11
    for s, r in zip(ours, back.getSpectra(), strict=False):
        mz, inten = r.get_peaks()
        np.testing.assert_allclose(s.mz, mz, rtol=0, atol=1e-9)
        np.testing.assert_allclose(s.intensity, inten, rtol=1e-6)


def test_32_bit_mz_arrays_widen_exactly(tmp_path):
    """A file with 32-bit m/z (psims, encoding 32) reads back to the float32 values, widened."""
    from psims.mzml.writer import MzMLWriter

    mz = np.array([100.123456, 200.5, 350.987654], dtype=np.float32)
    inten = np.array([1.5, 2.5, 3.5], dtype=np.float64)
    path = tmp_path / "f32.mzML"
    with MzMLWriter(open(path, "wb"), close=True) as out:
        out.controlled_vocabularies()
        with out.run(id="r"):
            with out.spectrum_list(count=1):
                out.write_spectrum(
                    mz,
                    inten,
                    id="scan=1",
                    centroided=False,
                    scan_start_time=1.5,
                    params=["MS1 spectrum", {"ms level": 1}],
                    encoding={"m/z array": np.float32, "intensity array": np.float64},
                )
    assert b"MS:1000521" in path.read_bytes() and b"MS:1000523" in path.read_bytes()
    (s,), _, _ = _read_all(path)
    assert s.mz.dtype == np.float64 and s.intensity.dtype == np.float32
    np.testing.assert_array_equal(s.mz, mz.astype(np.float64))
    np.testing.assert_array_equal(s.intensity, inten.astype(np.float32))
    assert s.centroided is False and s.rt_s == pytest.approx(90.0)


def test_source_sha256_covers_the_stored_gzip_bytes(real_dir):
    import hashlib

    path = real_dir / "example.mzML.gz"
    _, _, info = _read_all(path)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert gzip.decompress(path.read_bytes())[:5] == b"<?xml"


def test_cvparams_given_by_referenceable_param_group(real_dir, tmp_path):
    """ms level, centroid flag and the arrays' precision/compression may live in param groups."""
    import re

    text = (real_dir / "example.mzML").read_bytes()
    groups = (
        b'<referenceableParamGroupList count="3">\n'
        b'<referenceableParamGroup id="ms1"><cvParam cvRef="MS" accession="MS:1000511" name="ms level" value="1"/>'
        b'<cvParam cvRef="MS" accession="MS:1000127" name="centroid spectrum" value=""/></referenceableParamGroup>\n'
        b'<referenceableParamGroup id="mz"><cvParam cvRef="MS" accession="MS:1000523" name="64-bit float" value=""/>'
        b'<cvParam cvRef="MS" accession="MS:1000574" name="zlib compression" value=""/>'
        b'<cvParam cvRef="MS" accession="MS:1000514" name="m/z array" value=""/></referenceableParamGroup>\n'
        b"</referenceableParamGroupList>\n"
    )
    for acc in (b"MS:1000511", b"MS:1000127"):
        text = re.sub(rb'<cvParam[^>]*accession="' + acc + rb'"[^>]*/>', b"", text)
    text = text.replace(b"<softwareList", groups + b"<softwareList", 1)
    # the spectrum-level ones by reference
    text = re.sub(rb"(<spectrum [^>]*>)", rb'\1<referenceableParamGroupRef ref="ms1"/>', text)
    # the m/z array's three cvParams by reference (first array of each spectrum)
    text = re.sub(
        rb"(<binaryDataArray [^>]*>)\s*<cvParam[^>]*MS:1000523[^>]*/>\s*<cvParam[^>]*MS:1000574[^>]*/>"
        rb"\s*<cvParam[^>]*MS:1000514[^>]*/>",
        rb'\1<referenceableParamGroupRef ref="mz"/>',
        text,
    )
    assert text.count(b'ref="mz"') == 11 and text.count(b'ref="ms1"') == 11
    path = tmp_path / "groups.mzML"
    path.write_bytes(text)
    grouped, _, _ = _read_all(path)
    plain, _, _ = _read_all(real_dir / "example.mzML")
    assert [(s.ms_level, s.centroided) for s in grouped] == [(1, True)] * 11
    for a, b in zip(grouped, plain, strict=False):
        np.testing.assert_array_equal(a.mz, b.mz)
        np.testing.assert_array_equal(a.intensity, b.intensity)


def _fields(s):
    return {f: getattr(s, f) for f in s.__slots__ if f not in ("mz", "intensity")}


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_fast_paths_give_what_the_general_paths_give(real_dir, name, monkeypatch):
    """The one-regex shortcuts (spectrum tag, strict cvParam form, cached array params) change no value."""
    fast, _, _ = _read_all(real_dir / name)

    class NoCache(dict):
        def get(self, key, default=None):
            return default

    never = __import__("re").compile(rb"(?!)")
    monkeypatch.setattr(mzml, "_SPECTRUM_TAG_RE", never)
    monkeypatch.setattr(mzml, "_STRICT_CV_RE", never)
    monkeypatch.setattr(mzml, "_CLASSIFIED", NoCache())
    general, _, _ = _read_all(real_dir / name)
    assert len(fast) == len(general)
    for a, b in zip(fast, general, strict=False):
        assert _fields(a) == _fields(b)
        np.testing.assert_array_equal(a.mz, b.mz)
        np.testing.assert_array_equal(a.intensity, b.intensity)


def test_base64_wrapped_over_lines_decodes_like_one_line(real_dir, tmp_path):
    """Some writers wrap base64 at 76 characters: the strict SIMD pass refuses it, binascii reads it."""
    import re

    text = (real_dir / "example.mzML").read_bytes()
    wrapped = re.sub(
        rb"<binary>([^<]+)</binary>",
        lambda m: (
            b"<binary>"
            + b"\n".join(m.group(1)[i : i + 76] for i in range(0, len(m.group(1)), 76))
            + b"</binary>"
        ),
        text,
    )
    assert wrapped.count(b"\n") > text.count(b"\n") + 10
    (tmp_path / "wrapped.mzML").write_bytes(wrapped)
    one_line, _, _ = _read_all(real_dir / "example.mzML")
    lines, _, _ = _read_all(tmp_path / "wrapped.mzML")
    assert len(lines) == len(one_line) > 0
    for a, b in zip(one_line, lines, strict=False):
        np.testing.assert_array_equal(a.mz, b.mz)
        np.testing.assert_array_equal(a.intensity, b.intensity)


def test_libdeflate_and_zlib_inflate_every_real_array_alike(real_dir):
    """The fast inflate (libdeflate, size known) against the stdlib on every zlib array of the real files."""
    import re
    import zlib

    import pybase64

    checked = 0
    for name in sorted(REAL_FILES):
        path = real_dir / name
        text = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        for m in re.finditer(rb"<binary>([^<]+)</binary>", text):
            raw = pybase64.b64decode(m.group(1))
            try:
                expected = zlib.decompress(raw)
            except zlib.error:
                continue  # not a zlib array (uncompressed / numpress)
            assert mzml._inflate(raw, len(expected)) == expected
            checked += 1
    assert checked > 1000


def test_spectrum_tag_with_an_entity_or_another_order_is_read_by_the_general_path():
    body = (
        b'<cvParam cvRef="MS" accession="MS:1000511" name="ms level" value="2"/>'
        b'<cvParam accession="MS:1000016" cvRef="MS" value="1.5" name="scan start time" '
        b'unitAccession="UO:0000031"/>'
        b"</spectrum>"
    )
    s = mzml.parse_spectrum(
        b'<spectrum index="3" id="scan=&quot;4&quot;" defaultArrayLength="0">' + body,
        {},
        file="x.mzML",
        rt_notes=set(),
    )
    assert (s.index, s.native_id, s.ms_level, s.rt_s) == (3, 'scan="4"', 2, 90.0)
    assert not mzml._SPECTRUM_TAG_RE.match(
        b'<spectrum defaultArrayLength="0" id="scan=5" index="4">'
    )
    s = mzml.parse_spectrum(
        b'<spectrum defaultArrayLength="0" id="scan=5" index="4">' + body,
        {},
        file="x.mzML",
        rt_notes=set(),
    )
    assert (s.index, s.native_id) == (4, "scan=5")


def test_closing_a_reader_midway_stops_its_read_ahead_thread(real_dir, monkeypatch):
    import threading

    monkeypatch.setattr(mzml, "READ_BLOCK", 4096)  # many blocks: the thread is still reading
    with MzMLReader(real_dir / "171103_PMA_TK_QC_04-4to5min.mzML", batch_bytes=1) as reader:
        next(reader.spectrum_batches())
    assert not [t for t in threading.enumerate() if t.name == "mzml-read"]
