"""A store in a local (or network-mounted) folder.

Every write goes to a hidden temporary file in the target folder and is then moved into place,
so a reader (or a crash) never sees half a file.  The exclusive put behind the commit uses
``os.link``, which fails when the target exists: atomic on POSIX filesystems, NFS included.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipelines.store.base import (
    IntegrityError,
    ObjectInfo,
    ProgressCallback,
    Store,
    StoreError,
    UploadItem,
    check_key,
)
from pipelines.store.filemodes import file_mode, make_private_dirs

TMP_PREFIX = ".binds-tmp-"


class LocalStore(Store):
    """A store rooted at ``root`` (created on the first write)."""

    def __init__(self, root: str | Path, *, read_only: bool = False, max_workers: int = 8) -> None:
        super().__init__(read_only=read_only)
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)
        self.max_workers = max_workers

    @property
    def supports_etag_md5(self) -> bool:
        return False

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    # -- reads ---------------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None

    def open_read(self, key: str, *, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        try:
            f = open(self._path(key), "rb")
        except FileNotFoundError:
            raise KeyError(key) from None
        with f:
            while chunk := f.read(chunk_size):
                yield chunk

    def head(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ObjectInfo(key, st.st_size) if not _is_dir(st) else None

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the folder the prefix names (plus a name filter), never the whole store.
        base_dir = prefix.rpartition("/")[0]
        start = self.root / base_dir if base_dir else self.root
        if not start.is_dir():
            return iter(())
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = [
                d
                for d in dirnames
                if (rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")
            ]
            for name in filenames:
                key = rel_dir + name
                if key.startswith(prefix) and not name.startswith(TMP_PREFIX):
                    try:
                        found.append(ObjectInfo(key, os.stat(os.path.join(dirpath, name)).st_size))
                    except FileNotFoundError:  # removed while listing
                        continue
        return iter(sorted(found, key=lambda o: o.key))

    def list_dirs(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        try:
            return sorted(
                e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith(".")
            )
        except (FileNotFoundError, NotADirectoryError):
            return []

    def matches(self, item: UploadItem, info: ObjectInfo | None) -> bool:
        """Size, then the sha256 of the stored file itself (a local re-read is cheap)."""
        if info is None or info.size != item.size:
            return False
        from pipelines.store.hashing import sha256_file

        return sha256_file(self._path(item.key)) == item.sha256

    # -- writes ----------------------------------------------------------------------------
    def _tmp_for(self, path: Path) -> Path:
        make_private_dirs(path.parent)  # 0750: a restricted/ tree is not for other users
        return path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"

    def _write_tmp(self, path: Path, data: bytes) -> Path:
        tmp = self._tmp_for(path)
        with _open_private(tmp) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def put(self, key: str, data: bytes) -> None:
        self._check_writable()
        path = self._path(key)
        os.replace(self._write_tmp(path, data), path)

    def put_checked(self, key: str, data: bytes, *, sha256: str, read_back: bool = False) -> str:
        """The bytes the caller hashed are written as they are (fsynced, then renamed into
        place) and the file's size checked: reading them back right after would read the page
        cache, not the disk (the fixity sweep re-reads the disk later)."""
        self.put(key, data)
        if read_back:
            return self.check_read_back(key, len(data), sha256)
        if self._path(key).stat().st_size != len(data):
            raise IntegrityError(f"{key}: the file written is not {len(data)} bytes")
        return "written from the hashed bytes"

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._check_writable()
        path = self._path(key)
        tmp = self._write_tmp(path, data)
        try:
            os.link(tmp, path)
            _fsync_dir(path.parent)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _copy_one(self, item: UploadItem, progress: ProgressCallback | None) -> None:
        path = self._path(item.key)
        tmp = self._tmp_for(path)
        with open(item.path, "rb") as src, _open_private(tmp) as dst:
            while chunk := src.read(8 << 20):
                dst.write(chunk)
                if progress:
                    progress(len(chunk))
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, path)

    def upload_files(
        self, items: Sequence[UploadItem], *, progress: ProgressCallback | None = None
    ) -> None:
        self._check_writable()
        if not items:
            return
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            for fut in [pool.submit(self._copy_one, it, progress) for it in items]:
                fut.result()

    def delete(self, key: str) -> None:
        self._check_writable()
        self._path(key).unlink(missing_ok=True)

    def check_writable(self) -> None:
        """The folder (or, before the first publish, its nearest existing parent) accepts new
        files; leaves nothing behind (a failed run must not create the store)."""
        self._check_writable()
        base = self.root
        while not base.exists() and base != base.parent:
            base = base.parent
        if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
            raise StoreError(
                f"cannot write to the store {self.url}: {base} is not a writable folder"
            )
        try:
            fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=base)
            os.close(fd)
            os.unlink(name)
        except OSError as err:
            raise StoreError(
                f"cannot write to the store {self.url}: {err.strerror or err}"
            ) from None

    def remove_stale_temporaries(self, prefix: str) -> int:
        """Delete temporary files a killed writer left under ``prefix``; return how many."""
        self._check_writable()
        start = self.root / prefix
        if not start.is_dir():
            return 0
        n = 0
        for tmp in start.rglob(f"{TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            n += 1
        return n

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r}{', read_only=True' if self.read_only else ''})"


def _open_private(path: Path):
    """A new file opened for writing with mode 0640 (less if the umask says so)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode()), "wb")


def _is_dir(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISDIR(st.st_mode)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["TMP_PREFIX", "LocalStore"]
