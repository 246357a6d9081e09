"""Prefect tells the truth at once (issue 25): the flow run of ``binds run`` is in the Prefect
server within 2 s of the command's start, once (the engine adopts the run created early, no
duplicate), with the process's start time, and its task runs carry Snakemake's job times.

A real ``binds run`` process of a tiny cryo-EM run (one 20^3 map, 33 kB) against the session's
``prefect server start``; the test reads the API with plain HTTP, as often as it can.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import mrcfile
import numpy as np
from binds_testing import minimal_yaml

from pipelines.orchestrate.service_guard import flow_run_name
from pipelines.store.identifiers import default_dataset_id

BINDS = [sys.executable, "-m", "pipelines.cli"]


def tiny_cryoem_run(run_dir: Path, request_id: str) -> Path:
    """A cryo-EM run folder with one 20^3 float32 map (33 kB) and a minimal experiment.yaml."""
    run_dir.mkdir(parents=True)
    data = np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32)
    with mrcfile.new(run_dir / "map.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 1.0
    (run_dir / "experiment.yaml").write_text(
        minimal_yaml(
            "cryoem",
            title="Cryo-EM timing run",
            manufacturer="Thermo Fisher",
            model="Titan Krios G4",
            request_id=request_id,
        )
    )
    return run_dir


def _api(api_url: str, path: str, body: dict | None = None) -> object:
    req = urllib.request.Request(
        api_url.rstrip("/") + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def _flow_runs(api_url: str, name: str) -> list[dict]:
    return _api(api_url, "/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})  # type: ignore[return-value]


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_the_flow_run_appears_within_2_s_once_with_the_real_times(prefect_api, tmp_path):
    request_id = f"BINDS-T25-{uuid.uuid4().hex[:8]}"  # the session's server is shared
    run_dir = tiny_cryoem_run(tmp_path / "run", request_id)
    name = flow_run_name(
        {"access": {"level": "consortium"}}, default_dataset_id(request_id, "cryoem")
    )
    work, store = tmp_path / "work", tmp_path / "store"
    cmd = [*BINDS, "run", str(run_dir), "--store", str(store), "--work-dir", str(work)]
    trace = tmp_path / "trace"
    env = dict(os.environ, PREFECT_API_URL=prefect_api, BINDS_TRACE=str(trace))

    started = time.time()
    proc = subprocess.Popen(
        [*cmd, "--cores", "2", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    appeared = None
    while proc.poll() is None:
        if _flow_runs(prefect_api, name):
            appeared = time.time() - started
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert appeared is not None, "the flow run never appeared while binds ran"

    # the engine adopted the run created early: one flow run, Completed, started at once
    deadline = time.monotonic() + 30
    while True:
        runs = _flow_runs(prefect_api, name)
        tasks = _api(
            prefect_api,
            "/task_runs/filter",
            {"flow_runs": {"id": {"any_": [r["id"] for r in runs]}}},
        )
        final = [t for t in tasks if t["state_type"] in ("COMPLETED", "FAILED")]  # type: ignore[union-attr]
        if runs and runs[0]["state_type"] == "COMPLETED" and len(final) == len(tasks) >= 3:  # type: ignore[arg-type]
            break
        assert time.monotonic() < deadline, (runs, tasks)
        time.sleep(0.5)
    assert len(runs) == 1, [(r["id"], r["state_type"], r["start_time"]) for r in runs]
    run = runs[0]
    assert run["run_count"] == 1
    # created Running: its start is when it appeared, not when Prefect's engine took it over
    steps = {
        step: round(float(t) - started, 2)
        for t, step in (line.split(" ", 1) for line in trace.read_text().splitlines())
    }
    start = _ts(run["start_time"]) - started
    assert 0 <= start <= appeared + 0.05, (start, appeared)
    assert start < steps["prefect imported, API ready"], (start, steps)
    assert _ts(run["end_time"]) <= time.time()
    assert run["parameters"]["run_dir"] == str(run_dir.resolve())
    assert {"modality:cryoem", "access:consortium"} <= set(run["tags"])

    events = [
        json.loads(line)
        for line in (work / "stage" / "_meta" / "snakemake-events.jsonl").read_text().splitlines()
    ]
    starts = {e["jobid"]: e for e in events if e["event"] == "job_info"}
    ends = {e["jobid"]: e["t"] for e in events if e["event"] == "job_finished"}
    by_key = {t["dynamic_key"]: t for t in tasks}  # type: ignore[union-attr]
    assert starts and {"validate", "publish"} <= {t["name"] for t in tasks}  # type: ignore[union-attr]
    for jobid, info in starts.items():
        task = by_key[f"{jobid}.1"]
        assert abs(_ts(task["start_time"]) - info["t"]) < 0.01, task["name"]
        assert abs(_ts(task["end_time"]) - ends[jobid]) < 0.01, task["name"]
    assert json.loads(out)["published"] is True
    # binds' own part, from its CLI loaded: validation and the REST calls (here 0.6-0.9 s)
    assert appeared - steps["cli: run"] <= 1.0, (appeared, steps)
    # the goal, from the command's start: Python and the CLI's imports take 0.4-0.6 s on an
    # idle machine, 1.2 s at a load of 9 on 2 cores (the flow run then appeared after 2.09 s)
    if os.getloadavg()[0] < (os.cpu_count() or 1) * 2:
        assert appeared <= 2.0, f"the flow run appeared {appeared:.2f} s after the start: {steps}"


def test_a_ctrl_c_before_the_engine_took_the_run_over_ends_it_crashed(prefect_api, tmp_path):
    """Ctrl-C once the flow run exists and before Prefect is imported: the usual one line and
    exit 130, and the flow run ends Crashed (as the engine ends an interrupted run) instead of
    staying Running."""
    import signal

    request_id = f"BINDS-T25-{uuid.uuid4().hex[:8]}"
    run_dir = tiny_cryoem_run(tmp_path / "run", request_id)
    name = flow_run_name(
        {"access": {"level": "consortium"}}, default_dataset_id(request_id, "cryoem")
    )
    trace = tmp_path / "trace"
    proc = subprocess.Popen(
        [*BINDS, "run", str(run_dir), "--no-publish", "--work-dir", str(tmp_path / "work")],
        env=dict(os.environ, PREFECT_API_URL=prefect_api, BINDS_TRACE=str(trace)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (trace.exists() and "flow run created" in trace.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the flow run was not created"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert "prefect imported, API ready" not in trace.read_text(), "the signal came too late"
    assert proc.returncode == 130, err
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "interrupted: nothing was committed that is not complete; run the same command to resume"
    ]
    runs = _flow_runs(prefect_api, name)
    assert [(r["state_type"], r["state"]["message"]) for r in runs] == [
        ("CRASHED", "Execution was aborted by an interrupt signal.")
    ]
    assert runs[0]["end_time"] is not None


class _FakeApi:
    """A Prefect API on loopback that records the requests and answers ``status`` (200: a flow,
    then a flow run)."""

    def __init__(self, status: int) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str, dict, dict]] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append(("POST", self.path, dict(self.headers), body))
                answer = json.dumps({"id": str(uuid.uuid4()), **body}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _open(api_url: str, monkeypatch, warnings: list[str]):
    from pipelines.orchestrate.monitoring import PrefectSession

    monkeypatch.setenv("PREFECT_API_URL", api_url)
    with PrefectSession(warn=warnings.append) as session:
        return session.open_flow_run(
            name="ds-1234", parameters={"run_dir": "/runs/x"}, tags=["modality:cryoem"]
        )


def test_the_early_flow_run_is_two_rest_calls_with_the_clients_credentials(monkeypatch):
    api = _FakeApi(200)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "binds:secret")
    try:
        warnings: list[str] = []
        run = _open(api.url, monkeypatch, warnings)
    finally:
        api.close()
    assert run is not None and warnings == []
    (m1, flows, h1, b1), (m2, runs, h2, b2) = api.requests
    assert (m1, flows, b1) == ("POST", "/api/flows/", {"name": "binds-run"})
    assert (m2, runs) == ("POST", "/api/flow_runs/")
    assert b2["name"] == "ds-1234" and b2["flow_id"] and b2["tags"] == ["modality:cryoem"]
    assert b2["state"]["type"] == "RUNNING" and b2["parameters"] == {"run_dir": "/runs/x"}
    assert h1["Authorization"] == h2["Authorization"] == "Basic YmluZHM6c2VjcmV0"


def test_an_api_that_refuses_or_does_not_answer_leaves_the_flow_run_to_the_engine(
    monkeypatch, caplog
):
    from pipelines.orchestrate.monitoring import free_port

    api = _FakeApi(500)
    try:
        warnings: list[str] = []
        assert _open(api.url, monkeypatch, warnings) is None  # refused: a logged warning
    finally:
        api.close()
    assert warnings == [] and "the flow run was not created early" in caplog.text
    caplog.clear()
    dead = f"http://127.0.0.1:{free_port()}/api"
    t0 = time.monotonic()
    assert _open(dead, monkeypatch, warnings) is None  # nothing answers: the session decides
    assert time.monotonic() - t0 < 1.5 and warnings == [] and caplog.text == ""
