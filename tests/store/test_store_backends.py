"""One behaviour suite for every store backend: local folder and S3 (moto server on loopback)."""

from __future__ import annotations

import threading

import pytest

from pipelines.errors import InputError
from pipelines.store import open_store
from pipelines.store.base import ReadOnlyStoreError, Store, UploadItem
from pipelines.store.hashing import digests


class StoreTests:
    """Subclasses supply the ``store`` fixture; every test runs against each backend."""

    def test_put_get_roundtrip(self, store: Store):
        store.put("a/b/c.txt", b"hello")
        assert store.get("a/b/c.txt") == b"hello"
        assert store.head("a/b/c.txt").size == 5
        assert store.exists("a/b/c.txt")
        assert b"".join(store.open_read("a/b/c.txt", chunk_size=2)) == b"hello"

    def test_missing_key(self, store: Store):
        with pytest.raises(KeyError):
            store.get("nope/x")
        assert store.head("nope/x") is None
        with pytest.raises(KeyError):
            list(store.open_read("nope/x"))

    def test_put_if_absent_is_exclusive(self, store: Store):
        assert store.put_if_absent("k/manifest.json", b"first") is True
        assert store.put_if_absent("k/manifest.json", b"second") is False
        assert store.get("k/manifest.json") == b"first"

    def test_put_if_absent_race_has_one_winner(self, store: Store):
        wins: list[int] = []
        barrier = threading.Barrier(6)

        def contender(i: int) -> None:
            barrier.wait()
            if store.put_if_absent("race/manifest.json", f"writer {i}".encode()):
                wins.append(i)

        threads = [threading.Thread(target=contender, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1
        assert store.get("race/manifest.json") == f"writer {wins[0]}".encode()

    def test_list_prefix_and_dirs(self, store: Store):
        for key in ("p/x/1", "p/x/2", "p/y/3", "p2/z", "q/1"):
            store.put(key, b"..")
        assert [o.key for o in store.list_prefix("p/")] == ["p/x/1", "p/x/2", "p/y/3"]
        assert store.list_dirs("p/") == ["x", "y"]
        assert list(store.list_prefix("absent/")) == []
        assert store.list_dirs("absent/") == []

    def test_delete(self, store: Store):
        store.put("d/1", b"x")
        store.delete("d/1")
        store.delete("d/1")  # absent: no error
        assert not store.exists("d/1")

    def test_upload_files_and_matches(self, store: Store, tmp_path):
        items = []
        for i in range(25):
            p = tmp_path / f"chunk{i}"
            p.write_bytes(bytes([i]) * (1000 + i))
            kw = (
                {"multipart_threshold": 64 << 20, "multipart_chunk": 64 << 20}
                if store.supports_etag_md5
                else {}
            )
            size, sha, etag = digests(p, **kw)
            items.append(UploadItem(key=f"up/{i}", path=p, size=size, sha256=sha, etag=etag))
        seen = []
        store.upload_files(items, progress=seen.append)
        assert sum(seen) == sum(it.size for it in items)
        listed = {o.key: o for o in store.list_prefix("up/")}
        assert all(store.matches(it, listed[it.key]) for it in items)
        store.put("up/0", b"tampered-with-same-len"[:1000].ljust(1000, b"!"))
        listed = {o.key: o for o in store.list_prefix("up/")}
        assert not store.matches(items[0], listed["up/0"])

    @pytest.mark.parametrize("key", ["../escape", "/abs", "a/../../b", "a//b", "a\\b"])
    def test_unsafe_keys_refused(self, store: Store, key):
        with pytest.raises(InputError):
            store.put(key, b"x")

    def test_read_only(self, store: Store):
        ro = open_store(store.url, read_only=True)
        store.put("ro/1", b"x")
        assert ro.get("ro/1") == b"x"
        for call in (
            lambda: ro.put("ro/2", b"y"),
            lambda: ro.put_if_absent("ro/2", b"y"),
            lambda: ro.delete("ro/1"),
        ):
            with pytest.raises(ReadOnlyStoreError):
                call()


class TestLocalStore(StoreTests):
    @pytest.fixture
    def store(self, tmp_path):
        return open_store(tmp_path / "store")

    def test_no_partial_files_visible(self, store, tmp_path):
        store.put("v/a", b"x" * 100)
        names = [p.name for p in (tmp_path / "store" / "v").iterdir()]
        assert names == ["a"]


class TestS3Store(StoreTests):
    @pytest.fixture
    def store(self, s3_bucket):
        return open_store(f"{s3_bucket}/some/prefix")

    def test_prefix_is_respected(self, store, s3_endpoint):
        import boto3

        store.put("x/1", b"1")
        keys = [
            o["Key"]
            for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
                Bucket=store.bucket
            )["Contents"]
        ]
        assert keys == ["some/prefix/x/1"]

    def test_missing_bucket_is_a_clear_error(self, s3_endpoint, monkeypatch):
        from pipelines.store.base import StoreError

        monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", s3_endpoint)
        st = open_store("s3://no-such-bucket-binds")
        with pytest.raises(StoreError, match="bucket 'no-such-bucket-binds' does not exist"):
            st.put("a", b"x")

    def test_each_store_signs_with_the_credentials_of_its_opening(self, s3_bucket, monkeypatch):
        """Stores share botocore's parsed models (opening one is cheap), never credentials: a
        reader and a writer in one process keep the keys each was opened with."""
        signed: dict[str, list[str]] = {"reader": [], "writer": []}

        def opened_as(who: str, key_id: str):
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
            st = open_store(f"{s3_bucket}/p")
            st.client.meta.events.register(
                "before-send.s3",
                lambda request, **_: signed[who].append(request.headers["Authorization"].decode()),
            )
            return st

        reader = opened_as("reader", "binds-reader-key")
        writer = opened_as("writer", "binds-writer-key")
        writer.put("a", b"1")
        assert reader.get("a") == b"1"
        assert signed["writer"] and all(
            "Credential=binds-writer-key/" in h for h in signed["writer"]
        )
        assert signed["reader"] and all(
            "Credential=binds-reader-key/" in h for h in signed["reader"]
        )
