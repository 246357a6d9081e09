"""Fixtures of the cryo-EM tests: small synthetic maps written by the tests and the demo run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cryoem_helpers import minimal_yaml, write_mrc

from pipelines.modalities.cryoem import make_demo_run


@pytest.fixture
def run_folder(tmp_path) -> Callable[..., Path]:
    """``run_folder({name: path_or_array}, block_yaml)``: a run folder with experiment.yaml.

    Real files are symlinked (read in place, never copied); arrays are written as MRC.
    """

    def make(files: dict[str, Path | np.ndarray], block: str = "", name: str = "run") -> Path:
        run = tmp_path / name
        run.mkdir()
        for rel, src in files.items():
            dest = run / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, np.ndarray):
                write_mrc(dest, src)
            else:
                dest.symlink_to(src)
        (run / "experiment.yaml").write_text(minimal_yaml(block))
        return run

    return make


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    return make_demo_run(tmp_path_factory.mktemp("cryoem-demo") / "run", seed=0)
