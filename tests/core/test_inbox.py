"""`binds watch`: run folders dropped into an inbox are processed once, when complete."""

from __future__ import annotations

import json
import os
import time

from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.inbox import STATE_FILE, pending, process_inbox
from pipelines.modalities import get as get_modality


def test_folder_is_taken_when_settled_and_again_only_when_changed(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "run1").mkdir(parents=True)
    (inbox / "run1" / "plate1.csv").write_text("1,2,3\n")
    (inbox / "no-metadata-yet").mkdir()
    assert pending(inbox, settle_s=0) == []  # no experiment.yaml yet
    (inbox / "run1" / "experiment.yaml").write_text("schema_version: 1\n")
    assert pending(inbox, settle_s=3600) == []  # files just changed: still copying
    seen = []
    records = process_inbox(inbox, run=lambda d: seen.append(d.name) or {"created": True}, settle_s=0)
    assert seen == ["run1"] and records[0]["status"] == "published"
    assert process_inbox(inbox, run=lambda d: seen.append(d.name) or {}, settle_s=0) == []  # unchanged: skipped
    time.sleep(0.01)
    (inbox / "run1" / "plate2.csv").write_text("4\n")
    os.utime(inbox / "run1" / "plate2.csv", (time.time() - 100, time.time() - 100))
    assert [r["run_dir"] for r in process_inbox(inbox, run=lambda d: {"created": False}, settle_s=0)] == ["run1"]
    state = json.loads((inbox / STATE_FILE).read_text())
    assert state["run1"]["status"] == "unchanged"


def test_watch_once_processes_good_folders_and_reports_bad_ones(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    get_modality("screening").make_demo_run(inbox / "screen-run")
    (inbox / "broken-run").mkdir()
    (inbox / "broken-run" / "experiment.yaml").write_text("schema_version: 1\ntitle: x\n")
    monkeypatch.chdir(tmp_path)  # work folders (.binds-work) go here
    out = CliRunner().invoke(app, ["watch", str(inbox), "--once", "--settle", "0", "--cores", "2",
                                   "--store", str(tmp_path / "store")], catch_exceptions=False)
    assert out.exit_code == 1  # one folder failed
    assert "screen-run: published" in out.stdout
    assert "broken-run: failed" in out.stdout and "request_id: required field is missing" in out.stdout
    state = json.loads((inbox / STATE_FILE).read_text())
    assert state["screen-run"]["status"] == "published" and state["broken-run"]["exit_code"] == 2
    assert not list((inbox / "screen-run").glob(".binds*"))  # run folders are never written
    assert (tmp_path / "store" / "open" / "catalog").is_dir()
