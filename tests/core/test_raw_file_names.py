"""Raw file names are checked by `binds validate` with the rules the workflow applies.

On main a name of 240 repeated characters passed validation and failed the run with Snakemake's
PeriodicWildcardError (exit 1), and names with line breaks were accepted.
"""

from __future__ import annotations

import os

import pytest
from binds_testing import minimal_yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.errors import InputError
from pipelines.run.runner import check_run_dir
from pipelines.toolkit.rawfiles import MAX_NAME_BYTES, name_problems
from tests.conftest import shared_data


def _metabolomics_run(tmp_path, name: str):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(shared_data("metabolomics") / "example.mzML", run / name)
    (run / "experiment.yaml").write_text(minimal_yaml("metabolomics"))
    return run


BAD_NAMES = {
    "periodic": "a" * 120 + ".mzML",  # under the length cap: Snakemake's periodic wildcard
    "long": "a" * 240 + ".mzML",
    "long varied": "".join(chr(ord("a") + i % 26) for i in range(230)) + ".mzML",
    "newline": "QC_01\nrm -rf.mzML",
    "tab": "QC_01\t2.mzML",
    "brace": "QC_{run}.mzML",
}


@pytest.mark.parametrize("case", BAD_NAMES)
def test_validate_refuses_names_the_workflow_cannot_carry(tmp_path, case):
    run = _metabolomics_run(tmp_path, BAD_NAMES[case])
    with pytest.raises(InputError) as info:
        check_run_dir(run)
    problems = info.value.problems
    assert problems and all(p.file and "\n" not in str(p) for p in problems)
    assert all(p.file.startswith(BAD_NAMES[case][:5].replace("\n", "\\n")) for p in problems)
    result = CliRunner().invoke(app, ["validate", str(run)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_messages_name_the_rule():
    assert "PeriodicWildcardError" in name_problems("b" * 60 + ".mzML")[0].message
    long = name_problems("x" * 300)
    assert any(f"at most {MAX_NAME_BYTES}" in p.message for p in long)
    assert "a line break" in name_problems("a\nb.mzML")[0].message


@pytest.mark.parametrize(
    "name",
    [
        "QC_01.mzML",
        "171103_PMA_TK_QC_04-4to5min.mzML",
        "サンプル1.mzML",
        "a" * 15 + ".mzML",
        "x" * 190 + ".mzML.gz"[:0] + "y.mzML",
        "run 1 (repeat).mzML",
    ],
)
def test_ordinary_names_pass(name):
    assert name_problems(name) == []


def test_a_good_name_still_validates(tmp_path):
    run = _metabolomics_run(tmp_path, "QC_01.mzML")
    _exp, files = check_run_dir(run)
    assert [f.name for f in files] == ["QC_01.mzML"]
