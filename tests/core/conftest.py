"""Fixtures of the core tests: a real Prefect server on loopback (one per session), and one
cryo-EM demo run, staged with the local profile and published into a local store, shared by the
provenance and usage tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.modalities.cryoem import make_demo_run
from pipelines.monitoring import api_problem, free_port


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while api_problem(url, timeout_s=1) is not None:
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="session")
def cryoem_version(tmp_path_factory):
    """(version folder, manifest, staged dataset, run folder) of the published cryo-EM demo."""
    from pipelines.runner import prepare, publish_stage, stage

    base = tmp_path_factory.mktemp("cryoem-published")
    run_dir = make_demo_run(base / "run", seed=0)
    exp, staged = prepare(run_dir, work_dir=base / "work")
    stage(run_dir, staged, modality="cryoem", profile="local", cores=2)
    result = publish_stage(staged.root, str(base / "store"))
    assert result.created
    version_dir = Path(base / "store" / result.prefix / f"v{result.version}")
    manifest = json.loads((version_dir / "manifest.json").read_text())
    return version_dir, manifest, staged, run_dir
