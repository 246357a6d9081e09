"""Embargo (issue #23, symptom 2): a version under embargo is held under ``_embargo/`` until its
date, invisible at its level, marked NON_PUBLIC with the release date in the curator's DCAT,
and moved to its level by `binds release` without recomputing: with a clock the test sets."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from binds_testing import run_stage
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.describe.embargo import NOW_ENV, held_catalog_rows
from pipelines.modalities import get as get_modality
from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.toolkit.stage import StagedDataset

pytestmark = pytest.mark.slow
UNTIL = "2027-01-15"


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    base = tmp_path_factory.mktemp("embargo")
    run = get_modality("screening").make_demo_run(base / "run")
    return run_stage(run, base / "work").root


def _embargoed(staged, dest, *, level="open"):
    shutil.copytree(staged, dest, symlinks=True)
    path = dest / "_meta" / "experiment.json"
    exp = json.loads(path.read_text())
    exp["access"] = {"level": level, "embargo_until": UNTIL}
    path.write_text(json.dumps(exp))
    return dest


def binds(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def test_an_embargoed_version_is_held_until_its_date_then_released(staged, tmp_path, monkeypatch):
    monkeypatch.setenv(NOW_ENV, "2026-12-01")
    store = tmp_path / "store"
    res = publish(StagedDataset(_embargoed(staged, tmp_path / "stage")), open_store(store))
    ds = res.dataset_id
    assert res.created and any("embargo" in n for n in res.notes)
    # held: nothing at its level, the whole version under _embargo/
    assert not (store / "open").exists()
    assert (store / "_embargo" / res.prefix / "v1" / "manifest.json").is_file()
    (row,) = held_catalog_rows(open_store(store, read_only=True))
    assert row["embargo_until"] == dt.date(2027, 1, 15)
    cat = binds("catalog", "--store", store, "--json")
    assert cat.exit_code == 0 and json.loads(cat.stdout) == []
    open_dcat = binds("catalog", "--store", store, "--format", "dcat", "--for", "open")
    assert ds not in open_dcat.stdout
    curator_dcat = binds("catalog", "--store", store, "--format", "dcat", "--for", "restricted")
    assert curator_dcat.exit_code == 0, curator_dcat.output
    assert ds in curator_dcat.stdout and "NON_PUBLIC" in curator_dcat.stdout
    assert f'"{UNTIL}"^^xsd:date' in curator_dcat.stdout
    assert "access-right/PUBLIC" not in curator_dcat.stdout

    # the day before: nothing moves
    monkeypatch.setenv(NOW_ENV, "2027-01-14")
    early = binds("release", "--store", store)
    assert early.exit_code == 0 and "nothing to release" in early.stdout
    assert not (store / "open").exists()

    # the day: moved, not recomputed (same bytes, same manifest), held copy gone
    held_manifest = (store / "_embargo" / res.prefix / "v1" / "manifest.json").read_bytes()
    monkeypatch.setenv(NOW_ENV, UNTIL)
    done = binds("release", "--store", store, "--json")
    assert done.exit_code == 0, done.output
    assert [(r["dataset_id"], r["version"]) for r in json.loads(done.stdout)] == [(ds, 1)]
    assert (store / res.prefix / "v1" / "manifest.json").read_bytes() == held_manifest
    # only the held ledger stays: its entries are append-only records of the held commit;
    # and the held catalog's log and snapshot, holding no row any more
    import pyarrow.parquet as pq

    left = [p for p in (store / "_embargo").rglob("*") if p.is_file()]
    catalog = [p for p in left if p.relative_to(store).parts[2] == "catalog"]
    assert all(pq.read_table(p).num_rows == 0 for p in catalog), catalog
    left = [p for p in left if p not in catalog]
    assert left and all("_ledger" in p.relative_to(store).parts for p in left), left
    rows = json.loads(binds("catalog", "--store", store, "--json").stdout)
    assert [(r["dataset_id"], r["embargo_until"][:10]) for r in rows] == [(ds, UNTIL)]
    assert binds("verify", "--store", store).exit_code == 0
    after = binds("catalog", "--store", store, "--format", "dcat", "--for", "open")
    assert ds in after.stdout and "access-right/PUBLIC" in after.stdout
    assert "NON_PUBLIC" not in after.stdout
    again = binds("release", "--store", store)
    assert "nothing to release" in again.stdout


def test_restricted_data_under_embargo_are_not_held(staged, tmp_path, monkeypatch):
    monkeypatch.setenv(NOW_ENV, "2026-12-01")
    store = tmp_path / "store"
    res = publish(
        StagedDataset(_embargoed(staged, tmp_path / "stage", level="restricted")),
        open_store(store),
    )
    assert (store / res.prefix / "v1" / "manifest.json").is_file()
    assert not (store / "_embargo").exists()
    dcat = binds("catalog", "--store", store, "--format", "dcat", "--for", "restricted")
    assert "NON_PUBLIC" in dcat.stdout and f'"{UNTIL}"^^xsd:date' in dcat.stdout
