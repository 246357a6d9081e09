"""`binds watch`: run folders dropped into an inbox are processed once, when complete."""

from __future__ import annotations

import json
import os
import re
import time

from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.modalities import get as get_modality
from pipelines.orchestrate.inbox import STATE_FILE, pending, process_inbox


def test_folder_is_taken_when_settled_and_again_only_when_changed(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "run1").mkdir(parents=True)
    (inbox / "run1" / "plate1.csv").write_text("1,2,3\n")
    (inbox / "no-metadata-yet").mkdir()
    assert pending(inbox, settle_s=0) == []  # no experiment.yaml yet
    (inbox / "run1" / "experiment.yaml").write_text("schema_version: 1\n")
    assert pending(inbox, settle_s=3600) == []  # files just changed: still copying
    seen = []
    records = process_inbox(
        inbox, run=lambda d: seen.append(d.name) or {"created": True}, settle_s=0
    )
    assert seen == ["run1"] and records[0]["status"] == "published"
    assert (
        process_inbox(inbox, run=lambda d: seen.append(d.name) or {}, settle_s=0) == []
    )  # unchanged: skipped
    time.sleep(0.01)
    (inbox / "run1" / "plate2.csv").write_text("4\n")
    os.utime(inbox / "run1" / "plate2.csv", (time.time() - 100, time.time() - 100))
    assert [
        r["run_dir"] for r in process_inbox(inbox, run=lambda d: {"created": False}, settle_s=0)
    ] == ["run1"]
    state = json.loads((inbox / STATE_FILE).read_text())
    assert state["run1"]["status"] == "unchanged"


def test_watch_once_processes_good_folders_and_reports_bad_ones(tmp_path, monkeypatch, binds_cli):
    inbox = tmp_path / "inbox"
    get_modality("screening").make_demo_run(inbox / "screen-run")
    (inbox / "broken-run").mkdir()
    (inbox / "broken-run" / "experiment.yaml").write_text("schema_version: 1\ntitle: x\n")
    monkeypatch.chdir(tmp_path)  # work folders (.binds-work) go here
    out = CliRunner().invoke(
        app,
        [
            "watch",
            str(inbox),
            "--once",
            "--settle",
            "0",
            "--cores",
            "2",
            "--store",
            str(tmp_path / "store"),
        ],
        catch_exceptions=False,
    )
    assert out.exit_code == 1  # one folder failed
    assert "screen-run: published" in out.stdout
    assert (
        "broken-run: invalid" in out.stdout
        and "request_id: required field is missing" in out.stdout
    )
    state = json.loads((inbox / STATE_FILE).read_text())
    assert state["screen-run"]["status"] == "published" and state["broken-run"]["exit_code"] == 2
    assert not list((inbox / "screen-run").glob(".binds*"))  # run folders are never written
    assert (tmp_path / "store" / "open" / "catalog").is_dir()


def test_every_skip_is_reported_once_with_its_reason(tmp_path):
    from pipelines.orchestrate.inbox import SkipReporter, scan

    inbox = tmp_path / "inbox"
    (inbox / "copying").mkdir(parents=True)
    (inbox / "copying" / "experiment.yaml").write_text("schema_version: 1\n")
    (inbox / "no-yaml").mkdir()
    (inbox / "no-yaml" / "a.csv").write_text("1\n")
    entries = {e.run_dir.name: e for e in scan(inbox, settle_s=60)}
    assert not entries["copying"].ready and entries["copying"].reason.startswith("settling for ")
    assert int(entries["copying"].reason.split()[2]) in range(55, 61)
    assert entries["no-yaml"].reason.startswith("no experiment.yaml yet")
    said: list[str] = []
    report = SkipReporter(said.append)
    for _ in range(3):  # a long-running watch scans again and again: one line per reason
        for e in scan(inbox, settle_s=60):
            report(e)
    assert sorted(said) == [
        f"copying: skipped: {entries['copying'].reason}",
        f"no-yaml: skipped: {entries['no-yaml'].reason}",
    ]


def test_a_crash_that_is_not_bad_input_is_recorded_and_the_others_still_run(tmp_path):
    inbox = tmp_path / "inbox"
    for name in ("a-crashes", "b-fine"):
        (inbox / name).mkdir(parents=True)
        (inbox / name / "experiment.yaml").write_text("schema_version: 1\n")

    def run(run_dir):
        if run_dir.name == "a-crashes":
            raise OSError("disk full")
        return {"created": True}

    said: list[str] = []
    records = {
        r["run_dir"]: r for r in process_inbox(inbox, run=run, settle_s=0, on_event=said.append)
    }
    assert (
        records["a-crashes"]["status"] == "failed"
        and records["a-crashes"]["error"] == "OSError: disk full"
    )
    assert records["b-fine"]["status"] == "published"
    assert "a-crashes: failed: OSError: disk full" in said
    again: list[str] = []
    assert process_inbox(inbox, run=run, settle_s=0, on_event=again.append) == []
    assert any(
        line.startswith("a-crashes: skipped: failed at ") and "when its files change" in line
        for line in again
    )


