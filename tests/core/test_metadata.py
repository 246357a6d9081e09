"""experiment.yaml validation: every problem at once, with YAML path, line and hint; exit 2 via the CLI."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.describe.metadata import load_experiment, lookup_label
from pipelines.errors import InputError

MINIMAL = textwrap.dedent("""\
    schema_version: 1
    request_id: BINDS-2026-0042
    title: Apoferritin map from the Krios, session 3
    modality: cryoem            # cryoem | metabolomics | transcriptomics | screening
    instrument: {manufacturer: Thermo Fisher, model: Titan Krios G4}
    acquired: 2026-11-20
    access: {level: consortium}  # open | consortium | restricted
    license: CC-BY-4.0
    samples:
      - id: S1
        organism: NCBITaxon:9606
    """)


def write(tmp_path, text: str):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "experiment.yaml").write_text(text)
    return run


def test_the_minimal_contract_file_is_valid(tmp_path):
    exp = load_experiment(write(tmp_path, MINIMAL))
    assert exp.modality == "cryoem" and exp.access == "consortium"
    assert exp.dataset_id == "binds-2026-0042-cryoem"
    assert exp.data["acquired"] == "2026-11-20"  # kept as ISO text
    assert exp.block == {}


def replace(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


# (yaml text, expected substring of one reported line)
BROKEN = {
    "missing-title": (
        replace("title: Apoferritin map from the Krios, session 3\n", ""),
        "experiment.yaml: title: required field is missing",
    ),
    "missing-instrument-model": (
        replace("model: Titan Krios G4", "serial: 42"),
        "line 5: instrument.model: required field is missing (e.g. 'model: Titan Krios G4')",
    ),
    "missing-access-level": (
        replace("access: {level: consortium}", "access: {embargo_until: 2027-01-01}"),
        "access.level: required field is missing (open | consortium | restricted)",
    ),
    "no-samples": (
        MINIMAL.split("samples:")[0] + "samples: []\n",
        "samples: needs at least 1 item(s)",
    ),
    "sample-without-id": (
        replace("  - id: S1\n    organism", "  - organism"),
        "samples[0].id: required field is missing",
    ),
    "wrong-type-title": (
        replace("title: Apoferritin map from the Krios, session 3", "title: [a, b]"),
        "line 3: title: expected string, got list",
    ),
    "wrong-type-samples": (
        MINIMAL.split("samples:")[0] + "samples: S1\n",
        "samples: expected array, got str",
    ),
    "organism-label": (
        replace("NCBITaxon:9606", "human"),
        "samples[0].organism: 'human' is not an NCBITaxon id (did you mean NCBITaxon:9606?)",
    ),
    "bad-tissue": (
        replace("organism: NCBITaxon:9606", "organism: NCBITaxon:9606\n    tissue: liver"),
        "samples[0].tissue: 'liver' is not an UBERON id (did you mean UBERON:0002107?)",
    ),
    "bad-cell-type-form": (
        replace("organism: NCBITaxon:9606", "organism: NCBITaxon:9606\n    cell_type: CL:236"),
        "samples[0].cell_type: 'CL:236' is not a CL id",
    ),
    "bad-date": (
        replace("acquired: 2026-11-20", "acquired: 2026-13-20"),
        "line 6: acquired: '2026-13-20' is not a date (write it as YYYY-MM-DD",
    ),
    "date-words": (
        replace("acquired: 2026-11-20", "acquired: last tuesday"),
        "acquired: 'last tuesday' is not a date",
    ),
    "future-date": (
        replace("acquired: 2026-11-20", "acquired: 2099-01-01"),
        "acquisition date 2099-01-01 is in the future",
    ),
    "unknown-modality": (
        replace("modality: cryoem", "modality: cryo-em"),
        "modality: 'cryo-em' is not one of cryoem, metabolomics, transcriptomics, screening (did you mean 'cryoem'?)",
    ),
    "unknown-access": (
        replace("{level: consortium}", "{level: public}"),
        "access.level: 'public' is not one of open, consortium, restricted",
    ),
    "bad-license": (
        replace("license: CC-BY-4.0", "license: CC BY 4.0"),
        "license: 'CC BY 4.0' is not an accepted SPDX licence id (did you mean CC-BY-4.0?)",
    ),
    "typo-field": (
        MINIMAL + "opertor: Tanaka\n",
        "unknown field 'opertor' (did you mean 'operator'?)",
    ),
    "yaml-syntax": (
        replace("title: Apoferritin map from the Krios, session 3", "title: [unclosed"),
        "experiment.yaml: line",
    ),
    "yaml-tab-indent": (replace("  - id: S1", "\t- id: S1"), "YAML syntax error"),
    "request-id-traversal": (
        replace("request_id: BINDS-2026-0042", "request_id: ../../etc/passwd"),
        "request_id: '../../etc/passwd' is not allowed here",
    ),
    "dataset-id-traversal": (
        MINIMAL + "dataset_id: ../other-unit/x\n",
        "dataset_id: '../other-unit/x' is not allowed here",
    ),
    "dataset-id-slash": (MINIMAL + "dataset_id: a/b\n", "dataset_id: 'a/b' is not allowed here"),
    "schema-version": (
        replace("schema_version: 1", "schema_version: 2"),
        "schema_version 2 is not supported",
    ),
    "duplicate-sample": (MINIMAL + "  - id: S1\n", "samples[1].id: duplicate sample id 'S1'"),
    "bad-orcid": (
        MINIMAL + "requester: {pi: Suzuki, orcid: '1234-5678'}\n",
        "requester.orcid: '1234-5678' is not allowed here (16 digits",
    ),
    "placeholder-left": (
        replace("model: Titan Krios G4", "model: EDIT"),
        "placeholder from `binds init` not filled in",
    ),
    "not-a-mapping": ("- just\n- a list\n", "expected a mapping of fields"),
    "empty-file": ("", "expected a mapping of fields (key: value), got an empty file"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_experiment_yaml_is_reported_clearly(case, tmp_path):
    text, expected = BROKEN[case]
    run = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_experiment(run)
    lines = [str(p) for p in info.value.problems]
    assert any(expected in line for line in lines), lines
    # through the CLI: exit 2, the same line, no traceback
    result = CliRunner().invoke(app, ["validate", str(run)])
    assert result.exit_code == 2, result.output
    assert (
        expected.split(": ", 1)[-1][:40] in result.output.replace("\n", " ")
        or expected[:40] in result.output
    )
    assert "Traceback" not in result.output


def test_every_problem_reported_at_once(tmp_path):
    text = (
        MINIMAL.replace("modality: cryoem", "modality: cryem")
        .replace("2026-11-20", "2026-02-30")
        .replace("NCBITaxon:9606", "mouse")
        .replace("CC-BY-4.0", "CCBY")
    )
    with pytest.raises(InputError) as info:
        load_experiment(write(tmp_path, text))
    wheres = [p.where for p in info.value.problems]
    assert wheres == [
        "line 4: modality",
        "line 6: acquired",
        "line 8: license",
        "line 11: samples[0].organism",
    ]
    assert "did you mean NCBITaxon:10090?" in str(info.value)


def test_missing_experiment_yaml_says_how_to_make_one(tmp_path):
    with pytest.raises(InputError, match="binds init"):
        load_experiment(tmp_path)


def test_unlisted_but_well_formed_ontology_id_is_a_note_not_an_error(tmp_path):
    exp = load_experiment(write(tmp_path, MINIMAL.replace("NCBITaxon:9606", "NCBITaxon:7460")))
    assert any("NCBITaxon:7460 is well formed but not in the bundled" in n for n in exp.notes)


def test_vocabulary_lookup():
    assert lookup_label("NCBITaxon", "Mouse").id == "NCBITaxon:10090"
    assert lookup_label("UBERON", "bloood").id == "UBERON:0000178"  # close match
    assert lookup_label("CL", "no such cell at all") is None


# ----------------------------------------------------------------------------- hostile or odd files
def _billion_laughs() -> str:
    """The classic YAML bomb: nine levels of nine aliases each, ~10^9 strings once expanded."""
    lines = ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return MINIMAL + "\n".join(lines) + "\n"


_MEASURE = textwrap.dedent("""\
    import resource, sys, time, tracemalloc
    # today's code expanded the bomb to 10 GB: bound the child so a regression fails, not the machine
    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024 ** 3, 2 * 1024 ** 3))
    from pipelines.errors import InputError
    from pipelines.describe.metadata import load_experiment
    tracemalloc.start()
    start = time.perf_counter()
    try:
        load_experiment(sys.argv[1])
        outcome = "accepted"
    except InputError as err:
        outcome = "refused: " + str(err).replace("\\n", " | ")
    except MemoryError:
        outcome = "MemoryError"
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
    # (a large pytest process would be measured), while exec starts a new VmHWM
    hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
    rss = int(hwm[0].split()[1]) * 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{seconds:.3f} {peak} {rss} {outcome}")
    """)


def _measure_load(run) -> tuple[float, int, int, str]:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(run)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds, peak, rss, outcome = proc.stdout.strip().split(" ", 3)
    return float(seconds), int(peak), int(rss), outcome


def test_yaml_bomb_is_refused_fast_and_small(tmp_path):
    run = write(tmp_path, _billion_laughs())
    seconds, peak, rss, outcome = _measure_load(run)
    assert outcome.startswith(
        "refused: experiment.yaml: line 13, column 12: YAML alias *l0 is not accepted"
    ), outcome
    assert seconds < 1.0, seconds
    assert peak < 100 * 1024**2, peak  # Python allocations while loading
    assert rss < 300 * 1024**2, rss  # the whole child process, imports included
    result = CliRunner().invoke(app, ["validate", str(run)])
    assert result.exit_code == 2 and "write the value out in full" in result.output


def test_oversized_experiment_yaml_is_refused_before_parsing(tmp_path):
    run = write(tmp_path, MINIMAL + "notes: |\n" + ("  " + "x" * 98 + "\n") * 3_000)
    seconds, peak, _rss, outcome = _measure_load(run)
    assert "the file is 303,402 bytes" in outcome and "at most 256,000" in outcome, outcome
    assert seconds < 0.2 and peak < 10 * 1024**2


def test_deep_nesting_is_refused(tmp_path):
    with pytest.raises(InputError) as info:
        load_experiment(write(tmp_path, MINIMAL + "extra: " + "[" * 40 + "]" * 40 + "\n"))
    assert "nested more than 32 levels deep" in str(info.value)


def test_latin1_file_names_line_and_byte_and_says_save_as_utf8(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    text = MINIMAL.replace("Apoferritin map from the Krios", "Apoferritine prot\u00e9g\u00e9e")
    (run / "experiment.yaml").write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError) as info:
        load_experiment(run)
    (p,) = info.value.problems
    assert p.file == "experiment.yaml" and p.message.startswith("not valid UTF-8: byte 0xE9")
    assert (
        p.where
        == f"line 3, byte 25 of the line (offset {len(text.split('prot')[0]) + 4} in the file)"
    )
    assert "save it as UTF-8" in p.hint and "Latin-1" in p.message
    result = CliRunner().invoke(app, ["validate", str(run)])
    assert result.exit_code == 2 and "save it as UTF-8" in result.output


@pytest.mark.parametrize(
    ("encoding", "bom", "named"),
    [
        ("utf-16-le", b"\xff\xfe", "UTF-16 (little-endian, with a byte-order mark)"),
        ("utf-16-be", b"\xfe\xff", "UTF-16 (big-endian, with a byte-order mark)"),
        ("utf-16-le", b"", "UTF-16 (little-endian, no byte-order mark)"),
        ("utf-32-le", b"\xff\xfe\x00\x00", "UTF-32 (little-endian, with a byte-order mark)"),
        ("utf-32-be", b"", "UTF-32 (big-endian, no byte-order mark)"),
    ],
    ids=["utf16le-bom", "utf16be-bom", "utf16le", "utf32le-bom", "utf32be"],
)
def test_wide_encodings_are_named(tmp_path, encoding, bom, named):
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.yaml").write_bytes(bom + MINIMAL.encode(encoding))
    with pytest.raises(InputError) as info:
        load_experiment(run)
    (p,) = info.value.problems
    assert p.message == f"the file is {named}, not UTF-8" and "save it as UTF-8" in p.hint
    assert "#x0000" not in str(info.value)


def test_utf8_bom_is_accepted_with_a_note(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.yaml").write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    exp = load_experiment(run)
    assert exp.data["schema_version"] == 1  # the BOM did not become part of the first key
    assert any("byte-order mark" in n for n in exp.notes)


def test_every_unknown_field_is_reported_at_once_with_its_line(tmp_path):
    text = (
        MINIMAL.replace("license: CC-BY-4.0", "licence: CC-BY-4.0\nopertor: Tanaka")
        + "instrumnet_serial: 42\n"
    )
    text = text.replace(
        "organism: NCBITaxon:9606", "organism: NCBITaxon:9606\n    tisue: UBERON:0000178"
    )
    with pytest.raises(InputError) as info:
        load_experiment(write(tmp_path, text))
    unknown = [str(p) for p in info.value.problems if "unknown field" in p.message]
    assert unknown == [
        "experiment.yaml: line 8: licence: unknown field 'licence' (did you mean 'license'?)",
        "experiment.yaml: line 9: opertor: unknown field 'opertor' (did you mean 'operator'?)",
        "experiment.yaml: line 13: samples[0].tisue: unknown field 'tisue' (did you mean 'tissue'?)",
        "experiment.yaml: line 14: instrumnet_serial: unknown field 'instrumnet_serial' (did you mean 'instrument'?)",
    ], unknown
    assert any("license: required field is missing" in str(p) for p in info.value.problems)


def test_two_thousand_samples_just_under_the_cap_still_load(tmp_path):
    """The cap leaves room for real files: ~1 s on an idle machine (0.4 s of it schema
    validation of 2,000 samples), ~2 s under tracemalloc."""
    samples = "".join(
        f"  - id: S{i:04d}\n    organism: NCBITaxon:9606\n    tissue: UBERON:0000178\n"
        f"    description: donor {i}, second visit, frozen\n"
        for i in range(2, 2100)
    )
    text = MINIMAL + samples
    assert 200_000 < len(text.encode()) < 256_000
    seconds, _peak, _rss, outcome = _measure_load(write(tmp_path, text))
    assert outcome == "accepted" and seconds < 20.0, (
        seconds,
        outcome,
    )  # loose: a shared CI machine


def test_thousands_of_unknown_fields_are_summarised_fast(tmp_path):
    text = MINIMAL + "".join(f"k{i}: {i}\n" for i in range(18_000))
    assert len(text.encode()) < 256_000
    seconds, _peak, _rss, outcome = _measure_load(write(tmp_path, text))
    assert (
        "18000 unknown fields here; the first 50 follow" in outcome
        and outcome.count("unknown field 'k") == 50
    )
    assert seconds < 20.0, seconds  # was minutes with a line look-up per name


def test_sample_files_resolve_through_the_run_folder_guard(tmp_path):
    from pipelines.errors import InputError
    from pipelines.toolkit.inputs import sample_of_files

    run = tmp_path / "run"
    (run / "plates").mkdir(parents=True)
    (run / "mtx").mkdir()
    files = [run / "a.mzML", run / "plates" / "P1_R1.csv", run / "plates" / "P1_R2.csv"]
    files.append(run / "mtx" / "matrix.mtx")
    for f in files:
        f.write_text("x")
    (tmp_path / "outside.mzML").write_text("x")
    (run / "link.mzML").symlink_to(tmp_path / "outside.mzML")
    exp = {
        "samples": [
            {"id": "S1", "files": ["a.mzML", "mtx"]},
            {"id": "S2", "files": ["plates/P1_*.csv"]},
        ]
    }
    got = sample_of_files(run, exp, files, modality="test")
    assert {p.relative_to(run).as_posix(): s for p, s in got.items()} == {
        "a.mzML": "S1",
        "mtx/matrix.mtx": "S1",
        "plates/P1_R1.csv": "S2",
        "plates/P1_R2.csv": "S2",
    }
    # one sample without files: every input is its
    assert set(sample_of_files(run, {"samples": [{"id": "S9"}]}, files, modality="t").values()) == {
        "S9"
    }
    bad = {
        "samples": [
            {"id": "S1", "files": ["link.mzML", "/etc/passwd", "a.mzML"]},
            {"id": "S2", "files": ["a.mzML", "nothing_*.csv"]},
        ]
    }
    with pytest.raises(InputError) as err:
        sample_of_files(run, bad, files, modality="test")
    where = {p.where: p.message for p in err.value.problems}
    assert set(where) == {
        "samples[0].files[0]",
        "samples[0].files[1]",
        "samples[1].files[0]",
        "samples[1].files[1]",
    }
    assert "symbolic link" in where["samples[0].files[0]"]
    assert "outside the run folder" in where["samples[0].files[1]"]
    assert "listed for samples 'S1' and 'S2'" in where["samples[1].files[0]"]
    assert "matches no file" in where["samples[1].files[1]"]
    assert all(p.file == "experiment.yaml" for p in err.value.problems)
