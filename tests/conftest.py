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
def _shared_data_is_an_allowed_root():
    """Tests link real files from ../shared/data into their run folders, as units link raw data
    from the instrument share: the operator's setting that allows it (see pipelines.toolkit.inputs)."""
    from pipelines.toolkit.inputs import ALLOWED_ROOTS_ENV

    os.environ[ALLOWED_ROOTS_ENV] = str(SHARED_DATA.resolve())
    yield


@pytest.fixture(autouse=True, scope="session")
def _isolated_prefect(tmp_path_factory):
    """Prefect state (its SQLite db, logs) under a temporary PREFECT_HOME, no telemetry."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ.setdefault("PREFECT_HOME", str(home))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # SQLite needs the folder
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    yield


# ----------------------------------------------------------------------------- S3 on loopback
@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint on loopback: moto's server mode on a free port."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "binds-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "binds-test-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch, request):
    """A fresh bucket; BINDS_S3_ENDPOINT_URL points at the loopback server. Returns its s3:// URL."""
    import re
    import uuid

    import boto3

    name = (
        re.sub(r"[^a-z0-9-]", "-", f"t-{request.node.name.lower()}")[:40].strip("-")
        + "-"
        + uuid.uuid4().hex[:8]
    )
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", s3_endpoint)
    return f"s3://{name}"
