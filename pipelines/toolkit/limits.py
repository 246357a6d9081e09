"""Caps on what a raw file may expand to, and the decompressed size of gzip / bzip2 files.

A compressed raw file can hold far more than its size says: a 2.3 MB ``.mzML.gz`` can inflate to
one 512 MiB spectrum, a 0.5 MB ``.map.gz`` to a 512^3 float32 map.  Readers stream such files
and stop at these caps with an input error (exit 2) instead of exhausting memory; ``binds
validate`` checks them by a streaming count that stops at the cap, so it never reads more than
the cap either.  Memory plans use the decompressed size (:func:`decompressed_size`), not a
guess from the compressed one.

Settings (environment variables; defaults in brackets, documented in docs/formats/*.md):

``BINDS_MAX_ELEMENT_MB`` [256]
    Largest single XML element of an instrument file (one mzML ``<spectrum>`` or
    ``<chromatogram>``, its base64 arrays included), in MiB.  The largest real spectra seen are
    a few MiB; one element is held in memory whole while it is decoded.
``BINDS_MAX_DECOMPRESSED_GB`` [64]
    Largest decompressed size of one compressed raw file, in GiB.
``BINDS_MAX_COMPRESSION_RATIO`` [100]
    Largest ratio of decompressed to compressed size for a compressed raw file above 1 GiB
    decompressed (instrument data compresses 2-10x; a decompression bomb 100-1000x).
"""

from __future__ import annotations

import bz2
import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import Problem

MAX_ELEMENT_ENV = "BINDS_MAX_ELEMENT_MB"
MAX_DECOMPRESSED_ENV = "BINDS_MAX_DECOMPRESSED_GB"
MAX_RATIO_ENV = "BINDS_MAX_COMPRESSION_RATIO"
DEFAULT_MAX_ELEMENT_MB = 256
DEFAULT_MAX_DECOMPRESSED_GB = 64
DEFAULT_MAX_RATIO = 100
_RATIO_FLOOR = 1 << 30  # below 1 GiB decompressed the ratio is not checked: small files are safe
_CHUNK = 1 << 20
_HINT = (
    "the file expands far beyond what an instrument writes (a damaged or hostile file?); if it "
    "is genuine, an operator can raise {env}"
)


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def max_element_bytes() -> int:
    return int(_env_number(MAX_ELEMENT_ENV, DEFAULT_MAX_ELEMENT_MB) * 2**20)


def max_decompressed_bytes(compressed_size: int) -> int:
    """The cap on the decompressed size of a compressed file of ``compressed_size`` bytes."""
    absolute = int(_env_number(MAX_DECOMPRESSED_ENV, DEFAULT_MAX_DECOMPRESSED_GB) * 2**30)
    ratio = _env_number(MAX_RATIO_ENV, DEFAULT_MAX_RATIO)
    return min(absolute, max(_RATIO_FLOOR, int(ratio * compressed_size)))


def element_too_large(what: str, *, file: str, where: str) -> Problem:
    cap = max_element_bytes()
    return Problem(
        f"one {what} is larger than {cap // 2**20} MiB",
        file=file,
        where=where,
        hint=_HINT.format(env=f"{MAX_ELEMENT_ENV} (MiB)"),
    )


def decompressed_too_large(*, file: str, compressed_size: int) -> Problem:
    cap = max_decompressed_bytes(compressed_size)
    return Problem(
        f"decompresses to more than {cap / 2**30:.3g} GiB "
        f"({compressed_size / 2**20:.3g} MiB compressed)",
        file=file,
        hint=_HINT.format(env=f"{MAX_DECOMPRESSED_ENV} / {MAX_RATIO_ENV}"),
    )


def compression_of(path: Path) -> str | None:
    """``gzip`` / ``bzip2`` by the file's magic bytes (not its name), else None."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(3)
    except OSError:
        return None
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"BZh":
        return "bzip2"
    return None


def gzip_isize(path: Path) -> int | None:
    """The gzip trailer's ISIZE: the decompressed size mod 2^32 of the LAST member (a hint only:
    wrong above 4 GiB and for multi-member files, and written by whoever made the file)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            return int(struct.unpack("<I", fh.read(4))[0])
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Expansion:
    """What a streaming count found: bytes out (up to the cap) and whether the cap was hit."""

    size: int
    over_cap: bool


def decompressed_size(path: str | Path, *, cap: int | None = None) -> Expansion:
    """Decompressed size of a gzip / bzip2 file by a streaming count (memory: one chunk), stopped
    as soon as it passes ``cap`` (default :func:`max_decompressed_bytes`).  Uncompressed files:
    their size.  A damaged stream counts what it could inflate (the reader reports the damage)."""
    path = Path(path)
    kind = compression_of(path)
    size = path.stat().st_size
    if kind is None:
        return Expansion(size, False)
    limit = max_decompressed_bytes(size) if cap is None else cap
    opener = gzip.open if kind == "gzip" else bz2.open
    total = 0
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    return Expansion(total, True)
    except (OSError, EOFError, zlib.error, ValueError):
        pass
    return Expansion(total, False)
