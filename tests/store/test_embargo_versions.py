"""Embargo and versions (issue #23): a held version after released ones takes the next number,
and a release never replaces a committed version."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from pipelines.describe.embargo import EMBARGO_DIR, HeldStore, release
from pipelines.run.publishing import index_version
from pipelines.store import LocalStore, UploadItem
from pipelines.store.base import StoreError
from pipelines.store.publish import Description, Submission, commit_version

ID = "binds-2026-0042-cryoem"


def _commit(store, tmp_path, content: str, *, until: str | None):
    f = tmp_path / f"{content}.bin"
    f.write_bytes(content.encode())
    sha = hashlib.sha256(content.encode()).hexdigest()
    item = UploadItem("data/a.bin", f, f.stat().st_size, sha)
    sub = Submission(
        "open", "cryoem", ID, [item], "sha256:" + sha, "BINDS-2026-0042", "t", "0" * 64, {}
    )
    meta = json.dumps({"binds:embargoUntil": until} if until else {}).encode()
    target = HeldStore(store) if until else store
    return commit_version(
        sub, target, describe=lambda d: Description(meta, []), index=index_version(target)
    )


def test_a_held_version_after_a_released_one_is_the_next_and_is_released(tmp_path):
    store = LocalStore(tmp_path / "store")
    assert _commit(store, tmp_path, "first", until=None).version == 1
    assert _commit(store, tmp_path, "second", until="2027-01-15").version == 2
    assert (
        tmp_path / "store" / EMBARGO_DIR / "open" / "cryoem" / ID / "v2" / "manifest.json"
    ).is_file()
    assert release(store, on=dt.date(2027, 1, 14)) == []
    (done,) = release(store, on=dt.date(2027, 1, 15))
    assert done.version == 2
    base = tmp_path / "store" / "open" / "cryoem" / ID
    assert (base / "v1" / "manifest.json").is_file() and (base / "v2" / "manifest.json").is_file()
    assert (base / "v2" / "data" / "a.bin").read_bytes() == b"second"


def test_a_release_never_replaces_a_committed_version(tmp_path):
    store = LocalStore(tmp_path / "store")
    _commit(store, tmp_path, "held", until="2027-01-15")
    # a curator's mistake: another v1 committed at the level meanwhile
    level = tmp_path / "store" / "open" / "cryoem" / ID / "v1"
    level.mkdir(parents=True)
    (level / "manifest.json").write_text('{"other": true}\n')
    with pytest.raises(StoreError, match="other content"):
        release(store, on=dt.date(2027, 2, 1))
    assert (
        tmp_path / "store" / EMBARGO_DIR / "open" / "cryoem" / ID / "v1" / "manifest.json"
    ).is_file()
    assert (level / "manifest.json").read_text() == '{"other": true}\n'