def test_a_long_running_watch_takes_each_folder_once_and_says_each_skip_once(tmp_path):
    """The loop of `binds watch` without --once: scan, sleep, scan ... (stopped here after three
    scans, the way Ctrl-C stops it), then a failed folder makes the command fail."""
    import pytest

    from pipelines.errors import RunError
    from pipelines.orchestrate.inbox import watch

    inbox = tmp_path / "inbox"
    for name in ("good", "bad"):
        (inbox / name).mkdir(parents=True)
        (inbox / name / "experiment.yaml").write_text("schema_version: 1\n")
    (inbox / "no-yaml").mkdir()
    runs: list[str] = []
    said: list[str] = []
    naps: list[float] = []

    def run(run_dir):
        runs.append(run_dir.name)
        if run_dir.name == "bad":
            raise OSError("disk full")
        return {"created": True}

    def sleep(seconds):
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        watch(
            inbox, run=run, settle_s=0, interval_s=7, once=False, on_event=said.append, sleep=sleep
        )
    assert sorted(runs) == ["bad", "good"] and naps == [7, 7, 7]
    assert sum(line.startswith("no-yaml: skipped") for line in said) == 1
    # what was just said ("good: published") is not said again as a skip at the next scans
    assert said.count("good: published") == 1 and not any(x.startswith("good: sk") for x in said)
    (inbox / "bad" / "fixed.txt").write_text("1\n")
    os.utime(inbox / "bad" / "fixed.txt", (time.time() - 100, time.time() - 100))
    with pytest.raises(RunError, match="1 run folder"):
        watch(inbox, run=run, settle_s=0, interval_s=7, once=True, sleep=sleep)
    assert runs.count("bad") == 2 and runs.count("good") == 1


def _wait_for(predicate, *, timeout_s: float, what: str, proc=None):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"binds serve exited early while waiting for {what}: {proc.stdout.read()}"
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_serve_runs_each_folder_once_across_a_restart_mid_run(prefect_server, tmp_path):
    """binds serve against a real server: a bad folder is recorded with its reason, a good one
    becomes one flow run; the service is stopped (SIGTERM, as systemd does) while the rule
    runs and started again: the folder is published exactly once, nothing is deleted."""
    import signal
    import subprocess
    import sys

    inbox = tmp_path / "inbox"
    get_modality("screening").make_demo_run(inbox / "screen-run")
    (inbox / "broken-run").mkdir()
    (inbox / "broken-run" / "experiment.yaml").write_text("schema_version: 1\ntitle: x\n")
    store = tmp_path / "store"
    env = dict(os.environ, PREFECT_API_URL=prefect_server, BINDS_WORK_DIR=str(tmp_path / "work"))
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "serve",
        str(inbox),
        "--store",
        str(store),
        "--settle",
        "0",
        "--interval",
        "1",
        "--cores",
        "2",
        "--limit",
        "1",
    ]
    state_file = inbox / STATE_FILE

    def state() -> dict:
        try:
            return json.loads(state_file.read_text())
        except (OSError, ValueError):
            return {}

    first = subprocess.Popen(
        cmd,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    work = tmp_path / "work"
    _wait_for(
        lambda: any(
            '"job_info"' in p.read_text() for p in work.glob("*/stage/_meta/snakemake-events.jsonl")
        ),
        timeout_s=300,
        what="a Snakemake job of the first service",
        proc=first,
    )
    os.killpg(first.pid, signal.SIGTERM)
    out1, _ = first.communicate(timeout=120)
    assert state()["screen-run"]["status"] == "submitted"
    first_flow_run = state()["screen-run"]["flow_run_id"]
    assert (
        state()["broken-run"]["status"] == "invalid"
        and "request_id" in state()["broken-run"]["error"]
    )
    assert "broken-run: invalid: " in out1

    second = subprocess.Popen(
        cmd,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(
            lambda: state().get("screen-run", {}).get("status") == "published",
            timeout_s=300,
            what="the resumed run to publish",
            proc=second,
        )
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        out2, _ = second.communicate(timeout=120)
    # Two ways a stopped run comes back, depending on where the SIGTERM caught Prefect: its
    # flow run ended cancelled / crashed and the service submits the folder again (attempt 2),
    # or the flow run was left to be run (not final) and the new service's runner runs that
    # same flow run (attempt 1).  Either way: one flow run at a time, one version.
    resubmitted = re.search(
        r"screen-run: flow run (cancelled|crashed|lost) \(service stopped mid-run\?\); resuming",
        out2,
    )
    if resubmitted:
        assert state()["screen-run"]["attempt"] == 2
    else:
        assert state()["screen-run"]["attempt"] == 1, out2
        assert state()["screen-run"]["flow_run_id"] == first_flow_run, out2
    assert "broken-run: skipped: invalid at " in out2  # reported, not retried, not deleted
    assert (inbox / "broken-run" / "experiment.yaml").is_file()
    versions = list(store.glob("*/screening/*/v*"))
    assert [v.name for v in versions] == ["v1"]
