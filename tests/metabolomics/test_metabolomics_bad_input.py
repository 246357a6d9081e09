"""Bad input: a clear InputError naming the file, the spectrum index and the problem; nothing written.

Each damaged file is derived from a real one (example.mzML: indexed, zlib arrays, 11 spectra) so
that exactly one thing is wrong with it.
"""

from __future__ import annotations

import gzip
import re

import pytest

from pipelines.errors import InputError
from pipelines.modalities.metabolomics import preflight
from pipelines.modalities.metabolomics.convert import convert_mzml


def _convert(path, tmp_path):
    out_s, out_c = tmp_path / "out" / "s.parquet", tmp_path / "out" / "c.parquet"
    with pytest.raises(InputError) as info:
        convert_mzml(src=path, spectra_out=out_s, chromatograms_out=out_c)
    # nothing half-written is left behind
    assert not out_s.exists() and not out_c.exists()
    assert not list((tmp_path / "out").glob(".*partial"))
    (problem,) = info.value.problems
    assert problem.file == path.name
    return problem


def _spectrum(text: bytes, index: int) -> tuple[int, int]:
    start = text.index(f'<spectrum index="{index}"'.encode())
    return start, text.index(b"</spectrum>", start)


@pytest.fixture
def example(real_dir) -> bytes:
    return (real_dir / "example.mzML").read_bytes()


