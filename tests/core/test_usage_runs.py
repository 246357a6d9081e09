"""Billing counts an instrument run by its raw files, not by its metadata (issue #25)."""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines.describe.usage import inputs_digest, usage_report, version_usage
from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.toolkit.stage import StagedDataset

RAW = [
    {"name": "plate1.csv", "size": 10, "sha256": "a" * 64},
    {"name": "plate2.csv", "size": 12, "sha256": "b" * 64},
]


def test_a_metadata_fix_keeps_the_run_identity_and_new_raw_files_change_it():
    before = inputs_digest([*RAW, {"name": "experiment.yaml", "size": 300, "sha256": "c" * 64}])
    after = inputs_digest([*RAW, {"name": "experiment.yaml", "size": 301, "sha256": "d" * 64}])
    assert before == after == inputs_digest(RAW)
    assert inputs_digest([RAW[0], {**RAW[1], "sha256": "e" * 64}]) != before


@pytest.mark.slow
def test_republish_after_a_licence_fix_is_one_instrument_run(cryoem_version, tmp_path):
    """One screen published twice after a licence correction was billed `instrument,2.0,run`."""
    _, _, staged, _ = cryoem_version
    store = open_store(str(tmp_path / "store"))
    first = tmp_path / "first"
    shutil.copytree(staged.root, first)
    assert publish(StagedDataset(first), store).version == 1

    fixed = tmp_path / "fixed"
    shutil.copytree(staged.root, fixed)
    meta = fixed / "_meta"
    exp = json.loads((meta / "experiment.json").read_text())
    (meta / "experiment.json").write_text(json.dumps({**exp, "license": "CC-BY-4.0"}))
    run = json.loads((meta / "run.json").read_text())
    for i in run["inputs"]:  # the edited experiment.yaml: another size and sha256
        if i["name"] == "experiment.yaml":
            i.update(size=i["size"] + 1, sha256="f" * 64)
    (meta / "run.json").write_text(json.dumps(run))
    assert publish(StagedDataset(fixed), store).version == 2

    (row,) = usage_report(version_usage(store))
    assert row["versions"] == 2 and row["instrument_runs"] == 1
