"""The publish protocol against both backends: versions, identity, resume, verification."""

from __future__ import annotations

import json

import pytest

from pipelines.describe.catalog import read_catalog
from pipelines.errors import InputError
from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.store.verify import verify

PREFIX = "consortium/screening/binds-2026-0042-screening/"


def claim_like_a_killed_publisher(store, stage):
    """What a publisher killed after claiming v1 leaves: the claim with the stage's digest."""
    from pipelines.run.publishing import hash_stage, stage_digest

    items = hash_stage(stage, store)
    digest = stage_digest(stage, items)
    store.put(PREFIX + "_claims/v1.json", json.dumps({"content_digest": digest}).encode())
    return items


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_bucket") + "/curated"


def test_first_publish_creates_v1_with_the_design_layout(make_stage, store_url):
    stage = make_stage()
    store = open_store(store_url)
    r = publish(stage, store)
    assert (r.created, r.version, r.access, r.modality) == (True, 1, "consortium", "screening")
    prefix = "consortium/screening/binds-2026-0042-screening/v1/"
    keys = {o.key for o in store.list_prefix(prefix)}
    assert {
        prefix + "manifest.json",
        prefix + "metadata.jsonld",
        prefix + "data/wells.parquet",
        prefix + "qc/metrics.json",
        prefix + "data/image.ome.zarr/zarr.json",
    } <= keys
    manifest = json.loads(store.get(prefix + "manifest.json"))
    assert manifest["n_files"] == len(manifest["files"]) == r.n_files == 43
    documents = {
        d["path"] for d in manifest["documents"]
    }  # ro-crate-metadata.json, _meta/usage.json ...
    assert {f["path"] for f in manifest["files"]} == {k[len(prefix) :] for k in keys} - {
        "manifest.json",
        "metadata.jsonld",
    } - documents
    assert store.exists("consortium/catalog/screening--binds-2026-0042-screening--v1.parquet")
    assert not list(store.list_prefix("consortium/screening/binds-2026-0042-screening/_claims/"))
    assert verify(store).ok


def test_identical_content_creates_no_new_version(make_stage, store_url):
    store = open_store(store_url)
    stage = make_stage()
    first = publish(stage, store)
    # provenance and timestamps changed, data and QC identical: same version
    stage.write_meta("run.json", {"run_dir": "/elsewhere", "started": "2030-01-01T00:00:00"})
    again = publish(stage, store)
    assert again.created is False and again.version == first.version == 1
    assert "no new version" in again.notes[0]
    assert again.uploaded_files == 0
    assert len(read_catalog(store)) == 1


def test_changed_content_creates_next_version_and_old_stays(make_stage, store_url):
    store = open_store(store_url)
    publish(make_stage("a", seed=1), store)
    v1_manifest = store.get("consortium/screening/binds-2026-0042-screening/v1/manifest.json")
    r = publish(make_stage("b", seed=2), store)
    assert (r.created, r.version) == (True, 2)
    assert (
        store.get("consortium/screening/binds-2026-0042-screening/v1/manifest.json") == v1_manifest
    )
    cat = read_catalog(store).to_pandas()
    assert sorted(cat["version"]) == [1, 2]
    assert verify(store).ok


def test_access_level_prefix_separates_data_and_catalog(make_stage, store_url):
    store = open_store(store_url)
    publish(make_stage("o", access="open", dataset_id="ds-open"), store)
    publish(make_stage("r", access="restricted", dataset_id="ds-secret"), store)
    open_only = read_catalog(store, levels=["open"]).to_pandas()
    assert list(open_only["dataset_id"]) == ["ds-open"]
    assert all(o.key.startswith("restricted/") for o in store.list_prefix("restricted/"))
    assert not [o for o in store.list_prefix("open/") if "ds-secret" in o.key]


def test_interrupted_publish_resumes_without_resending(make_stage, store_url):
    store = open_store(store_url)
    stage = make_stage(n_chunks=30)
    # a publisher killed after its claim and half its uploads
    items = claim_like_a_killed_publisher(store, stage)
    prefix = PREFIX
    from pipelines.store.base import UploadItem

    half = [
        UploadItem(prefix + "v1/" + i.key, i.path, i.size, i.sha256, i.etag) for i in items[:20]
    ]
    store.upload_files(half)
    assert not store.exists(prefix + "v1/manifest.json")
    assert read_catalog(store).num_rows == 0  # nothing visible yet
    r = publish(stage, store)
    assert (r.created, r.version) == (True, 1)
    assert r.uploaded_files == len(items) - 20
    assert any("resumed" in n for n in r.notes)
    assert verify(store).ok


def test_claim_of_other_content_is_skipped_never_mixed(make_stage, store_url):
    store = open_store(store_url)
    prefix = "consortium/screening/binds-2026-0042-screening/"
    store.put(prefix + "_claims/v1.json", json.dumps({"content_digest": "sha256:other"}).encode())
    r = publish(make_stage(), store)
    assert r.version == 2 and r.created
    assert not store.exists(prefix + "v1/manifest.json")


def test_corrupted_upload_detected_and_repaired(make_stage, store_url):
    """An object that differs from the staged file (a flipped byte) is re-sent before the commit."""
    store = open_store(store_url)
    stage = make_stage(n_chunks=5)
    items = claim_like_a_killed_publisher(store, stage)
    prefix = PREFIX
    target = next(i for i in items if i.key.endswith("wells.parquet"))
    bad = bytearray(target.path.read_bytes())
    bad[100] ^= 0xFF
    store.put(prefix + "v1/" + target.key, bytes(bad))
    publish(stage, store)
    assert store.get(prefix + "v1/" + target.key) == target.path.read_bytes()
    assert verify(store).ok


def test_verify_names_flipped_and_missing_files(make_stage, store_url):
    store = open_store(store_url)
    publish(make_stage(), store)
    prefix = "consortium/screening/binds-2026-0042-screening/v1/"
    data = bytearray(store.get(prefix + "data/wells.parquet"))
    data[50] ^= 0x01
    store.put(prefix + "data/wells.parquet", bytes(data))
    store.delete(prefix + "data/image.ome.zarr/0/c/7")
    report = verify(store)
    assert not report.ok
    assert any(p.startswith(prefix + "data/wells.parquet: sha256") for p in report.problems)
    assert prefix + "data/image.ome.zarr/0/c/7: missing" in report.problems
    assert len(report.problems) == 2


def test_incomplete_stage_is_refused_and_nothing_written(tmp_path, make_stage):
    stage = make_stage()
    (stage.qc_dir / "metrics.json").unlink()
    store = open_store(tmp_path / "store")
    with pytest.raises(InputError, match=r"qc/metrics\.json is missing"):
        publish(stage, store)
    assert not (tmp_path / "store").exists()


def test_invalid_metadata_in_stage_is_refused(tmp_path, make_stage):
    stage = make_stage()
    exp = stage.experiment
    exp["dataset_id"] = "../../etc"
    stage.write_meta("experiment.json", exp)
    with pytest.raises(InputError, match="dataset_id"):
        publish(stage, open_store(tmp_path / "store"))
    assert not (tmp_path / "store").exists()
