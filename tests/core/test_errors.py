"""The errors the CLI reports keep every field across processes (decoding workers pickle them back)."""

from __future__ import annotations

import pickle

from pipelines.errors import InputError, Problem, RunError


def test_input_error_keeps_its_problems_through_pickle():
    problems = [Problem("array holds 3 values", file="a.mzML", where="spectrum index 7", hint="re-export"),
                Problem("second", file="b.mzML")]
    again = pickle.loads(pickle.dumps(InputError(problems)))
    assert type(again) is InputError and again.problems == problems and str(again) == str(InputError(problems))
    assert again.exit_code == 2


def test_run_error_keeps_its_details_through_pickle():
    again = pickle.loads(pickle.dumps(RunError("a decoding process died", details=["run again"])))
    assert type(again) is RunError and str(again) == "a decoding process died"
    assert again.details == ["run again"] and again.exit_code == 1