def test_truncated_gzip(real_dir, tmp_path):
    data = (real_dir / "example.mzML.gz").read_bytes()
    bad = tmp_path / "cut.mzML.gz"
    bad.write_bytes(data[: len(data) // 2])
    p = _convert(bad, tmp_path)
    assert "gzip stream is broken" in p.message
    assert re.search(r"after spectrum #\d+", p.where or ""), p
    assert "copy it again" in p.hint


def test_truncated_plain_file_names_the_cut_spectrum(example, tmp_path):
    start, end = _spectrum(example, 6)
    bad = tmp_path / "cut.mzML"
    bad.write_bytes(example[: (start + end) // 2])
    p = _convert(bad, tmp_path)
    assert p.message == "the file ends inside spectrum index 6" and p.where == "spectrum index 6"


def test_invalid_base64(example, tmp_path):
    start, _end = _spectrum(example, 3)
    b = example.index(b"<binary>", start) + len(b"<binary>")
    bad = tmp_path / "b64.mzML"
    bad.write_bytes(example[: b + 10] + b"!" + example[b + 11 :])  # one character replaced
    p = _convert(bad, tmp_path)
    assert p.where.startswith("spectrum index 3 ")
    assert p.message == "m/z array: invalid base64: '!' at character 10"
    assert "re-export" in p.hint


@pytest.mark.parametrize(
    "off_by", [1, -1]
)  # declared longer: libdeflate stops short; shorter: zlib decides
def test_array_length_not_matching_default_array_length(example, tmp_path, off_by):
    start, _ = _spectrum(example, 4)
    m = re.compile(rb'defaultArrayLength="(\d+)"').search(example, start)
    n = int(m.group(1))
    bad = tmp_path / "len.mzML"
    bad.write_bytes(example[: m.start(1)] + str(n + off_by).encode() + example[m.end(1) :])
    p = _convert(bad, tmp_path)
    assert p.where.startswith("spectrum index 4 ")
    assert f"array holds {n} values but defaultArrayLength says {n + off_by}" in p.message


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            b"<?xml version='1.0'?>\n<mzXML><msRun/></mzXML>\n",
            "not an mzML file (it starts with \"<?xml version='1.0'?>",
        ),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not an mzML file"),
        (b"scan,mz,intensity\n1,100.0,5\n", "not an mzML file (it starts with 'scan,mz,intensity"),
    ],
)
def test_not_mzml(tmp_path, content, expected):
    bad = tmp_path / "wrong.mzML"
    bad.write_bytes(content)
    p = _convert(bad, tmp_path)
    assert p.message.startswith(expected)
    assert "msconvert" in p.hint


def test_missing_ms_level(example, tmp_path):
    start, end = _spectrum(example, 2)
    body = example[start:end]
    body = re.sub(rb'<cvParam[^>]*accession="MS:1000511"[^>]*/>', b"", body)
    body = re.sub(rb'<cvParam[^>]*accession="MS:1000579"[^>]*/>', b"", body)
    bad = tmp_path / "nolevel.mzML"
    bad.write_bytes(example[:start] + body + example[end:])
    p = _convert(bad, tmp_path)
    assert p.where.startswith("spectrum index 2 ")
    assert "no 'ms level' cvParam (MS:1000511)" in p.message


def test_missing_compression_cvparam(example, tmp_path):
    start, end = _spectrum(example, 5)
    body = re.sub(rb'<cvParam[^>]*accession="MS:1000574"[^>]*/>', b"", example[start:end], count=1)
    bad = tmp_path / "nocomp.mzML"
    bad.write_bytes(example[:start] + body + example[end:])
    p = _convert(bad, tmp_path)
    assert p.where.startswith("spectrum index 5 ")
    assert "no compression cvParam" in p.message


@pytest.mark.parametrize(
    "name, content", [("empty.mzML", b""), ("empty.mzML.gz", gzip.compress(b"", mtime=0))]
)
def test_empty_file(tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    p = _convert(bad, tmp_path)
    assert "empty" in p.message or "no XML" in p.message
    assert "copy the file again" in p.hint


def test_preflight_reports_every_bad_file_and_bad_targets(example, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "good.mzML").write_bytes(example)
    (run / "empty.mzML").write_bytes(b"")
    (run / "notes.mzML").write_text("sample list\n")
    (run / "targets.csv").write_text("name,formula,adduct\ncaffeine,C8H10N4O2,[M+X]+\n")
    problems = preflight(run, {})
    text = [str(p) for p in problems]
    assert any(t.startswith("empty.mzML: the file is empty") for t in text), text
    assert any(t.startswith("notes.mzML: not an mzML file") for t in text), text
    assert any("targets.csv: line 2: unknown adduct '[M+X]+'" in t for t in text), text
    assert not any(t.startswith("good.mzML") for t in text)


def test_preflight_without_mzml_points_at_vendor_files(tmp_path):
    (tmp_path / "QC_01.raw").write_bytes(b"\x01\xa1")
    problems = preflight(tmp_path, {})
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.message == "no mzML files in the run folder"
    assert "QC_01.raw" in problem.hint and "ThermoRawFileParser" in problem.hint


def test_foreign_element_inside_the_spectrum_list_is_an_error_not_a_silent_stop(example, tmp_path):
    _, end = _spectrum(example, 4)
    stop = end + len(b"</spectrum>")
    bad = tmp_path / "foreign.mzML"
    bad.write_bytes(
        example[:stop] + b"\n<!-- exported by hand -->\n<note>x</note>" + example[stop:]
    )
    p = _convert(bad, tmp_path)
    assert p.message.startswith("unexpected content inside the spectrum list: '<note>x</note>")
    assert p.where.startswith("after spectrum #4")


def test_comment_between_spectra_is_skipped(example, tmp_path):
    from pipelines.modalities.metabolomics.mzml import MzMLReader

    _, end = _spectrum(example, 4)
    stop = end + len(b"</spectrum>")
    ok = tmp_path / "comment.mzML"
    ok.write_bytes(example[:stop] + b"\n<!-- a comment -->\n" + example[stop:])
    with MzMLReader(ok) as reader:
        assert [s.index for s in reader.spectra()] == list(range(11))


def test_plan_problems_stop_the_workflow_before_any_rule(tmp_path):
    from pipelines.modalities.metabolomics import find_runs, plan_problems, resolve_params

    params = resolve_params({"targets": "missing.csv"}, run_dir=tmp_path)
    problems = [str(p) for p in plan_problems(tmp_path, params, find_runs(tmp_path))]
    assert problems == [
        f"{tmp_path}: no mzML files in the run folder (put the .mzML (or .mzML.gz) files in the run folder)",
        "missing.csv: metabolomics.targets: targets file not found "
        "(put it in the run folder or fix metabolomics.targets in experiment.yaml)",
    ]


def test_sample_files_must_be_runs_of_the_folder(demo_run, tmp_path):
    """A samples[].files entry naming no run, a file outside the folder, or one run for two
    samples: each a problem naming experiment.yaml and the YAML path; nothing runs."""
    from pipelines.describe.metadata import load_experiment
    from pipelines.modalities import metabolomics
    from tests.metabolomics.conftest import copy_demo

    run = copy_demo(demo_run, tmp_path / "run")
    text = (run / "experiment.yaml").read_text()
    text = text.replace("files: [S1.mzML]", "files: [S1.mzml.gz, ../S1.mzML]")
    text = text.replace("files: [S3.mzML]", "files: [S2.mzML, targets.csv]")
    (run / "experiment.yaml").write_text(text)
    problems = metabolomics.list_inputs(run, load_experiment(run).data).problems
    got = sorted((p.file, p.where, p.message.split(" ")[-1]) for p in problems)
    assert [(f, w) for f, w, _ in got] == [
        ("experiment.yaml", "samples[0].files[0]"),
        ("experiment.yaml", "samples[0].files[1]"),
        ("experiment.yaml", "samples[2].files[0]"),
        ("experiment.yaml", "samples[2].files[1]"),
    ]
    messages = " | ".join(p.message for p in problems)
    assert "not found in the run folder" in messages and "outside the run folder" in messages
    assert "listed for samples 'S2' and 'S3'" in messages
    assert "'targets.csv' is not one of the metabolomics input files" in messages
