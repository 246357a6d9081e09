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


def digests(path: str | Path, *, multipart_threshold: int | None = None,
            multipart_chunk: int | None = None, sha256: bool = True) -> tuple[int, str | None, str | None]:
    """(size, sha256, expected S3 ETag) of a file in one pass.

    The ETag is computed only when ``multipart_threshold`` is given: MD5 of the content for a
    single-part upload, else MD5 of the concatenated part MD5s followed by ``-<parts>``.
    hashlib releases the GIL, so threads hash files in parallel.
    """
    sha = hashlib.sha256() if sha256 else None
    want_etag = multipart_threshold is not None
    md5_whole = hashlib.md5(usedforsecurity=False) if want_etag else None
    part_md5s: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False) if want_etag else None
    part_fill = 0
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            size += len(chunk)
            if sha is not None:
                sha.update(chunk)
            if want_etag:
                md5_whole.update(chunk)
                view = memoryview(chunk)
                while view:
                    take = min(len(view), multipart_chunk - part_fill)
                    part.update(view[:take])
                    part_fill += take
                    view = view[take:]
                    if part_fill == multipart_chunk:
                        part_md5s.append(part.digest())
                        part = hashlib.md5(usedforsecurity=False)
                        part_fill = 0
    etag = None
    if want_etag:
        if size < multipart_threshold:
            etag = md5_whole.hexdigest()
        else:
            if part_fill:
                part_md5s.append(part.digest())
            etag = f"{hashlib.md5(b''.join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"
    return size, sha.hexdigest() if sha is not None else None, etag
