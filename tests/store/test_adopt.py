"""A store published before the ledger existed: `binds adopt` records its intact versions once
and refuses to seal damaged ones (issue 21: every old version showed "not recorded")."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.run.publishing import publish
from pipelines.store import ledger as ledger_mod
from pipelines.store import open_store, registry
from pipelines.store.verify import verify
from tests.store.conftest import build_stage

cli = CliRunner()


def binds(*args):
    return cli.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _forget_the_ledger(store) -> None:
    """What a store written before the ledger looks like: no ledger, no registry, no rows."""
    for prefix in ("consortium/_ledger/", "_registry/", "consortium/catalog/"):
        for info in list(store.list_prefix(prefix)):
            store.delete(info.key)


@pytest.fixture(params=["local", "s3"])
def old_store(request, tmp_path):
    url = (
        str(tmp_path / "store")
        if request.param == "local"
        else request.getfixturevalue("s3_bucket") + "/old"
    )
    store = open_store(url)
    for seed in (1, 2, 3):  # three versions of one dataset
        publish(build_stage(tmp_path / f"a{seed}", seed=seed, n_chunks=4), store)
    publish(build_stage(tmp_path / "b", seed=9, n_chunks=4, dataset_id="other-set"), store)
    _forget_the_ledger(store)
    return url, store


def test_an_old_store_is_adopted_once_and_then_verifies(old_store):
    url, store = old_store
    before = verify(store)
    unrecorded = [p for p in before.problems if "not recorded" in p]
    assert len(unrecorded) == 4 and "binds adopt" in unrecorded[0]

    out = binds("adopt", "--reason", "store from before the ledger (ticket 901)", "--store", url)
    assert out.exit_code == 0, out.output
    assert "adopted 4 version(s)" in out.output and "registered 2 dataset(s)" in out.output
    report = verify(store)
    assert report.ok, report.problems
    entries = ledger_mod.read(store, "consortium")
    assert [(e.body["kind"], e.body["dataset_id"], e.body["version"]) for e in entries] == [
        ("adopt", "binds-2026-0042-screening", 1),
        ("adopt", "binds-2026-0042-screening", 2),
        ("adopt", "binds-2026-0042-screening", 3),
        ("adopt", "other-set", 1),
    ]
    assert {e.body["reason"] for e in entries} == {"store from before the ledger (ticket 901)"}
    binding = registry.lookup(store, "binds-2026-0042-screening")
    assert binding is not None and binding.owned_by("BINDS-2026-0042")

    again = binds("adopt", "--reason", "again", "--store", url, "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["adopted"] == []
    assert len(ledger_mod.read(store, "consortium")) == 4


def test_a_damaged_old_version_is_not_sealed_into_the_ledger(old_store):
    url, store = old_store
    key = next(
        i.key
        for i in store.list_prefix("consortium/screening/binds-2026-0042-screening/v2/data/")
        if i.key.endswith("wells.parquet")
    )
    body = bytearray(store.get(key))
    body[len(body) // 2] ^= 0xFF
    store.put(key, bytes(body))

    out = binds("adopt", "--reason", "old store", "--store", url, "--json")
    assert out.exit_code == 1
    result = json.loads(out.stdout)
    assert sorted(result["adopted"]) == [
        "consortium/screening/binds-2026-0042-screening/v1/",
        "consortium/screening/binds-2026-0042-screening/v3/",
        "consortium/screening/other-set/v1/",
    ]
    (refused,) = result["refused"]
    assert refused.startswith("consortium/screening/binds-2026-0042-screening/v2/")
    assert "wells.parquet" in refused
    # v2 stays unrecorded: verify keeps naming it
    assert not ledger_mod.recorded(store, "consortium", "binds-2026-0042-screening", 2)
    assert any("v2/" in p for p in verify(store).problems)


def test_adopt_needs_a_reason(old_store):
    url, _ = old_store
    out = cli.invoke(app, ["adopt", "--reason", "  ", "--store", url])
    assert out.exit_code == 2 and "reason" in out.output
