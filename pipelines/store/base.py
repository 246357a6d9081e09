"""The store interface: a key-value view of a local folder or an S3 prefix.

Keys are relative POSIX paths (``consortium/cryoem/ds1/v1/manifest.json``).  The only
operations the publish protocol needs are a plain put, an exclusive put (the commit), reads,
listing and deletion of scratch objects; capabilities are properties, and a read-only store
refuses every write with one guard.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import BindsError, InputError, Problem

_BAD_KEY = re.compile(r"(^/)|(^|/)\.\.?(/|$)|//|\\")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object in the store: its key, size in bytes and, where the backend has one, its ETag."""

    key: str
    size: int
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class UploadItem:
    """One local file to upload, with the digests computed while staging (hex strings)."""

    key: str
    path: Path
    size: int
    sha256: str
    etag: str | None = None  # the ETag S3 will report (MD5, or multipart MD5-of-MD5s), when known


ProgressCallback = Callable[[int], None]  # called with bytes just transferred


class StoreError(BindsError):
    """The store failed (unreachable, refused, inconsistent): exit 1. ``transient`` faults may
    be retried; ``denied``: the credentials may not do this (a level the caller may not read)."""

    exit_code = 1

    def __init__(self, message: str, *, transient: bool = False, denied: bool = False):
        super().__init__(message)
        self.transient = transient
        self.denied = denied

    def __reduce__(self):
        return (
            self.__class__,
            (str(self),),
            {"transient": self.transient, "denied": self.denied},
        )


class ReadOnlyStoreError(StoreError):
    pass


class IntegrityError(StoreError):
    """The store did not receive, or does not hold, the bytes sent (an S3 server's BadDigest,
    an ETag or checksum in its answer that is not the bytes', a read-back that differs): the
    write may be retried; what it left under the key must not be trusted."""

    def __init__(self, message: str, *, transient: bool = True, denied: bool = False):
        super().__init__(message, transient=transient, denied=denied)


def check_key(key: str) -> str:
    """Refuse keys that could escape the store root (``..``, absolute, backslashes)."""
    if not key or _BAD_KEY.search(key):
        raise InputError(
            Problem(f"unsafe store key {key!r}", hint="keys are relative paths without '..'")
        )
    return key


