"""A locked-down unit service (issue #23, symptom 3): the Prefect server on loopback behind
Prefect's API authentication; a served deployment's flow run only processes a folder of its
inbox, into the service's store, with the service's work folders and profile."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipelines.errors import RunError
from pipelines.modalities import get as get_modality
from pipelines.orchestrate.monitoring import free_port
from pipelines.orchestrate.service_guard import (
    INBOX_ENV,
    check_flow_parameters,
    fix_service,
    flow_run_name,
)

AUTH = "binds:correct-horse-battery"


def test_parameters_outside_the_service_are_refused(tmp_path, monkeypatch, caplog):
    inbox = tmp_path / "inbox"
    (inbox / "run-1").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (inbox / "escape").symlink_to(tmp_path / "elsewhere")
    monkeypatch.delenv(INBOX_ENV, raising=False)
    fix_service(inbox, store_url="s3://unit/store", profile="slurm", cores=None)
    ok = dict(store_url=None, profile="slurm", cores=None, work_dir=None, publish=True)
    check_flow_parameters(str(inbox / "run-1"), **ok)  # the service's own submission
    check_flow_parameters(str(inbox / "run-1"), **(ok | {"store_url": "s3://unit/store"}))
    hostile = [
        (str(tmp_path / "elsewhere"), {}),
        (str(inbox / "escape"), {}),  # a link out of the inbox
        (str(inbox / "run-1" / ".." / ".."), {}),
        (str(inbox), {}),
        (str(inbox / "run-1"), {"store_url": "s3://attacker/x"}),
        (str(inbox / "run-1"), {"work_dir": "/tmp/x"}),
        (str(inbox / "run-1"), {"profile": "local"}),
        (str(inbox / "run-1"), {"cores": 64}),
        (str(inbox / "run-1"), {"publish": False}),
    ]
    for run_dir, change in hostile:
        with pytest.raises(RunError, match="refused"):
            check_flow_parameters(run_dir, **(ok | change))
    assert caplog.text.count("refused a flow run") == len(hostile)
    assert "attacker" not in caplog.text and "elsewhere" not in caplog.text  # no caller text


def test_consortium_and_restricted_runs_have_opaque_names():
    exp = {"access": {"level": "restricted"}}
    name = flow_run_name(exp, "binds-2026-0042-cryoem")
    assert name.startswith("ds-") and "0042" not in name
    assert flow_run_name({"access": {"level": "open"}}, "binds-2026-1-x") == "binds-2026-1-x"


@pytest.fixture
def authed_server(tmp_path):
    """``prefect server start`` on loopback with PREFECT_SERVER_API_AUTH_STRING."""
    home = tmp_path / "prefect-server"
    home.mkdir()
    port = free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_API_AUTH_STRING=AUTH,
    )
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code in (200, 401):
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(
                f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}"
            )
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _headers(auth: str | None) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}


def _wait(cond, *, timeout_s: float, what: str, proc=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the service exited: {proc.stdout.read()[-3000:]}")
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_hostile_create_flow_run_is_refused(authed_server, tmp_path):
    api = authed_server
    # nothing but the health check answers without the auth string
    assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).status_code == 401
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outside = get_modality("screening").make_demo_run(tmp_path / "outside-run")
    env = dict(
        os.environ,
        PREFECT_API_URL=api,
        PREFECT_API_AUTH_STRING=AUTH,
        BINDS_WORK_DIR=str(tmp_path / "work"),
    )
    service = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "serve",
            str(inbox),
            "--store",
            str(tmp_path / "store"),
            "--settle",
            "0",
            "--interval",
            "2",
            "--cores",
            "1",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:

        def deployment():
            r = httpx.post(f"{api}/deployments/filter", json={}, headers=_headers(AUTH), timeout=5)
            return r.json()[0]["id"] if r.status_code == 200 and r.json() else None

        dep = _wait(deployment, timeout_s=240, what="the served deployment", proc=service)
        hostile = {
            "parameters": {
                "run_dir": str(outside),
                "store_url": str(tmp_path / "attacker-store"),
                "work_dir": str(tmp_path / "attacker-work"),
            }
        }
        # 1. without the auth string: refused by the server
        r = httpx.post(f"{api}/deployments/{dep}/create_flow_run", json=hostile, timeout=10)
        assert r.status_code == 401
        # 2. with it: created, but the flow run refuses its parameters and processes nothing
        r = httpx.post(
            f"{api}/deployments/{dep}/create_flow_run",
            json=hostile,
            headers=_headers(AUTH),
            timeout=10,
        )
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]

        def final_state():
            fr = httpx.get(f"{api}/flow_runs/{run_id}", headers=_headers(AUTH), timeout=5).json()
            state = fr.get("state") or {}
            return fr if state.get("type") in ("FAILED", "COMPLETED", "CRASHED") else None

        fr = _wait(final_state, timeout_s=300, what="the hostile flow run", proc=service)
        assert fr["state"]["type"] == "FAILED"
        assert "refused" in (fr["state"]["message"] or "")
        assert fr["name"] in ("refused", "run")  # nothing read from the stranger's folder
        assert not (tmp_path / "attacker-store").exists()
        assert not (tmp_path / "attacker-work").exists()
        assert not (tmp_path / "store").exists()
        assert not list((tmp_path / "outside-run").glob(".binds*"))
        assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        try:
            service.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)


def test_the_documented_units_bind_loopback_with_auth():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "--host 0.0.0.0" not in readme
    assert "PREFECT_SERVER_API_AUTH_STRING" in readme and "PREFECT_API_AUTH_STRING" in readme
