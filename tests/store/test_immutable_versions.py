"""Committed means immutable, owned and tamper-evident (issue 21).

Each test reproduces a symptom seen on main aa5fa1a with real publishers (``binds publish``
processes racing into one local folder or one loopback S3 bucket), then checks the fix.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.run.publishing import publish
from pipelines.store import LocalStore, open_store
from pipelines.store import ledger as ledger_mod
from pipelines.store.lease import lease_key
from pipelines.store.verify import verify
from tests.store.conftest import build_stage

BINDS = str(Path(sys.executable).with_name("binds"))
DATASET = "binds-2026-0042-screening"
PREFIX = f"consortium/screening/{DATASET}/"
cli = CliRunner()


def binds(*args):
    return cli.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_bucket") + "/curated"


def start_publish(stage: Path, store_url: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BINDS, "publish", str(stage), "--store", store_url, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BINDS_LEASE_TTL_S": "3", **env},
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def version_bytes(store, version: int) -> dict[str, str]:
    """sha256 of every data/ and qc/ object of a version (documents describe, data are)."""
    vprefix = f"{PREFIX}v{version}/"
    return {
        info.key[len(vprefix) :]: hashlib.sha256(store.get(info.key)).hexdigest()
        for info in store.list_prefix(vprefix)
        if info.key[len(vprefix) :].startswith(("data/", "qc/metrics"))
    }


def stage_bytes(stage_root: Path) -> dict[str, str]:
    return {
        p.relative_to(stage_root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(stage_root.rglob("*"))
        if p.is_file() and p.relative_to(stage_root).as_posix().startswith(("data/", "qc/metrics"))
    }


def snapshot(store) -> dict[str, str]:
    return {i.key: hashlib.sha256(store.get(i.key)).hexdigest() for i in store.list_prefix("")}


# ------------------------------------------------------------- 1. a concurrent run rewrites v1
@pytest.mark.slow  # real publisher processes racing: ~10 s each
@pytest.mark.parametrize("offset", [0.0, 0.3, 0.6, 0.9])
def test_two_publishers_of_one_stage_never_rewrite_the_committed_version(
    tmp_path, store_url, offset
):
    """Symptom: two `binds publish` of two copies of one stage: the loser rewrote
    metadata.jsonld, qc/report.html, ro-crate-metadata.json and _meta/usage.json of v1 after the
    winner's commit (verify: 4 corrupted files, in 2 of 4 races)."""
    a = build_stage(tmp_path / "wa" / "stage", n_chunks=120).root
    b = build_stage(tmp_path / "wb" / "stage", n_chunks=120).root
    first = start_publish(a, store_url)
    time.sleep(offset)
    second = start_publish(b, store_url)
    results = [finish(first), finish(second)]
    assert [r[0] for r in results] == [0, 0], results
    created = sorted(json.loads(r[1])["created"] for r in results)
    assert created == [False, True], "one publishes, the other finds it unchanged"
    loser = next(json.loads(r[1]) for r in results if not json.loads(r[1])["created"])
    assert loser["version"] == 1 and loser["uploaded_files"] == 0
    store = open_store(store_url)
    report = verify(store)
    assert report.ok, report.problems
    assert report.versions == 1 and report.ledger_entries == 1
    assert version_bytes(store, 1) == stage_bytes(a)
    assert not store.exists(lease_key(DATASET)), "the lease is released"


@pytest.mark.slow
@pytest.mark.parametrize("offset", [0.0, 0.6])
def test_publishers_of_different_content_get_their_own_versions(tmp_path, store_url, offset):
    a = build_stage(tmp_path / "wa" / "stage", seed=1, n_chunks=80).root
    b = build_stage(tmp_path / "wb" / "stage", seed=2, n_chunks=80).root
    first = start_publish(a, store_url)
    time.sleep(offset)
    second = start_publish(b, store_url)
    results = [json.loads(finish(p)[1]) for p in (first, second)]
    assert sorted(r["version"] for r in results) == [1, 2]
    assert all(r["created"] for r in results)
    store = open_store(store_url)
    assert verify(store).ok
    for r, root in zip(results, (a, b), strict=True):
        assert version_bytes(store, r["version"]) == stage_bytes(root), "each its own bytes"


@pytest.mark.slow
def test_a_killed_winner_leaves_nothing_committed_and_the_other_publisher_finishes(
    tmp_path, store_url
):
    """The winner is SIGKILLed mid-publish (its lease stays); the second waits for the lease
    to expire, takes it over, resumes the claim and commits v1 with its own bytes."""
    a = build_stage(tmp_path / "wa" / "stage", n_chunks=300).root
    b = build_stage(tmp_path / "wb" / "stage", n_chunks=300).root
    store = open_store(store_url)
    first = start_publish(a, store_url)
    deadline = time.monotonic() + 30
    while not store.exists(lease_key(DATASET)) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = start_publish(b, store_url)
    code, out, err = finish(second)
    assert code == 0, err
    result = json.loads(out)
    assert (result["version"], result["created"]) == (1, True)
    report = verify(store)
    assert report.ok, report.problems
    assert version_bytes(store, 1) == stage_bytes(b)


