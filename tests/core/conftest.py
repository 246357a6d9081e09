"""Fixtures of the core tests: one cryo-EM demo run, staged with the local profile and published
into a local store, shared by the provenance and usage tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.modalities.cryoem import make_demo_run


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
