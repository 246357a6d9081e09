"""The errors the CLI reports keep every field across processes (decoding workers pickle them back)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from pipelines.errors import InputError, Problem, RunError


def test_input_error_keeps_its_problems_through_pickle():
    problems = [
        Problem("array holds 3 values", file="a.mzML", where="spectrum index 7", hint="re-export"),
        Problem("second", file="b.mzML"),
    ]
    again = pickle.loads(pickle.dumps(InputError(problems)))
    assert (
        type(again) is InputError
        and again.problems == problems
        and str(again) == str(InputError(problems))
    )
    assert again.exit_code == 2


def test_run_error_keeps_its_details_through_pickle():
    again = pickle.loads(pickle.dumps(RunError("a decoding process died", details=["run again"])))
    assert type(again) is RunError and str(again) == "a decoding process died"
    assert again.details == ["run again"] and again.exit_code == 1


# ----------------------------------------------------------------------------- failures inside a rule
def test_unexpected_failure_inside_a_rule_is_one_line_naming_rule_and_input(
    tmp_path, monkeypatch, snakemake
):
    """A real run whose rule crashes on something that is not bad input (a broken environment:
    matplotlib refuses an unknown backend when scanpy is imported inside the step): one line
    naming the rule, the input file and the exception; the traceback only in the rule's log."""
    from binds_testing import link_files, minimal_yaml, run_stage

    from tests.conftest import shared_data

    h5 = shared_data("transcriptomics") / "10x_v3_GRCh38chr21" / "filtered_feature_bc_matrix.h5"
    run = tmp_path / "run"
    link_files(run, [h5])
    (run / "experiment.yaml").write_text(minimal_yaml("transcriptomics"))
    monkeypatch.setenv("MPLBACKEND", "no-such-backend")
    with pytest.raises(RunError) as info:
        run_stage(run, tmp_path / "work")
    message = str(info.value)
    assert message.startswith(
        "rule transcriptomics_singlecell failed reading filtered_feature_bc_matrix.h5: "
        "ValueError: Key backend: 'no-such-backend' is not a valid value"
    ), message
    assert "\n" not in message and len(message) < 400 and "Traceback" not in message
    assert info.value.exit_code == 1
    log = Path(info.value.details[0].removeprefix("traceback: "))
    assert log.name == "transcriptomics_singlecell.log" and log.is_absolute()
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "no-such-backend" in text
    assert any(
        "workflow failed in rule transcriptomics_singlecell" in d for d in info.value.details
    )


def test_run_step_names_the_input_file_the_step_was_reading(tmp_path):
    """Of several inputs, the one being read when the exception happened (seen through Python's
    'open' audit event), relative to the run folder; written as a crash record, exit status 1."""
    from types import SimpleNamespace

    from pipelines.toolkit.smk import run_step

    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "a.json").write_text('{"ok": 1}')
    (run / "sub" / "b.json").write_text('{"broken": ')
    stage = tmp_path / "stage"
    smk = SimpleNamespace(
        rule="read_both",
        log=[str(tmp_path / "logs" / "read_both.log")],
        input=[str(run / "a.json"), str(run / "sub")],
        output=[str(stage / "out.json")],
        config={"stage_dir": str(stage), "run_dir": str(run)},
    )

    def read_both(*, files):
        (tmp_path / "scratch.txt").write_text("written, not read")  # an output is never 'the input'
        return [json.loads(Path(f).read_text()) for f in files]

    with pytest.raises(SystemExit) as code:
        run_step(smk, read_both, files=[run / "a.json", run / "sub" / "b.json"])
    assert code.value.code == 1
    (record_file,) = (stage / "_meta" / "errors").glob("read_both-*.json")
    record = json.loads(record_file.read_text())
    assert record["kind"] == "crash" and record["rule"] == "read_both"
    assert record["input"] == "sub/b.json" and record["inputs"] == ["a.json", "sub"]
    assert record["exception"] == "JSONDecodeError" and record["message"].startswith(
        "Expecting value"
    )
    assert "Traceback (most recent call last)" in Path(record["log"]).read_text()


def test_write_json_writes_nan_and_infinities_as_null(tmp_path):
    import numpy as np

    from pipelines.toolkit.stage import write_json

    path = write_json(
        tmp_path / "m.json",
        {
            "b": float("nan"),
            "a": [np.float32("inf"), np.nan, 1.5, np.int64(3)],
            "c": np.array([1.0, -np.inf]),
            "d": {"z": 1, "y": np.float64("nan")},
        },
    )
    text = path.read_text()
    assert json.loads(text) == {
        "a": [None, None, 1.5, 3],
        "b": None,
        "c": [1.0, None],
        "d": {"y": None, "z": 1},
    }
    assert (
        text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    )  # sorted, fixed layout
    assert (
        write_json(
            tmp_path / "again.json",
            {
                "d": {"y": np.nan, "z": 1},
                "c": [1.0, -np.inf],
                "b": np.nan,
                "a": [np.inf, np.nan, 1.5, 3],
            },
        ).read_bytes()
        == path.read_bytes()
    )
