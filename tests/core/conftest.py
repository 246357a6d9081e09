"""Published versions for the access tests (metadata.jsonld, catalog, reader API, DCAT-AP).

``demo_store``: ``binds demo`` for every modality (synthetic runs through the real Snakemake
workflows and Prefect flow, published into a local store), one run per test session.
``real_store``: one real instrument dataset per modality from ../shared/data, through the real
workflows, published into its own store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from binds_testing import link_files, minimal_yaml

from tests.conftest import shared_data

BINDS = str(Path(sys.executable).parent / "binds")


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("demo")
    store = tmp / "store"
    out = subprocess.run([BINDS, "demo", "--store", str(store), "--runs-dir", str(tmp / "runs")],
                         capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return store


REAL_RUNS = {
    "cryoem": (["emd_5168.map"], ""),
    "metabolomics": (["example.mzML"], ""),
    "transcriptomics": (["bulk_pasilla/pasilla_gene_counts.tsv", "bulk_pasilla/pasilla_sample_annotation.csv"],
                        "transcriptomics: {bulk: {match: strip_suffix, suffix: fb}}\n"),
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
            minimal_yaml(modality, title=f"Real {modality} data", request_id=f"BINDS-2026-{len(modality):04d}")
            + block)
        out = subprocess.run([BINDS, "run", str(run_dir), "--store", str(tmp / "store"), "--cores", "2",
                              "--work-dir", str(tmp / modality / "work")],
                             capture_output=True, text=True, env=os.environ.copy(), timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return tmp / "store"


@pytest.fixture
def keep_logging():
    """Remove the logging handlers a test's libraries install (absl via mlcroissant, pyshacl):
    they hold the stream of the moment, which later CliRunner / Prefect runs find closed."""
    import logging

    def snapshot():
        loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                           if isinstance(lg, logging.Logger)]
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
