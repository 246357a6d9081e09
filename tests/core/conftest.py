"""Fixtures of the core tests.

``prefect_server``: a real Prefect server on loopback (one per session).
``cryoem_version``: one cryo-EM demo run, staged with the local profile and published into a
local store, shared by the provenance and usage tests.
``demo_store``: ``binds demo`` for every modality (synthetic runs through the real Snakemake
workflows and Prefect flow, published into a local store), one run per test session.
``real_store``: one real instrument dataset per modality from ../shared/data, through the real
workflows, published into its own store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from binds_testing import link_files, minimal_yaml

from pipelines.modalities.cryoem import make_demo_run
from pipelines.monitoring import api_problem, free_port
from tests.conftest import shared_data

BINDS = str(Path(sys.executable).parent / "binds")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
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
    while api_problem(url, timeout_s=1) is not None:
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


@pytest.fixture(scope="session")
def cryoem_version(tmp_path_factory):
    """(version folder, manifest, staged dataset, run folder) of the published cryo-EM demo."""
    from pipelines.runner import prepare, publish_stage, stage

    base = tmp_path_factory.mktemp("cryoem-published")
    run_dir = make_demo_run(base / "run", seed=0)
    _exp, staged = prepare(run_dir, work_dir=base / "work")
    stage(run_dir, staged, modality="cryoem", profile="local", cores=2)
    result = publish_stage(staged.root, str(base / "store"))
    assert result.created
    version_dir = Path(base / "store" / result.prefix / f"v{result.version}")
    manifest = json.loads((version_dir / "manifest.json").read_text())
    return version_dir, manifest, staged, run_dir


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("demo")
    store = tmp / "store"
    out = subprocess.run(
        [BINDS, "demo", "--store", str(store), "--runs-dir", str(tmp / "runs")],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return store


REAL_RUNS = {
    "cryoem": (["emd_5168.map"], ""),
    "metabolomics": (["example.mzML"], ""),
    "transcriptomics": (
        ["bulk_pasilla/pasilla_gene_counts.tsv", "bulk_pasilla/pasilla_sample_annotation.csv"],
        "transcriptomics: {bulk: {match: strip_suffix, suffix: fb}}\n",
    ),
    "screening": (["cellHTS2_KcViab/*"], "screening: {score: {sign: '-'}}\n"),
}


@pytest.fixture(scope="session")
def real_store(tmp_path_factory) -> Path:
    # `binds run` in a subprocess (Prefect + Snakemake): their logging set-up stays out of
    # this test session
    tmp = tmp_path_factory.mktemp("real")
    for modality, (names, block) in REAL_RUNS.items():
        data = shared_data(modality)
        files = sorted(p for n in names for p in data.glob(n))
        assert files, (modality, names)
        run_dir = tmp / modality / "run"
        link_files(run_dir, files)
        (run_dir / "experiment.yaml").write_text(
            minimal_yaml(
                modality,
                title=f"Real {modality} data",
                request_id=f"BINDS-2026-{len(modality):04d}",
            )
            + block
        )
        out = subprocess.run(
            [
                BINDS,
                "run",
                str(run_dir),
                "--store",
                str(tmp / "store"),
                "--cores",
                "2",
                "--work-dir",
                str(tmp / modality / "work"),
            ],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=900,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return tmp / "store"


@pytest.fixture
def keep_logging():
    """Remove the logging handlers a test's libraries install (absl via mlcroissant, pyshacl):
    they hold the stream of the moment, which later CliRunner / Prefect runs find closed."""
    import logging

    def snapshot():
        loggers = [logging.getLogger()] + [
            lg
            for lg in logging.Logger.manager.loggerDict.values()
            if isinstance(lg, logging.Logger)
        ]
        return {lg: list(lg.handlers) for lg in loggers}

    before = snapshot()
    yield
    for lg, handlers in snapshot().items():
        for h in handlers:
            if h not in before.get(lg, []):
                lg.removeHandler(h)


LAST_MODULES = ("test_dcat_export.py", "test_docs_snippets.py", "test_jsonld_versions.py")


def pytest_collection_modifyitems(session, config, items):
    """Run the metadata-validation modules last in the session: after them (mlcroissant,
    pyshacl, rdflib in process), a later in-process Prefect run via CliRunner was seen to die
    writing to a closed stream; every test passes in this order and alone."""
    last = [it for it in items if it.path.name in LAST_MODULES]
    if last:
        items[:] = [it for it in items if it.path.name not in LAST_MODULES] + last
