"""Fixtures of the core tests.

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
from pathlib import Path

import pytest
from binds_testing import link_files, minimal_yaml

from pipelines.modalities.cryoem import make_demo_run
from tests.conftest import run_binds, shared_data


@pytest.fixture(scope="session")
def cryoem_version(tmp_path_factory, snakemake):
    """(version folder, manifest, staged dataset, run folder) of the published cryo-EM demo."""
    from pipelines.run.runner import prepare, publish_stage, stage

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
def demo_store(tmp_path_factory, prefect_server, snakemake) -> Path:
    """Shared by every test that reads it: a test that changes a store copies it first."""
    tmp = tmp_path_factory.mktemp("demo")
    store = tmp / "store"
    out = run_binds(
        "demo",
        "--store",
        store,
        "--runs-dir",
        tmp / "runs",
        env=dict(os.environ, PREFECT_API_URL=prefect_server),
        timeout=1700,
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
def real_store(tmp_path_factory, prefect_server, snakemake) -> Path:
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
        out = run_binds(
            "run",
            run_dir,
            "--store",
            tmp / "store",
            "--cores",
            "2",
            "--work-dir",
            tmp / modality / "work",
            env=dict(os.environ, PREFECT_API_URL=prefect_server),
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
