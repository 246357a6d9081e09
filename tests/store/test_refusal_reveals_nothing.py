"""A refused publish names neither the level the dataset has nor its versions (issue #23,
symptom 6): the reason reaches the inbox state and Prefect's logs."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.errors import InputError
from pipelines.store import LocalStore, UploadItem
from pipelines.store.publish import Description, Submission, commit_version


def _submit(store, tmp_path, level: str):
    f = tmp_path / f"{level}.bin"
    f.write_bytes(level.encode())
    item = UploadItem("data/a.bin", f, f.stat().st_size, hashlib.sha256(level.encode()).hexdigest())
    sub = Submission(
        access=level,
        modality="cryoem",
        dataset_id="binds-2026-0042-cryoem",
        items=[item],
        content_digest="sha256:" + item.sha256,
        request_id="BINDS-2026-0042",
        title="secret title of a restricted project",
        experiment_sha256="0" * 64,
        qc={},
    )
    return commit_version(sub, store, describe=lambda d: Description(b"{}", []))


def test_a_refused_level_reveals_nothing(tmp_path):
    store = LocalStore(tmp_path / "store")
    _submit(store, tmp_path, "restricted")
    with pytest.raises(InputError) as exc:
        _submit(store, tmp_path, "open")
    text = " ".join(str(p) for p in exc.value.problems)
    assert "restricted" not in text and "v1" not in text and "secret" not in text
    assert not (tmp_path / "store" / "open").exists()
