"""Shared fixtures.

Real instrument files are read in place from ``../shared/data/<modality>/`` (never copied into
the repository).  When they are missing the tests that need them fail under CI (``CI`` set)
and skip with the reason on a user's machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BINDS_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data(modality: str) -> Path:
    """Folder of real files for ``modality``; fail loudly in CI when it is missing."""
    path = SHARED_DATA / modality
    if not path.is_dir():
        msg = f"real test data not found at {path} (set BINDS_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_prefect(tmp_path_factory):
    """Prefect state (its SQLite db, logs) under a temporary PREFECT_HOME, no telemetry."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    yield
