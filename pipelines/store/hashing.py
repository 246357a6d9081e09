"""Digests of staged files: sha256 for the manifest, and the ETag S3 will report, to verify uploads."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 8 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def digests(
    path: str | Path,
    *,
    multipart_threshold: int | None = None,
    multipart_chunk: int | None = None,
    sha256: bool = True,
) -> tuple[int, str | None, str | None]:
    """(size, sha256, expected S3 ETag) of a file in one pass.

    The ETag is computed only when ``multipart_threshold`` is given: MD5 of the content for a
    single-part upload, else MD5 of the concatenated part MD5s followed by ``-<parts>``.
    hashlib releases the GIL, so threads hash files in parallel.
    """
    sha = hashlib.sha256() if sha256 else None
    etag = (
        _EtagHasher(multipart_threshold, multipart_chunk or multipart_threshold)
        if multipart_threshold is not None
        else None
    )
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            size += len(chunk)
            if sha is not None:
                sha.update(chunk)
            if etag is not None:
                etag.update(chunk)
    return (
        size,
        sha.hexdigest() if sha is not None else None,
        etag.hexdigest(size) if etag is not None else None,
    )


class _EtagHasher:
    """The ETag S3 reports: MD5 of the content for a single-part upload, else MD5 of the
    concatenated part MD5s followed by ``-<parts>``."""

    def __init__(self, threshold: int, part_size: int) -> None:
        self.threshold, self.part_size = threshold, part_size
        self.whole = hashlib.md5(usedforsecurity=False)
        self.part = hashlib.md5(usedforsecurity=False)
        self.part_fill = 0
        self.part_md5s: list[bytes] = []

    def update(self, chunk: bytes) -> None:
        self.whole.update(chunk)
        view = memoryview(chunk)
        while view:
            take = min(len(view), self.part_size - self.part_fill)
            self.part.update(view[:take])
            self.part_fill += take
            view = view[take:]
            if self.part_fill == self.part_size:
                self.part_md5s.append(self.part.digest())
                self.part = hashlib.md5(usedforsecurity=False)
                self.part_fill = 0

    def hexdigest(self, size: int) -> str:
        if size < self.threshold:
            return self.whole.hexdigest()
        parts = self.part_md5s + ([self.part.digest()] if self.part_fill else [])
        return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"