def test_a_live_lease_makes_the_second_publisher_wait(tmp_path):
    from pipelines.store.lease import Lease

    store = open_store(tmp_path / "store")
    holder = Lease(store, DATASET.upper(), ttl_s=30).acquire()  # ids compare case-insensitively
    waiter = Lease(store, DATASET, ttl_s=30, wait_s=0.5, poll_s=0.05)
    with pytest.raises(Exception, match="held the store lease"):
        waiter.acquire()
    holder.release()
    with Lease(store, DATASET, ttl_s=30, wait_s=0.5):
        assert json.loads(store.get(lease_key(DATASET)))["pid"] == os.getpid()


def test_an_expired_lease_is_taken_over_by_exactly_one_publisher(tmp_path):
    from pipelines.store.lease import Lease

    store = open_store(tmp_path / "store")
    dead = Lease(store, DATASET, ttl_s=0.2)
    dead.acquire()
    dead._stop.set()  # a killed holder renews nothing
    time.sleep(0.3)
    first = Lease(store, DATASET, ttl_s=30, poll_s=0.01).acquire()
    assert first.took_over
    late = Lease(store, DATASET, ttl_s=30, wait_s=0.3, poll_s=0.05)
    with pytest.raises(Exception, match="held the store lease"):
        late.acquire()  # the expired holder's takeover marker is spent: no second takeover
    first.release()


def test_documents_of_a_committed_version_are_never_written_again(tmp_path, make_stage):
    """A publisher that resumes the claim of a version committed meanwhile must not rewrite
    its documents (the old code put them unconditionally before its manifest attempt)."""
    store = open_store(tmp_path / "store")
    stage = make_stage()
    publish(stage, store)
    before = snapshot(store)
    v1 = {k: v for k, v in before.items() if k.startswith(PREFIX + "v1/")}
    stage.write_meta("run.json", {"run_dir": "/runs/x", "started": "2031-01-01T00:00:00"})
    again = publish(stage, store)
    assert not again.created
    after = snapshot(store)
    assert {k: v for k, v in after.items() if k.startswith(PREFIX + "v1/")} == v1


# ------------------------------------------------------------- 2. ownership
def _stage_for(tmp_path, name, *, request_id, dataset_id=None, run_dir="/runs/x", seed=0):
    stage = build_stage(tmp_path / name, seed=seed, dataset_id=dataset_id)
    exp = stage.experiment
    exp["request_id"] = request_id
    stage.write_meta("experiment.json", exp)
    stage.write_meta("run.json", {"run_dir": run_dir, "inputs": []})
    return stage


def test_another_request_cannot_publish_a_version_of_my_dataset(tmp_path, store_url):
    """Symptom: a run folder with `dataset_id:` set to another request's id published v2 of it."""
    store = open_store(store_url)
    mine = _stage_for(tmp_path, "mine", request_id="BINDS-2026-0042", dataset_id="ds-a")
    publish(mine, store)
    theirs = _stage_for(tmp_path, "theirs", request_id="BINDS-2026-0077", dataset_id="ds-a", seed=5)
    out = binds("publish", theirs.root, "--store", store_url)
    assert out.exit_code == 2, out.output
    assert "belongs to request BINDS-2026-0042" in out.output
    assert "--curator-override" in out.output and "Traceback" not in out.output
    assert not store.exists("consortium/screening/ds-a/v2/manifest.json")
    assert not list(store.list_prefix("consortium/screening/ds-a/v2/"))


def test_a_request_id_in_other_letter_case_is_not_the_owner(tmp_path, store_url):
    """Symptom: `req-1` and `REQ-1` give the same dataset id; the second published v2 of it."""
    store = open_store(store_url)
    publish(_stage_for(tmp_path, "a", request_id="REQ-1"), store)
    out = binds(
        "publish", _stage_for(tmp_path, "b", request_id="req-1", seed=3).root, "--store", store_url
    )
    assert out.exit_code == 2, out.output
    assert "belongs to request REQ-1" in out.output
    assert not store.exists("consortium/screening/req-1-screening/v2/manifest.json")


