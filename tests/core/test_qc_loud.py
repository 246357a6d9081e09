"""A failed QC is loud where staff look (issue #25): ``binds run``'s last lines, its exit code
with ``--fail-on-qc``, and the Prefect flow run (a Completed state named "QC failed", the tag
``qc:fail``, the failing check in the qc artifact)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipelines.modalities.cryoem import make_demo_run
from pipelines.orchestrate.monitoring import artifact_key

pytestmark = pytest.mark.slow
BINDS = str(Path(sys.executable).parent / "binds")


def _binds_run(run_dir: Path, store: Path, api_url: str, *extra: str):
    env = dict(os.environ, PREFECT_API_URL=api_url)
    return subprocess.run(
        [BINDS, "run", str(run_dir), "--store", str(store), "--cores", "2", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _flow_run(api_url: str, name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def read():
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(name={"any_": [name]}))
            arts = await client.read_artifacts()
            return runs, arts

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return asyncio.run(read())


def _own_demo_run(path, seed: int, request_id: str):
    """A cryo-EM demo run under a request id of its own: its flow runs (named by dataset id)
    are told apart from those of other tests sharing the session's Prefect server."""
    run = make_demo_run(path, seed=seed)
    exp = run / "experiment.yaml"
    text = exp.read_text()
    exp.write_text(
        text.replace(f"request_id: BINDS-DEMO-CRYOEM-{seed:04d}", f"request_id: {request_id}")
    )
    assert request_id in exp.read_text()
    return run


def test_a_failed_qc_is_reported_exits_3_and_marks_the_flow_run(prefect_server, tmp_path):
    run = _own_demo_run(tmp_path / "krios", 0, "BINDS-2026-7301")
    exp = run / "experiment.yaml"
    # the demo map reaches ~4.3 A: expecting 2 A makes the resolution check fail
    exp.write_text(exp.read_text().replace("expected_resolution: 4.5", "expected_resolution: 2.0"))
    done = _binds_run(run, tmp_path / "store", prefect_server, "--fail-on-qc")
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("published: ")
    assert "QC FAIL: 1 of 2 checks failed (resolution)" in lines
    (failed,) = [ln for ln in lines if ln.startswith("  FAIL resolution: ")]
    assert " Å (needs <= 2 Å): the gold-standard FSC 0.143 resolution" in failed
    assert any(ln.strip().startswith("what to do: ") for ln in lines)

    dataset_id = json.loads(
        next((tmp_path / "store").glob("open/cryoem/*/v1/manifest.json")).read_text()
    )["dataset_id"]
    runs, arts = _flow_run(prefect_server, dataset_id)
    (fr,) = runs
    assert fr.state.is_completed() and fr.state.name == "QC failed", fr.state
    assert "qc:fail" in fr.tags
    qc = [a for a in arts if a.key == artifact_key("qc", dataset_id)]
    assert qc and "resolution" in json.dumps(qc[0].data) and "FAIL" in json.dumps(qc[0].data)
    (report,) = [a for a in arts if a.key == artifact_key("report", dataset_id)]
    assert report.type == "markdown" and "QC FAIL: 1 of 2 checks failed" in str(report.data)


def test_a_passing_run_exits_0_with_fail_on_qc_and_a_plain_completed_state(
    prefect_server, tmp_path
):
    run = _own_demo_run(tmp_path / "krios", 1, "BINDS-2026-7302")
    done = _binds_run(run, tmp_path / "store", prefect_server, "--fail-on-qc")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "QC PASS: 2 of 2 checks passed" in done.stdout
    dataset_id = json.loads(
        next((tmp_path / "store").glob("open/cryoem/*/v1/manifest.json")).read_text()
    )["dataset_id"]
    runs, _ = _flow_run(prefect_server, dataset_id)
    assert [r.state.name for r in runs] == ["Completed"] and "qc:fail" not in runs[0].tags


def test_a_folder_the_inbox_rejects_is_a_failed_flow_run(prefect_server, tmp_path, monkeypatch):
    """Before: bad input was recorded only in the inbox's state file, never seen in Prefect."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.errors import InputError
    from pipelines.orchestrate.inbox import flow_runner

    # a name no other test's inbox uses: they share the session's Prefect server (test_inbox's
    # "broken-run" folders are rejected there too)
    broken = tmp_path / "inbox" / f"broken-{uuid.uuid4().hex[:8]}"
    broken.mkdir(parents=True)
    (broken / "experiment.yaml").write_text("schema_version: 1\ntitle: x\n")
    run_one = flow_runner(store_url=str(tmp_path / "store"), profile="local", cores=1)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        with pytest.raises(InputError):
            run_one(broken)
    runs, _ = _flow_run(prefect_server, broken.name)
    (fr,) = runs
    assert fr.state.is_failed() and "inbox:rejected" in fr.tags
    assert "request_id" in fr.state.message  # the problems, as validate lists them
