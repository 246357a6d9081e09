"""A small published store (four synthetic versions through the real publish path), a token
issuer, and ``binds serve-data`` running on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from drs_testing import (
    AUD,
    CONSORTIUM,
    DATASET_PREFIX,
    DATASETS,
    ISS,
    ISS_ES,
    build_stage,
    serving,
)

from pipelines.dataservice.issuer import LocalIssuer
from pipelines.run.publishing import publish
from pipelines.store import open_store


@pytest.fixture(scope="session")
def data_store(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("drs-store")
    store = open_store(base / "store")
    for i, (name, (dataset_id, access)) in enumerate(DATASETS.items(), 1):
        publish(build_stage(base / name, dataset_id, access, seed=i), store)
    return base / "store"


@pytest.fixture(scope="session")
def issuers():
    """(listed RS256 issuer, listed ES256 issuer, unlisted issuer)."""
    return (
        LocalIssuer.create(ISS),
        LocalIssuer.create(ISS_ES, alg="ES256"),
        LocalIssuer.create(ISS),  # same name, other key: a forger
    )


@pytest.fixture(scope="session")
def auth_file(tmp_path_factory, issuers) -> Path:
    folder = tmp_path_factory.mktemp("drs-auth")
    issuers[0].write_jwks(folder / "keys" / "login.jwks.json")
    issuers[1].write_jwks(folder / "keys" / "passports.jwks.json")
    (folder / "auth.yaml").write_text(
        yaml.safe_dump(
            {
                "issuers": [
                    {"iss": ISS, "jwks": "keys/login.jwks.json"},
                    {"iss": ISS_ES, "jwks": "keys/passports.jwks.json"},
                ],
                "audience": AUD,
                "consortium_visa": CONSORTIUM,
                "dataset_visa_prefix": DATASET_PREFIX,
                "link_seconds": 2,
                "audit": "audit",
            }
        )
    )
    return folder / "auth.yaml"


@pytest.fixture(scope="session")
def service(data_store, auth_file, tmp_path_factory) -> str:
    with serving(str(data_store), auth_file, tmp_path_factory.mktemp("drs-log")) as url:
        yield url