def test_a_second_session_of_a_request_does_not_replace_the_first(tmp_path, store_url):
    """Symptom: another run folder of the same request silently became the "latest" version."""
    store = open_store(store_url)
    publish(_stage_for(tmp_path, "s1", request_id="BINDS-1", run_dir="/runs/krios-0042"), store)
    s2 = _stage_for(tmp_path, "s2", request_id="BINDS-1", run_dir="/runs/krios-0043", seed=9)
    out = binds("publish", s2.root, "--store", store_url)
    assert out.exit_code == 2, out.output
    assert "another run folder" in out.output and "dataset_id:" in out.output
    # the same run folder re-run with other content is a new version, as before
    again = _stage_for(tmp_path, "s1b", request_id="BINDS-1", run_dir="/data/krios-0042", seed=4)
    assert publish(again, store).version == 2
    # a curator's override needs a reason and lands in the ledger
    ok = binds("publish", s2.root, "--store", store_url, "--curator-override", "ticket 812: regrid")
    assert ok.exit_code == 0, ok.output
    kinds = [e.body["kind"] for e in ledger_mod.read(store, "consortium")]
    assert kinds == ["commit", "commit", "override", "commit"]
    override = ledger_mod.read(store, "consortium")[2].body
    assert override["reason"] == "ticket 812: regrid" and override["version"] == 3


class OneLevelStore(LocalStore):
    """A publisher's credentials for one level: any key of another level is refused."""

    def __init__(self, root, level):
        super().__init__(root)
        self.level = level

    def _path(self, key):
        first = key.split("/", 1)[0]
        if first in ("open", "consortium", "restricted") and first != self.level:
            raise PermissionError(f"access denied to {first}/")
        return super()._path(key)

    def list_dirs(self, prefix):
        self._path(prefix + "x")
        return super().list_dirs(prefix)


def test_one_level_per_dataset_without_reading_other_levels(tmp_path):
    """The old check listed every level (a publisher needed read access to restricted/ to
    publish to open/) and named the other level and version in its refusal."""
    root = tmp_path / "store"
    secret = _stage_for(tmp_path, "r", request_id="BINDS-9", dataset_id="ds-x")
    exp = secret.experiment
    exp.update(access={"level": "restricted"}, title="Patient cohort 17")
    secret.write_meta("experiment.json", exp)
    publish(secret, OneLevelStore(root, "restricted"))
    clash = _stage_for(tmp_path, "o", request_id="BINDS-9", dataset_id="ds-x", seed=2)
    exp = clash.experiment
    exp["access"] = {"level": "open"}
    clash.write_meta("experiment.json", exp)
    from pipelines.errors import InputError

    with pytest.raises(InputError) as refused:
        publish(clash, OneLevelStore(root, "open"))
    text = str(refused.value) + " ".join(str(p) for p in refused.value.problems)
    assert "already taken" in text
    for secret_word in ("restricted/", "Patient", "v1", "'restricted'"):
        assert secret_word not in text
    assert not (root / "open").exists()
    publish(
        _stage_for(tmp_path, "fine", request_id="BINDS-9", dataset_id="ds-y"),
        OneLevelStore(root, "consortium"),
    )


# ------------------------------------------------------------- 3./4. tampering is found, never hidden
@pytest.fixture
def two_versions(tmp_path, store_url):
    store = open_store(store_url)
    publish(build_stage(tmp_path / "wa" / "stage", seed=1, n_chunks=5), store)
    publish(build_stage(tmp_path / "wb" / "stage", seed=2, n_chunks=5), store)
    publish(build_stage(tmp_path / "c", seed=3, n_chunks=5, dataset_id="other-ds"), store)
    assert verify(store).ok
    return store


def _edit_manifest(store, version, edit):
    key = f"{PREFIX}v{version}/manifest.json"
    m = json.loads(store.get(key))
    edit(m)
    store.delete(key)
    store.put(key, (json.dumps(m, indent=2) + "\n").encode())


def test_verify_finds_a_file_changed_with_its_manifest(two_versions):
    store = two_versions
    key = f"{PREFIX}v1/data/wells.parquet"
    forged = b"forged table"
    store.put(key, forged)

    def edit(m):
        f = next(f for f in m["files"] if f["path"] == "data/wells.parquet")
        f.update(size=len(forged), sha256=hashlib.sha256(forged).hexdigest())
        m["title"] = "A better title"

    _edit_manifest(store, 1, edit)
    problems = verify(store).problems
    assert any(p.startswith(f"{PREFIX}v1/: manifest sha256") and "ledger" in p for p in problems)
    assert any(p.startswith(f"{PREFIX}v1/: the catalog row's manifest_sha256") for p in problems)
    assert any(p.startswith(f"{PREFIX}v1/: content digest") for p in problems)
    cat_before = store.get(f"consortium/catalog/screening--{DATASET}--v1.parquet")
    out = binds("catalog", "--store", store.url, "--rebuild", "--json")
    assert out.exit_code == 1 and f"{PREFIX}v1/: manifest sha256" in out.output
    assert store.get(f"consortium/catalog/screening--{DATASET}--v1.parquet") == cat_before


