"""Embargo and the ledger: a released version is recorded in its level's ledger (reason
"embargo release"), so `binds verify` of that level is clean after `binds release`."""

from __future__ import annotations

import hashlib
import json

from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.describe.embargo import HeldStore
from pipelines.run.publishing import index_version
from pipelines.store import LocalStore, UploadItem, ledger
from pipelines.store.publish import Description, Submission, commit_version

ID = "binds-2026-0042-cryoem"


def _publish_held(store, tmp_path, content: str, until: str | None):
    f = tmp_path / f"{content}.bin"
    f.write_bytes(content.encode())
    sha = hashlib.sha256(content.encode()).hexdigest()
    item = UploadItem("data/a.bin", f, f.stat().st_size, sha)
    experiment = "0" * 64
    # the digest a publish makes (verify recomputes it from the manifest's files)
    digest = hashlib.sha256(
        f"data/a.bin\t{item.size}\t{sha}\nexperiment\t{experiment}\n".encode()
    ).hexdigest()
    sub = Submission(
        "open", "cryoem", ID, [item], "sha256:" + digest, "BINDS-2026-0042", "t", experiment, {}
    )
    meta = json.dumps({"binds:embargoUntil": until} if until else {}).encode()
    held = HeldStore(store) if until else store
    return commit_version(
        sub, held, describe=lambda d: Description(meta, []), index=index_version(held)
    )


def test_verify_is_clean_after_a_release_and_the_ledger_records_it(tmp_path, monkeypatch):
    root = tmp_path / "store"
    store = LocalStore(root)
    monkeypatch.setenv("BINDS_NOW", "2026-12-01")
    assert _publish_held(store, tmp_path, "held", "2027-01-15").version == 1
    # the held commit is recorded in the held ledger, not the level's
    assert (root / "_embargo" / "open" / "_ledger" / "000000000001.json").is_file()
    assert ledger.read(store, "open") == []

    runner = CliRunner()
    early = runner.invoke(app, ["release", "--store", str(root)])
    assert early.exit_code == 0 and "nothing to release" in early.stdout

    monkeypatch.setenv("BINDS_NOW", "2027-01-15")
    done = runner.invoke(app, ["release", "--store", str(root)])
    assert done.exit_code == 0, done.output
    assert (root / "open" / "cryoem" / ID / "v1" / "manifest.json").is_file()

    checked = runner.invoke(app, ["verify", "--store", str(root)])
    assert checked.exit_code == 0, checked.output
    assert "1 version(s)" in checked.stdout

    (entry,) = ledger.read(store, "open")
    manifest = (root / "open" / "cryoem" / ID / "v1" / "manifest.json").read_bytes()
    assert entry.body["kind"] == "release"
    assert entry.body["reason"] == "embargo release"
    assert (entry.body["dataset_id"], entry.body["version"]) == (ID, 1)
    assert entry.body["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert ledger.chain_problems("open", ledger.read(store, "open")) == []

    # a second release (or one resumed after a crash) records nothing twice
    again = runner.invoke(app, ["release", "--store", str(root)])
    assert again.exit_code == 0, again.output
    assert len(ledger.read(store, "open")) == 1
    assert runner.invoke(app, ["verify", "--store", str(root)]).exit_code == 0


def test_the_held_ledger_is_a_chain_of_its_own_beside_a_released_level(tmp_path, monkeypatch):
    """A held version after a public one: the held ledger starts at entry 1 (not after the
    level's head), and the release is the level's next entry."""
    root = tmp_path / "store"
    store = LocalStore(root)
    assert _publish_held(store, tmp_path, "public", None).version == 1
    assert _publish_held(store, tmp_path, "held", "2027-01-15").version == 2
    held = ledger.read(HeldStore(store), "open")
    assert [e.seq for e in held] == [1] and held[0].body["version"] == 2
    assert ledger.chain_problems("open", held) == []

    monkeypatch.setenv("BINDS_NOW", "2027-02-01")
    runner = CliRunner()
    assert runner.invoke(app, ["release", "--store", str(root)]).exit_code == 0
    kinds = [(e.body["kind"], e.body["version"]) for e in ledger.read(store, "open")]
    assert kinds == [("commit", 1), ("release", 2)]
    checked = runner.invoke(app, ["verify", "--store", str(root)])
    assert checked.exit_code == 0, checked.output
    assert "2 version(s)" in checked.stdout