class Store(ABC):
    """A local folder or an S3 prefix, seen as keys.

    Parameters
    ----------
    read_only
        Refuse every write (``binds catalog``, ``show`` and ``verify`` open stores this way).
    """

    #: The URL the user gave (a path or ``s3://bucket/prefix``); never contains credentials.
    url: str

    def __init__(self, *, read_only: bool = False) -> None:
        self.read_only = read_only

    # -- capabilities ------------------------------------------------------------------
    @property
    def supports_writes(self) -> bool:
        return not self.read_only

    @property
    @abstractmethod
    def supports_etag_md5(self) -> bool:
        """Whether listed ETags are MD5 digests of the content (S3 without SSE-KMS)."""

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(f"store {self.url} is opened read-only")

    # -- reads ---------------------------------------------------------------------------
    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; ``KeyError`` when absent."""

    @abstractmethod
    def open_read(self, key: str, *, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        """Stream the object in chunks (memory bounded by ``chunk_size``)."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size (and ETag) of ``key``, or ``None`` when absent."""

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def is_own(self, key: str) -> bool:
        """Whether ``key`` is this store's own object, not one another place shows through it
        (a view such as the embargo's ``HeldStore`` also shows the level's released versions)."""
        return True

    @abstractmethod
    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    def list_dirs(self, prefix: str) -> list[str]:
        """Immediate sub-"folders" of ``prefix`` (which ends with ``/``), names only."""
        names = {
            info.key[len(prefix) :].split("/", 1)[0]
            for info in self.list_prefix(prefix)
            if "/" in info.key[len(prefix) :]
        }
        return sorted(names)

    def matches(self, item: UploadItem, info: ObjectInfo | None) -> bool:
        """Whether the stored object ``info`` holds exactly ``item``'s bytes.

        The default compares sizes and, where the backend reports content MD5s as ETags, the
        ETag computed while staging: a check made by the server on what it received.
        """
        if info is None or info.size != item.size:
            return False
        if self.supports_etag_md5 and item.etag and info.etag:
            return info.etag == item.etag
        return True

    # -- writes ----------------------------------------------------------------------------
    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` (readers never see a partial object)."""

    def put_checked(self, key: str, data: bytes, *, sha256: str, read_back: bool = False) -> str:
        """Write ``data`` (whose sha256 the caller computed: ``sha256``) at ``key`` and make
        sure the store holds exactly these bytes; returns how that was checked.

        The default reads the object back and compares size and sha256 (``"read back"``);
        backends that can check cheaper override it (S3: the server checks the bytes it
        received against the request's Content-MD5 and sha256 checksum; a local folder: the
        bytes hashed are the bytes written).  ``read_back``: read back as well, whatever the
        backend.  Raises :class:`IntegrityError` when the store got or holds other bytes.
        """
        self.put(key, data)
        return self.check_read_back(key, len(data), sha256)

    def check_read_back(self, key: str, size: int, sha256: str) -> str:
        """Read ``key`` back: :class:`IntegrityError` unless it is ``size`` bytes of ``sha256``."""
        got = sha256_of(self, key)
        if got != (size, sha256):
            raise IntegrityError(f"{key}: does not read back as written (size or sha256 differs)")
        return "read back"

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` only if ``key`` does not exist; ``False`` when it did (nothing written)."""

    @abstractmethod
    def upload_files(
        self, items: Sequence[UploadItem], *, progress: ProgressCallback | None = None
    ) -> None:
        """Upload many files, in parallel where the backend allows."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when absent). Only ever used on uncommitted scratch objects."""

    # -- object lock (S3 buckets that have it) ------------------------------------------
    def object_lock(self) -> dict[str, str | int] | None:
        """The retention committed objects get (``mode``, ``days``), or ``None``: no lock."""
        return None

    def retention(self, key: str) -> str | None:
        """The retain-until date of ``key`` (ISO 8601), or ``None`` when it has none."""
        return None

    def remove_stale_temporaries(self, prefix: str) -> int:
        """Remove what an interrupted upload under ``prefix`` left (backends without: nothing)."""
        return 0

    # -- health ----------------------------------------------------------------------------
    #: Key prefix of the write probe (scratch: never part of a version, removed at once).
    PROBE_PREFIX = "_probe/"

    def check_writable(self) -> None:
        """Make sure the store is reachable and accepts writes, before any compute.

        Writes and deletes one small probe object.  Raises :class:`StoreError` (not retried:
        meant to fail within seconds) naming the store and what to check.
        """
        import uuid

        self._check_writable()
        key = f"{self.PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            self.put(key, b"binds write probe\n")
            self.delete(key)
        except OSError as err:
            raise StoreError(
                f"cannot write to the store {self.url}: {err.strerror or err}"
            ) from None


def read_many(store: Store, keys: list[str]) -> dict[str, bytes]:
    """``{key: bytes}`` of ``keys``, read as many at once as the store transfers (16 on S3, 8
    otherwise); keys gone since they were listed are left out."""
    from concurrent.futures import ThreadPoolExecutor

    workers = int(getattr(store, "max_concurrency", None) or 8)

    def one(key: str) -> tuple[str, bytes | None]:
        try:
            return key, store.get(key)
        except KeyError:
            return key, None

    if len(keys) <= 1:
        pairs = list(map(one, keys))
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(keys))) as pool:
            pairs = list(pool.map(one, keys))
    return {key: raw for key, raw in pairs if raw is not None}


def sha256_of(store: Store, key: str) -> tuple[int, str] | None:
    """(size, sha256) of the object as stored now, streamed; ``None`` when it is absent."""
    import hashlib

    h = hashlib.sha256()
    n = 0
    try:
        for chunk in store.open_read(key):
            h.update(chunk)
            n += len(chunk)
    except KeyError:
        return None
    return n, h.hexdigest()