def test_verify_finds_a_version_replaced_by_another_datasets_renumbered(two_versions):
    store = two_versions
    other = "consortium/screening/other-ds/v1/"
    for info in list(store.list_prefix(f"{PREFIX}v2/")):
        store.delete(info.key)
    for info in store.list_prefix(other):
        store.put(f"{PREFIX}v2/" + info.key[len(other) :], store.get(info.key))
    problems = verify(store).problems
    assert (
        f"{PREFIX}v2/: manifest says dataset_id 'other-ds', its key path says '{DATASET}' (a version copied, renumbered or moved by hand)"
        in problems
    )
    assert any(p.startswith(f"{PREFIX}v2/: manifest sha256") for p in problems)


def test_verify_and_rebuild_report_a_deleted_version_and_keep_its_row(two_versions):
    store = two_versions
    for info in list(store.list_prefix(f"{PREFIX}v1/")):
        store.delete(info.key)
    report = verify(store)
    assert (
        f"{PREFIX}v1/: recorded in the ledger (entry 1) but the whole version deleted"
        in report.problems
    )
    row = f"consortium/catalog/screening--{DATASET}--v1.parquet"
    out = binds("catalog", "--store", store.url, "--rebuild")
    assert out.exit_code == 1
    assert store.exists(row), "the row of a vanished version is kept (evidence), never deleted"


def test_verify_finds_a_deleted_manifest(two_versions):
    store = two_versions
    store.delete(f"{PREFIX}v2/manifest.json")
    out = binds("verify", "--store", store.url)
    assert out.exit_code == 1
    assert f"{PREFIX}v2/: recorded in the ledger (entry 2) but manifest.json deleted" in out.stdout


def test_verify_finds_an_edited_ledger_entry_and_a_removed_one(two_versions):
    store = two_versions
    key = ledger_mod.entry_key("consortium", 1)
    body = json.loads(store.get(key))
    body["request_id"] = "BINDS-6666"
    store.delete(key)
    store.put(key, ledger_mod.encode(body))
    problems = verify(store).problems
    assert any(p.startswith("consortium/_ledger/000000000002.json: chain broken") for p in problems)
    store.delete(ledger_mod.entry_key("consortium", 2))
    problems = verify(store).problems
    assert any("ledger entries 2..2 are missing" in p for p in problems)


def test_the_ledger_chain_verifies_by_hand_with_sha256(two_versions):
    store = two_versions
    entries = ledger_mod.read(store, "consortium")
    assert [e.seq for e in entries] == [1, 2, 3]
    for before, after in itertools.pairwise(entries):
        assert after.body["prev"] == hashlib.sha256(before.raw).hexdigest()
    m = store.get(f"{PREFIX}v2/manifest.json")
    assert entries[1].body["manifest_sha256"] == hashlib.sha256(m).hexdigest()


def test_the_ledger_mirror_catches_a_rewritten_chain(tmp_path, monkeypatch, make_stage):
    witness = tmp_path / "witness.txt"
    monkeypatch.setenv("BINDS_LEDGER_MIRROR", str(witness))
    store = open_store(tmp_path / "store")
    publish(make_stage("a", seed=1), store)
    publish(make_stage("b", seed=2), store)
    assert len(witness.read_text().splitlines()) == 2
    assert verify(store, mirror=str(witness)).ok
    # an admin rewrites the whole chain consistently (entry 2 dropped): only the mirror knows
    store.delete(ledger_mod.entry_key("consortium", 2))
    problems = verify(store, mirror=str(witness)).problems
    assert (
        "consortium/_ledger/000000000002.json: in the mirror but missing from the store" in problems
    )


# ------------------------------------------------------------- 5. rebuild trusts the key path
def test_rebuild_never_writes_a_hand_moved_restricted_dataset_into_open(tmp_path, make_stage):
    """Symptom: a dataset moved by hand from open/ to restricted/ got its title and samples
    written back into open/catalog/ by `catalog --rebuild`, and verify said ok."""
    root = tmp_path / "store"
    store = open_store(root)
    publish(make_stage("o", access="open", dataset_id="ds-open"), store)
    src, dst = root / "open/screening/ds-open", root / "restricted/screening/ds-open"
    dst.parent.mkdir(parents=True)
    shutil.move(src, dst)
    for row in (root / "open/catalog").glob("*.parquet"):
        row.unlink()
    out = binds("catalog", "--store", root, "--rebuild")
    assert out.exit_code == 1
    assert not list((root / "open/catalog").glob("*.parquet"))
    assert not list((root / "restricted/catalog").glob("*.parquet"))
    problems = verify(store).problems
    assert (
        "open/screening/ds-open/v1/: recorded in the ledger (entry 1) but the whole version deleted"
        in problems
    )
    assert any(
        p.startswith("restricted/screening/ds-open/v1/: manifest says access 'open'")
        for p in problems
    )
