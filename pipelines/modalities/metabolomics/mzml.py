"""A streaming mzML reader: spectra and chromatograms in file order, memory bounded by chunk size.

pymzml is the reference reader (the tests compare every array of every real file with it); this
module exists because the conversion is bound by parsing speed: it scans the raw bytes with
``bytes.find`` and a few compiled regexes, decodes base64 with :mod:`pybase64` (SIMD), inflates
with libdeflate (:mod:`deflate`; :mod:`zlib` where the output size is not known, and for the
exact error message when an array is damaged) and views the result with
:func:`numpy.frombuffer`.  On large files, worker processes parse and decode batches of spectra
while the main process cuts the next batches from the XML, and a read-ahead thread reads,
hashes and gunzips the file meanwhile.

What it reads: plain, gzip and pymzml's indexed gzip (``.idx.gz``: any gzip reader inflates
it), ``<indexedmzML>`` or bare ``<mzML>`` (the offset index is not needed for a sequential
pass), 32/64-bit float and int arrays, zlib / no compression / MS-Numpress (linear, pic, slof,
each optionally zlib'ed), profile and centroid, MS1..MSn, scan start time in seconds, minutes or
milliseconds (normalised to seconds), referenceableParamGroupRef inside spectra, files without
spectra (chromatograms only).

Every problem with the file is an :class:`~pipelines.errors.InputError` naming the file, the
spectrum index (or byte offset) and what to do.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import multiprocessing
import queue
import re
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import deflate
import numpy as np
import pybase64

from pipelines.errors import InputError, Problem, RunError
from pipelines.toolkit import limits

# --------------------------------------------------------------------------- PSI-MS accessions
MS_LEVEL = b"MS:1000511"
MS1_SPECTRUM = b"MS:1000579"
CENTROID = b"MS:1000127"
PROFILE = b"MS:1000128"
POSITIVE = b"MS:1000130"
NEGATIVE = b"MS:1000129"
SCAN_START_TIME = b"MS:1000016"
TIC = b"MS:1000285"
BASE_PEAK_MZ = b"MS:1000504"
BASE_PEAK_INTENSITY = b"MS:1000505"
ISO_TARGET = b"MS:1000827"
ISO_LOWER = b"MS:1000828"
ISO_UPPER = b"MS:1000829"
SELECTED_ION_MZ = b"MS:1000744"
CHARGE_STATE = b"MS:1000041"
PEAK_INTENSITY = b"MS:1000042"
COLLISION_ENERGY = b"MS:1000045"

MZ_ARRAY = "MS:1000514"
INTENSITY_ARRAY = "MS:1000515"
TIME_ARRAY = "MS:1000595"

# data types and compressions of binaryDataArray
_DTYPES = {
    "MS:1000521": np.dtype("<f4"),
    "MS:1000523": np.dtype("<f8"),
    "MS:1000519": np.dtype("<i4"),
    "MS:1000522": np.dtype("<i8"),
}
ZLIB = "MS:1000574"
NO_COMPRESSION = "MS:1000576"
# numpress accession -> (algorithm, zlib applied after numpress)
_NUMPRESS = {
    "MS:1002312": ("linear", False),
    "MS:1002313": ("pic", False),
    "MS:1002314": ("slof", False),
    "MS:1002746": ("linear", True),
    "MS:1002747": ("pic", True),
    "MS:1002748": ("slof", True),
}
_COMPRESSIONS = {ZLIB, NO_COMPRESSION, *_NUMPRESS}

# unit of the scan start time -> factor to seconds (UO and the old MS unit terms)
_TIME_UNITS = {
    b"UO:0000010": 1.0,
    b"UO:0000031": 60.0,
    b"UO:0000028": 1e-3,
    b"MS:1000038": 60.0,
    b"second": 1.0,
    b"minute": 60.0,
    b"millisecond": 1e-3,
}

# chromatogram types worth naming (the rest keep their accession)
CHROMATOGRAM_TYPES = {
    "MS:1000235": "TIC",
    "MS:1000628": "BPC",
    "MS:1001473": "SRM",
    "MS:1000627": "SIC",
    "MS:1000810": "ion current",
    "MS:1000812": "absorption",
    "MS:1000813": "emission",
}

# the cvParams a spectrum's metadata is read from, one regex pass per spectrum (value and unit
# attributes may come before or after the accession, so both sides are captured)
_SPECTRUM_TERMS = [
    MS_LEVEL,
    MS1_SPECTRUM,
    CENTROID,
    PROFILE,
    POSITIVE,
    NEGATIVE,
    SCAN_START_TIME,
    TIC,
    BASE_PEAK_MZ,
    BASE_PEAK_INTENSITY,
    ISO_TARGET,
    ISO_LOWER,
    ISO_UPPER,
    SELECTED_ION_MZ,
    CHARGE_STATE,
    PEAK_INTENSITY,
    COLLISION_ENERGY,
]
_TERM_RE = re.compile(
    rb'<cvParam\b([^>]*?)accession="(' + b"|".join(_SPECTRUM_TERMS) + rb')"([^>]*)>'
)
_ACCESSION_RE = re.compile(rb'accession="([^"]+)"')
_VALUE_RE = re.compile(rb'\bvalue="([^"]*)"')
_UNIT_RE = re.compile(rb'\bunitAccession="([^"]*)"')
_UNIT_NAME_RE = re.compile(rb'\bunitName="([^"]*)"')
_GROUP_REF_RE = re.compile(rb'<referenceableParamGroupRef\b[^>]*?ref="([^"]+)"[^>]*/>')
_GROUP_RE = re.compile(
    rb'<referenceableParamGroup\b[^>]*?id="([^"]+)"[^>]*>(.*?)</referenceableParamGroup>', re.S
)

READ_BLOCK = 4 << 20  # bytes read from disk at a time
BATCH_BYTES = 8 << 20  # raw XML per decode batch: bounds memory, amortises thread hand-off
_READ_AHEAD = 2  # blocks read ahead of the parser (see _Source.start_read_ahead)
MAX_HEADER = 64 << 20  # an mzML header larger than this is not an mzML header
_MAX_BUFSIZE = 64 << 20  # inflate output allocated up front at most this (see _inflate)


@dataclass(slots=True)
class Spectrum:
    """One spectrum; arrays are float64 m/z and float32 intensity (as stored in Parquet)."""

    index: int
    native_id: str
    ms_level: int
    rt_s: float | None
    polarity: str | None
    centroided: bool | None
    mz: np.ndarray
    intensity: np.ndarray
    tic: float | None = None
    base_peak_mz: float | None = None
    base_peak_intensity: float | None = None
    precursor_mz: float | None = None
    precursor_charge: int | None = None
    precursor_intensity: float | None = None
    isolation_window_target_mz: float | None = None
    isolation_window_lower_offset: float | None = None
    isolation_window_upper_offset: float | None = None
    collision_energy: float | None = None


@dataclass(slots=True)
class Chromatogram:
    """One chromatogram of the file: time in seconds, intensity float32."""

    index: int
    native_id: str
    kind: str
    accession: str | None
    time_s: np.ndarray
    intensity: np.ndarray
    precursor_mz: float | None = None
    product_mz: float | None = None


@dataclass(slots=True)
class RunInfo:
    """Run-level metadata from the mzML header (filled while reading; complete at the end)."""

    run_id: str | None = None
    start_time: str | None = None
    instrument_models: list[dict[str, str]] = field(default_factory=list)
    instrument_serial: str | None = None
    software: list[dict[str, str]] = field(default_factory=list)
    source_files: list[dict[str, str]] = field(default_factory=list)
    spectrum_count_declared: int | None = None
    indexed: bool = False
    compression: str = "none"  # of the file itself: none | gzip
    sha256: str | None = None  # of the file as stored on disk, set when fully read
    size_bytes: int = 0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- raw bytes
class _Source:
    """The file's (decompressed) XML as a sequence of blocks, hashing the stored bytes as it goes."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        self._raw: BinaryIO = open(path, "rb")
        self._hash = hashlib.sha256()
        magic = self._raw.read(2)
        self._raw.seek(0)
        self.gzipped = magic == b"\x1f\x8b"
        self._stream: BinaryIO = _HashingReader(self._raw, self._hash)
        if self.gzipped:
            self._stream = gzip.GzipFile(fileobj=self._stream, mode="rb")  # type: ignore[assignment]
        self.size = path.stat().st_size
        # a gzip file stops inflating at the cap (a 2 MB file can hold GiBs of one spectrum)
        self._cap = limits.max_decompressed_bytes(self.size) if self.gzipped else 0
        self._out = 0
        self._error: InputError | None = None
        self._queue: queue.Queue[bytes | BaseException] | None = None
        self._thread: threading.Thread | None = None
        self._stop = False
        self._last: bytes | BaseException | None = None

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of XML; b"" at the end.

        A broken gzip stream is reported only after the bytes before the damage were handed
        out, so the error can name the last intact spectrum.
        """
        if self._error is not None:
            raise self._error
        if not self.gzipped:
            return self._stream.read(n)
        parts: list[bytes] = []
        got = 0
        while got < n:
            try:
                chunk = self._stream.read1(n - got)  # type: ignore[attr-defined]
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
                self._error = InputError(
                    Problem(
                        f"the gzip stream is broken: {err}",
                        file=self.name,
                        hint="the file was cut short or damaged in transfer; copy it again from the instrument PC",
                    )
                )
                if parts:
                    break
                raise self._error from None
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
            self._out += len(chunk)
            if self._out > self._cap:
                self._error = InputError(
                    limits.decompressed_too_large(file=self.name, compressed_size=self.size)
                )
                raise self._error
        return b"".join(parts)

    def start_read_ahead(self) -> None:
        """From now on, a thread reads, hashes (and gunzips) the next blocks while the caller parses.

        sha256, gzip inflation and the file read all release the GIL, so on a second core they
        cost the parsing thread nothing.  At most ``_READ_AHEAD`` blocks wait in the queue, so
        memory stays bounded by the block size.
        """
        if self._queue is not None:
            return
        self._queue = queue.Queue(maxsize=_READ_AHEAD)
        self._thread = threading.Thread(target=self._read_ahead, name="mzml-read", daemon=True)
        self._thread.start()

    def _read_ahead(self) -> None:
        assert self._queue is not None
        while not self._stop:
            try:
                block: bytes | BaseException = self.read(READ_BLOCK)
            except BaseException as err:  # handed to the consumer, which raises it
                block = err
            self._queue.put(block)
            if not isinstance(block, bytes) or not block:
                return

    def block(self) -> bytes:
        """The next ``READ_BLOCK`` bytes of XML (b"" at the end), from the read-ahead thread if started."""
        if self._queue is None:
            return self.read(READ_BLOCK)
        if self._last is None:
            item = self._queue.get()
            if isinstance(item, bytes) and item:
                return item
            self._last = item  # the end or an error: every later call gets the same
        if isinstance(self._last, BaseException):
            raise self._last
        return b""

    def _stop_read_ahead(self) -> None:
        if self._thread is None:
            return
        self._stop = True
        while self._thread.is_alive():
            try:  # unblock a put() waiting on a full queue
                self._queue.get(timeout=0.05)  # type: ignore[union-attr]
            except queue.Empty:
                pass
        self._thread.join()
        self._thread = None

    def digest(self) -> str:
        self._stop_read_ahead()
        # drain anything gzip left unread (trailer) so the digest covers the whole stored file
        while self._raw.read(1 << 20):
            pass
        return self._hash.hexdigest()

    def close(self) -> None:
        self._stop_read_ahead()  # never close the file under the reading thread
        self._raw.close()


class _HashingReader:
    """File wrapper that feeds every byte read into a hash (the source file's sha256)."""

    def __init__(self, raw: BinaryIO, h: hashlib._Hash):
        self._raw, self._h = raw, h

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._h.update(data)
        return data

    def readable(self) -> bool:
        return True

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


class _ElementSplitter:
    """Cut the XML into ``<spectrum>`` / ``<chromatogram>`` elements without parsing the rest.

    Elements of one list follow each other with only whitespace between; after the last
    ``</spectrum>`` comes ``</spectrumList>``.  So each element costs two ``find`` calls on a
    bounded buffer, whatever the file size.
    """

    def __init__(self, src: _Source):
        self.src = src
        self.buf = b""
        self.pos = 0
        self.offset = 0  # file offset (of the XML) of buf[0]
        self.eof = False
        self.max_element = limits.max_element_bytes()

    def _more(self) -> bool:
        if self.eof:
            return False
        block = self.src.block()
        if not block:
            self.eof = True
            return False
        # drop what was consumed so the buffer stays at most one element + one block
        self.offset += self.pos
        self.buf = self.buf[self.pos :] + block
        self.pos = 0
        return True

    def find(self, needle: bytes, *, limit: int | None = None) -> int:
        """Buffer position of ``needle`` from ``pos``, reading more as needed; -1 if absent."""
        start = self.pos
        while True:
            i = self.buf.find(needle, start)
            if i >= 0:
                return i
            if limit is not None and len(self.buf) - self.pos > limit:
                return -1
            # resume just before the end: the needle may straddle two blocks
            resume = max(self.pos, len(self.buf) - len(needle))
            base = self.pos
            if not self._more():
                return -1
            start = resume - base

    def header(self) -> tuple[bytes, bytes | None]:
        """The bytes before the first spectrum or chromatogram list, and which list comes first."""
        while True:
            s = self.buf.find(b"<spectrumList")
            c = self.buf.find(b"<chromatogramList")
            hits = [i for i in (s, c) if i >= 0]
            if hits:
                first = min(hits)
                return self.buf[:first], (b"spectrum" if first == s else b"chromatogram")
            if len(self.buf) > MAX_HEADER or not self._more():
                return self.buf, None

    def elements(self, tag: bytes) -> Iterator[tuple[int, bytes]]:
        """(XML offset, element bytes) of each ``<tag ...>...</tag>`` in the next ``<tagList>``."""
        self.src.start_read_ahead()  # the header is read; the bulk of the file follows
        open_list = b"<" + tag + b"List"
        i = self.find(open_list)
        if i < 0:
            return
        self.pos = i
        j = self.find(b">", limit=1 << 16)
        if j < 0:
            return
        self.pos = j + 1
        if self.buf[j - 1 : j] == b"/":  # <spectrumList count="0"/>
            return
        opener, closer = b"<" + tag, b"</" + tag + b">"
        list_closer = b"</" + tag + b"List"
        while True:
            # only whitespace separates consecutive elements
            while True:
                k, n = self.pos, len(self.buf)
                while k < n and self.buf[k] in _WHITESPACE:
                    k += 1
                self.pos = k
                if n - k > len(list_closer) or not self._more():
                    break
            nxt = self.buf[self.pos : self.pos + len(opener) + 1]
            if not (nxt[:-1] == opener and nxt[-1:] in (b" ", b"\t", b"\n", b"\r")):
                if self.pos >= len(self.buf):
                    raise _Truncated(self.offset + self.pos, b"")
                if self.buf.startswith(list_closer, self.pos):
                    return
                if self.buf.startswith(b"<!--", self.pos):
                    # an XML comment between elements: skip it, never end the list early
                    k = self.find(b"-->")
                    if k < 0:
                        raise _Truncated(self.offset + self.pos, b"")
                    self.pos = k + 3
                    continue
                raise _Unexpected(self.offset + self.pos, self.buf[self.pos : self.pos + 60])
            start = self.pos
            end = _find_closer(self.buf, closer, start)
            if end < 0:
                start, end = self._rest_of_element(start, closer)
            stop = end + len(closer)
            yield self.offset + start, self.buf[start:stop]
            self.pos = stop

    def _rest_of_element(self, start: int, closer: bytes) -> tuple[int, int]:
        """Read blocks until ``closer`` ends the element begun at ``buf[start]``; returns its
        (start, closer position) in the new buffer, which begins with the element.

        Blocks are gathered in a list and joined once (growing the buffer block by block
        copied it each time: quadratic on a large element), and never past the element cap:
        one element is held whole while it is decoded."""
        head = self.buf[start:]
        parts, total = [head], len(head)
        tail = head[-len(closer) :]
        while True:
            block = self.src.block()
            if not block:
                self.eof = True
                raise _Truncated(self.offset + start, head[:300])
            probe = tail + block  # the closer may straddle two blocks
            k = _find_closer(probe, closer, 0)
            parts.append(block)
            if k >= 0:
                end = total - len(tail) + k
                break
            total += len(block)
            if total > self.max_element:
                raise _TooLarge(self.offset + start, head[:300])
            tail = probe[-len(closer) :]
        self.offset += start
        self.buf = b"".join(parts)
        self.pos = 0
        return 0, end


_WHITESPACE = b" \t\r\n"
_SCAN = 16384  # bytes searched for an element's closing tag in one go (most spectra are shorter)


def _find_closer(buf: bytes, closer: bytes, start: int) -> int:
    """Position of ``closer`` (a closing tag) in ``buf`` from ``start``; -1 if not there.

    A large spectrum is mostly base64, which holds no ``<``: past the first ``_SCAN`` bytes,
    hopping from ``<`` to ``<`` (memchr) crosses it several times faster than a substring
    search, which held the GIL for ~15 % of a large-spectra conversion.
    """
    end = buf.find(closer, start, start + _SCAN)
    if end >= 0:
        return end
    k = max(start, start + _SCAN - len(closer) + 1)
    while (k := buf.find(b"<", k)) >= 0:
        if buf.startswith(closer, k):
            return k
        k += 1
    return -1


class _Truncated(Exception):
    def __init__(self, offset: int, head: bytes):
        self.offset, self.head = offset, head


class _TooLarge(_Truncated):
    """An element longer than the cap (:func:`pipelines.toolkit.limits.max_element_bytes`)."""


class _Unexpected(Exception):
    def __init__(self, offset: int, text: bytes):
        self.offset, self.text = offset, text


# --------------------------------------------------------------------------- parsing helpers
def _attr(tag: bytes, name: bytes) -> str | None:
    i = tag.find(b" " + name + b'="')
    if i < 0:
        i = tag.find(b"\t" + name + b'="')
        if i < 0:
            i = tag.find(b"\n" + name + b'="')
            if i < 0:
                return None
    i += len(name) + 3
    return _unescape(tag[i : tag.find(b'"', i)])


def _unescape(b: bytes) -> str:
    s = b.decode("utf-8", "replace")
    if "&" in s:
        s = (
            s.replace("&quot;", '"')
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
        )
    return s


def _float(b: bytes | None) -> float | None:
    if not b:
        return None
    try:
        return float(b)
    except ValueError:
        return None


def parse_param_groups(header: bytes) -> dict[bytes, bytes]:
    """referenceableParamGroup id -> its cvParam XML (spliced in where a spectrum refers to it)."""
    return {m.group(1): m.group(2) for m in _GROUP_RE.finditer(header)}


def _expand_groups(xml: bytes, groups: dict[bytes, bytes]) -> bytes:
    if b"referenceableParamGroupRef" not in xml:
        return xml
    return _GROUP_REF_RE.sub(lambda m: groups.get(m.group(1), b""), xml)


def parse_run_info(header: bytes, groups: dict[bytes, bytes], info: RunInfo) -> None:
    """Fill ``info`` from the mzML header: instrument model, software, source files, run id."""
    info.indexed = b"<indexedmzML" in header[:4096]
    if m := re.search(rb"<run\b[^>]*>", header):
        info.run_id = _attr(m.group(0), b"id")
        info.start_time = _attr(m.group(0), b"startTimeStamp")
    for m in re.finditer(
        rb"<instrumentConfiguration\b[^>]*>(.*?)</instrumentConfiguration>", header, re.S
    ):
        body = _expand_groups(m.group(1), groups)
        body = re.sub(rb"<componentList\b.*?</componentList>", b"", body, flags=re.S)
        for p in re.finditer(rb"<cvParam\b[^>]*>", body):
            acc, name = _attr(p.group(0), b"accession"), _attr(p.group(0), b"name")
            if acc == "MS:1000529":
                info.instrument_serial = _attr(p.group(0), b"value")
            elif acc and acc.startswith("MS:") and name:
                model = {"accession": acc, "name": name}
                if model not in info.instrument_models:
                    info.instrument_models.append(model)
    for m in re.finditer(rb"<software\b[^>]*>(.*?)</software>", header, re.S):
        tag = header[m.start() : header.find(b">", m.start()) + 1]
        p = re.search(rb"<cvParam\b[^>]*>", m.group(1))
        name = (_attr(p.group(0), b"name") if p else None) or _attr(tag, b"id") or ""
        if p and _attr(p.group(0), b"value"):
            name = _attr(p.group(0), b"value") or name
        info.software.append(
            {
                "id": _attr(tag, b"id") or "",
                "name": name,
                "version": _attr(tag, b"version") or "",
                "accession": (_attr(p.group(0), b"accession") if p else None) or "",
            }
        )
    for m in re.finditer(
        rb"<sourceFile\b[^>]*>(.*?)</sourceFile>|<sourceFile\b[^>]*/>", header, re.S
    ):
        tag = header[m.start() : header.find(b">", m.start()) + 1]
        sf = {"name": _attr(tag, b"name") or "", "location": _attr(tag, b"location") or ""}
        body = m.group(1) or b""
        for p in re.finditer(rb"<cvParam\b[^>]*>", body):
            if _attr(p.group(0), b"accession") == "MS:1000569":
                sf["sha1"] = _attr(p.group(0), b"value") or ""
        info.source_files.append(sf)


class _BadArray(Exception):
    def __init__(self, message: str, hint: str):
        self.message, self.hint = message, hint


def _decode_array(
    text: bytes | memoryview, dtype: np.dtype, compression: str, length: int
) -> np.ndarray:
    """base64 -> (zlib) -> (numpress) -> numbers; checks the count against the declared length."""
    try:
        # strict first: one SIMD pass; text with line breaks (some writers wrap base64) or
        # damage falls back to binascii, which skips whitespace as every mzML reader does
        raw = pybase64.b64decode(text, validate=True)
    except binascii.Error:
        try:
            raw = binascii.a2b_base64(text)
        except binascii.Error as err:
            _raise_base64_detail(text)  # names the first invalid character, if there is one
            raise _BadArray(
                f"invalid base64 ({err})", "the binary data is damaged; re-export the mzML"
            ) from None
    if compression == ZLIB or _NUMPRESS.get(compression, ("", False))[1]:
        raw = _inflate(
            raw, min(length * dtype.itemsize, _MAX_BUFSIZE) if compression == ZLIB else 0
        )
    if compression in _NUMPRESS:
        values = decode_numpress(raw, _NUMPRESS[compression][0])
    else:
        if len(raw) % dtype.itemsize:
            _raise_base64_detail(text)
            raise _BadArray(
                f"{len(raw)} bytes is not a whole number of {dtype.itemsize * 8}-bit values",
                "the binary data is damaged or its data type cvParam is wrong",
            )
        values = np.frombuffer(raw, dtype=dtype)
    if len(values) != length:
        _raise_base64_detail(text)
        raise _BadArray(
            f"array holds {len(values)} values but defaultArrayLength says {length}",
            "the file is inconsistent; re-convert it (msconvert / ThermoRawFileParser)",
        )
    return values


def _inflate(raw: bytes, expected_size: int) -> bytes:
    """zlib stream -> bytes.  ``expected_size``: the declared array size in bytes (0: unknown).

    With the size known, libdeflate inflates in one call, ~1.8x faster than zlib.  Anything it
    refuses (an array longer than declared, damage) goes through zlib, whose message is the one
    the user sees, and whose output then meets the length check.
    """
    if expected_size:
        try:
            return deflate.zlib_decompress(raw, expected_size)
        except deflate.DeflateError:
            pass
    # With the declared size as the first output block, zlib inflates in one piece: one GIL
    # release per array (by default CPython inflates into 16 KiB and growing blocks, taking the
    # GIL back after each, so a decoder thread could wait up to the 5 ms switch interval per
    # block).  Capped by the caller so a damaged length cannot allocate much; numpress output
    # size is not known ahead (zlib then grows it).
    try:
        return zlib.decompress(raw, 15, max(expected_size, 16384))
    except zlib.error as err:
        raise _BadArray(
            f"zlib data cannot be inflated ({err})",
            "the binary data is damaged or its compression cvParam is wrong; re-export the mzML",
        ) from None


def _raise_base64_detail(text: bytes | memoryview) -> None:
    """binascii silently skips invalid characters; when the count is off, say if that is why."""
    compact = re.sub(rb"\s+", b"", bytes(text))
    try:
        binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error as err:
        bad = re.search(rb"[^A-Za-z0-9+/=]", compact)
        what = (
            f": {bad.group(0).decode('latin-1')!r} at character {bad.start()}"
            if bad
            else f" ({err})"
        )
        raise _BadArray(
            f"invalid base64{what}", "the binary data is damaged; re-export the mzML"
        ) from None


def decode_numpress(raw: bytes, algorithm: str) -> np.ndarray:
    """MS-Numpress ``linear`` / ``pic`` / ``slof`` bytes -> float64, exactly as pyopenms decodes
    them (:mod:`.numpress`)."""
    from .numpress import DECODERS, NumpressError

    try:
        return DECODERS[algorithm](raw)
    except NumpressError as err:
        raise _BadArray(
            f"MS-Numpress {algorithm} data cannot be decoded ({err})",
            "the binary data is damaged; re-export the mzML",
        ) from None


# classification of a binaryDataArray's accessions (bytes keys: no decoding per array)
_KIND_B = {
    MZ_ARRAY.encode(): MZ_ARRAY,
    INTENSITY_ARRAY.encode(): INTENSITY_ARRAY,
    TIME_ARRAY.encode(): TIME_ARRAY,
}
_DTYPES_B = {k.encode(): v for k, v in _DTYPES.items()}
_COMPRESSIONS_B = {k.encode(): k for k in _COMPRESSIONS}
_NUMPRESS_B = {k.encode(): k for k in _NUMPRESS}
# numpress algorithm -> the accession of it followed by zlib
_NUMPRESS_ZLIB = {alg: acc for acc, (alg, zlibbed) in _NUMPRESS.items() if zlibbed}


def _classify(params: bytes) -> tuple[str | None, np.dtype | None, str | None, bytes | None]:
    """(array kind, data type, compression, unit) of a binaryDataArray's cvParams."""
    kind = dtype = comp = numpress = None
    for acc in _ACCESSION_RE.findall(params):
        if acc in _KIND_B:
            kind = _KIND_B[acc]
        elif acc in _DTYPES_B:
            dtype = _DTYPES_B[acc]
        elif acc in _NUMPRESS_B:
            numpress = _NUMPRESS_B[acc]
        elif acc in _COMPRESSIONS_B:
            comp = _COMPRESSIONS_B[acc]
    if numpress is not None:
        # ProteoWizard (and mzML 1.1.0 files before the combined terms) write numpress as its
        # own cvParam next to "zlib compression" or "no compression", in either order: the two
        # together are one encoding, numpress then (maybe) zlib, never a plain float array
        if comp == ZLIB and not _NUMPRESS[numpress][1]:
            numpress = _NUMPRESS_ZLIB[_NUMPRESS[numpress][0]]
        comp = numpress
    unit = None
    if kind == TIME_ARRAY:
        m = _UNIT_RE.search(params) or _UNIT_NAME_RE.search(params)
        unit = m.group(1) if m is not None else None
    return kind, dtype, comp, unit


# The cvParams of a binaryDataArray repeat verbatim from spectrum to spectrum (only the opening
# tag's encodedLength changes), so their classification is looked up instead of re-parsed: this
# halves the per-array cost on files of many small spectra.  Only self-contained params are
# cached (a referenceableParamGroupRef means different things in different files); the cache is
# cleared when it grows, so a file whose params vary cannot make it hold much.
_CLASSIFIED: dict[bytes, tuple[str | None, np.dtype | None, str | None, bytes | None]] = {}
_CLASSIFIED_MAX = 256


def _arrays(
    el: bytes,
    start: int,
    default_length: int,
    want: tuple[str, ...],
    groups: dict[bytes, bytes] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    """Decode the binaryDataArrays of one element; returns {array accession: values}, {acc: unit}."""
    out: dict[str, np.ndarray] = {}
    units: dict[str, bytes] = {}
    pos = start
    n_seen = 0
    while True:
        a = el.find(b"<binaryDataArray", pos)
        if a < 0:
            break
        if el[a + 16 : a + 20] == b"List":
            pos = a + 20
            continue
        tag_end = el.find(b">", a)
        b = el.find(b"<binary>", a)
        e = -1
        if b >= 0:
            # base64 holds no '<': memchr for it runs ~8x faster than searching "</binary>",
            # and on large spectra this scan covers most of the file
            e = el.find(b"<", b + 8)
            if e >= 0 and not el.startswith(b"</binary>", e):
                e = el.find(b"</binary>", e)
        if b < 0 or e < 0:
            b = el.find(b"<binary/>", a)
            if b < 0:
                raise _BadArray(
                    f"binaryDataArray #{n_seen} has no <binary> element",
                    "the file is damaged or not valid mzML",
                )
            e = b  # empty array written as <binary/>
        n_seen += 1
        body = el[tag_end + 1 : b] if 0 <= tag_end < b else el[a:b]
        if b"referenceableParamGroupRef" in body:
            # array type / precision / compression by reference
            kind, dtype, comp, unit = _classify(_expand_groups(body, groups) if groups else body)
        else:
            found = _CLASSIFIED.get(body)
            if found is None:
                found = _classify(body)
                if len(_CLASSIFIED) >= _CLASSIFIED_MAX:
                    _CLASSIFIED.clear()
                _CLASSIFIED[body] = found
            kind, dtype, comp, unit = found
        if kind is None:
            if dtype is None and comp is None:
                raise _BadArray(
                    f"binaryDataArray #{n_seen - 1} has no array type cvParam "
                    f"(m/z array {MZ_ARRAY}, intensity array {INTENSITY_ARRAY}, ...)",
                    "the file lacks required cvParams; re-convert it with msconvert",
                )
            pos = e + 9
            continue  # another array (noise, charge...): not part of the output
        if kind not in want:
            pos = e + 9
            continue
        if dtype is None and comp not in _NUMPRESS:
            raise _BadArray(
                f"{_ARRAY_NAMES[kind]} has no data type cvParam (32-bit float MS:1000521 / "
                "64-bit float MS:1000523)",
                "the file lacks required cvParams; re-convert it",
            )
        if comp is None:
            raise _BadArray(
                f"{_ARRAY_NAMES[kind]} has no compression cvParam (zlib MS:1000574 / "
                "no compression MS:1000576)",
                "the file lacks required cvParams; re-convert it",
            )
        length = default_length
        if el.find(b"arrayLength", a, tag_end) >= 0:  # optional per-array override
            length = int(_attr(el[a : tag_end + 1], b"arrayLength") or default_length)
        if unit is not None:
            units[kind] = unit
        # a view, not a copy: binascii reads any buffer, and large spectra are mostly base64
        text = memoryview(el)[b + 8 : e] if b != e else b""
        try:
            out[kind] = _decode_array(text, dtype or np.dtype("<f8"), comp, length)
        except _BadArray as bad:
            raise _BadArray(f"{_ARRAY_NAMES[kind]}: {bad.message}", bad.hint) from None
        pos = e + 9
    return out, units


_ARRAY_NAMES = {MZ_ARRAY: "m/z array", INTENSITY_ARRAY: "intensity array", TIME_ARRAY: "time array"}


# Fast paths: every writer seen (ProteoWizard, OpenMS, psims, ThermoRawFileParser) puts
# accession, name and value in this order; one findall then reads all cvParams of a spectrum.
# The strict form (cvRef first, single spaces: ProteoWizard and ThermoRawFileParser) is matched
# without backtracking and costs ~2/3 of the looser one; a file it does not fit falls through to
# the looser one, then to the per-term regex.  A pattern is trusted only when it matched every
# cvParam of the spectrum, so each fast path gives exactly what the robust path would.
_STRICT_CV_RE = re.compile(
    rb'<cvParam cvRef="[^"]*" accession="([^"]+)" name="[^"]*"(?: value="([^"]*)")?'
)
_FAST_CV_RE = re.compile(
    rb'<cvParam [^>]*?accession="([^"]+)"\s+name="[^"]*"(?:\s+value="([^"]*)")?'
)


def _spectrum_terms(meta: bytes) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """(accession -> value, accession -> unit) of a spectrum's cvParams; the first occurrence wins."""
    n_params = meta.count(b"<cvParam")
    found = _STRICT_CV_RE.findall(meta)
    if len(found) != n_params:
        found = _FAST_CV_RE.findall(meta)
    if len(found) == n_params:
        values = dict(found[::-1])  # reversed: the first occurrence wins
    else:
        # some attribute order the fast path does not know: read each wanted cvParam robustly
        values = {}
        for before, acc, after in _TERM_RE.findall(meta):
            if acc not in values:
                m = _VALUE_RE.search(after) or _VALUE_RE.search(before)
                values[acc] = m.group(1) if m else b""
    units: dict[bytes, bytes] = {}
    if SCAN_START_TIME in values:
        start = meta.find(b'accession="MS:1000016"')
        tag_start = meta.rfind(b"<cvParam", 0, start)
        tag = meta[tag_start : meta.find(b">", start) + 1]
        m = _UNIT_RE.search(tag) or _UNIT_NAME_RE.search(tag)
        if m:
            units[SCAN_START_TIME] = m.group(1)
    return values, units


# The opening tag as ProteoWizard (index first) and OpenMS (id first) write it: one match instead
# of three attribute look-ups.  An id with an entity (&quot; ...) or any other attribute order
# goes through _attr, which unescapes.
_SPECTRUM_TAG_RE = re.compile(
    rb'<spectrum (?:index="(?P<i>\d+)" id="(?P<id>[^"&]*)"|id="(?P<id2>[^"&]*)" index="(?P<i2>\d+)")'
    rb' defaultArrayLength="(?P<n>\d+)"[ >/\t\r\n]'
)


def _spectrum_identity(el: bytes, tag_end: int) -> tuple[int, str, int | None]:
    """(index, native id, defaultArrayLength or None) from the ``<spectrum ...>`` tag."""
    m = _SPECTRUM_TAG_RE.match(el)
    if m is not None:
        if m["i"] is not None:
            return int(m["i"]), m["id"].decode("utf-8", "replace"), int(m["n"])
        return int(m["i2"]), m["id2"].decode("utf-8", "replace"), int(m["n"])
    tag = el[: tag_end + 1]
    idx_text = _attr(tag, b"index")
    index = int(idx_text) if idx_text and idx_text.isdigit() else -1
    native_id = _attr(tag, b"id") or ""
    try:
        return index, native_id, int(_attr(tag, b"defaultArrayLength") or "")
    except ValueError:
        return index, native_id, None


def _retention_time_s(
    values: dict[bytes, bytes], units: dict[bytes, bytes], rt_notes: set[str]
) -> float | None:
    if SCAN_START_TIME not in values:
        return None
    rt = _float(values[SCAN_START_TIME])
    unit = units.get(SCAN_START_TIME)
    factor = _TIME_UNITS.get(unit) if unit else None
    if factor is None:
        # mzML requires a unit; converters that omit it (old OpenMS) write seconds
        factor = 1.0
        rt_notes.add(f"scan start time without a known unit ({unit!r}): read as seconds")
    return rt * factor if rt is not None else None


def _bad_spectrum(message: str, hint: str, *, file: str, index: int, native_id: str) -> InputError:
    """The error for spectrum ``index`` of ``file``: names the file, the spectrum and the fix."""
    where = f"spectrum index {index} (id {native_id!r})"
    return InputError(Problem(message, file=file, where=where, hint=hint))


def _ms_level(values: dict[bytes, bytes]) -> int | None:
    """The spectrum's MS level: its 'ms level' cvParam, else 1 for an 'MS1 spectrum'."""
    lvl = values.get(MS_LEVEL)
    if lvl is not None and lvl.strip().isdigit():
        return int(lvl)
    return 1 if MS1_SPECTRUM in values else None


def _peak_arrays(
    el: bytes, start: int, default_length: int, groups: dict[bytes, bytes]
) -> tuple[np.ndarray, np.ndarray]:
    """The spectrum's m/z (float64) and intensity (float32) arrays; raises _BadArray (a
    missing array of a spectrum with peaks too)."""
    arrays, _ = _arrays(el, start, default_length, (MZ_ARRAY, INTENSITY_ARRAY), groups)
    if default_length and (MZ_ARRAY not in arrays or INTENSITY_ARRAY not in arrays):
        missing = (
            "m/z array (MS:1000514)" if MZ_ARRAY not in arrays else "intensity array (MS:1000515)"
        )
        raise _BadArray(
            f"spectrum has {default_length} peaks but no {missing}",
            "the file lacks required arrays or cvParams; re-convert it",
        )
    mz = arrays.get(MZ_ARRAY, _EMPTY64)
    inten = arrays.get(INTENSITY_ARRAY, _EMPTY32)
    if mz.dtype != np.float64:
        mz = mz.astype(np.float64)
    if inten.dtype != np.float32:
        inten = inten.astype(np.float32)
    return mz, inten


def parse_spectrum(
    el: bytes, groups: dict[bytes, bytes], *, file: str, rt_notes: set[str]
) -> Spectrum:
    """One ``<spectrum>`` element -> :class:`Spectrum` (raises InputError naming the index)."""
    tag_end = el.find(b">")
    index, native_id, default_length = _spectrum_identity(el, tag_end)
    if default_length is None:
        raise _bad_spectrum(
            "spectrum has no valid defaultArrayLength attribute",
            "the file is not valid mzML; re-convert it",
            file=file,
            index=index,
            native_id=native_id,
        ) from None
    bl = el.find(b"<binaryDataArrayList", tag_end)
    meta = el[tag_end : bl if bl >= 0 else len(el)]
    meta = _expand_groups(meta, groups)
    values, units = _spectrum_terms(meta)
    value = values.get
    ms_level = _ms_level(values)
    if ms_level is None:
        raise _bad_spectrum(
            "spectrum has no 'ms level' cvParam (MS:1000511)",
            "the file lacks required cvParams; re-convert it with msconvert",
            file=file,
            index=index,
            native_id=native_id,
        )
    rt_s = _retention_time_s(values, units, rt_notes)
    terms = values
    polarity = "positive" if POSITIVE in terms else ("negative" if NEGATIVE in terms else None)
    centroided = True if CENTROID in terms else (False if PROFILE in terms else None)
    try:
        mz, inten = _peak_arrays(el, bl if bl >= 0 else len(el), default_length, groups)
    except _BadArray as bad:
        raise _bad_spectrum(
            bad.message, bad.hint, file=file, index=index, native_id=native_id
        ) from None
    charge = value(CHARGE_STATE)
    return Spectrum(
        index=index,
        native_id=native_id,
        ms_level=ms_level,
        rt_s=rt_s,
        polarity=polarity,
        centroided=centroided,
        mz=mz,
        intensity=inten,
        tic=_float(value(TIC)),
        base_peak_mz=_float(value(BASE_PEAK_MZ)),
        base_peak_intensity=_float(value(BASE_PEAK_INTENSITY)),
        precursor_mz=_float(value(SELECTED_ION_MZ))
        if SELECTED_ION_MZ in terms
        else _float(value(ISO_TARGET)),
        precursor_charge=int(charge) if charge and charge.strip().lstrip(b"-").isdigit() else None,
        precursor_intensity=_float(value(PEAK_INTENSITY)),
        isolation_window_target_mz=_float(value(ISO_TARGET)),
        isolation_window_lower_offset=_float(value(ISO_LOWER)),
        isolation_window_upper_offset=_float(value(ISO_UPPER)),
        collision_energy=_float(value(COLLISION_ENERGY)),
    )


_EMPTY64 = np.zeros(0, np.float64)
_EMPTY32 = np.zeros(0, np.float32)


def parse_chromatogram(
    el: bytes, groups: dict[bytes, bytes], *, file: str, position: int
) -> Chromatogram:
    tag_end = el.find(b">")
    tag = el[: tag_end + 1]
    idx_text = _attr(tag, b"index")
    index = int(idx_text) if idx_text and idx_text.isdigit() else position
    native_id = _attr(tag, b"id") or f"chromatogram_{index}"
    where = f"chromatogram index {index} (id {native_id!r})"
    try:
        default_length = int(_attr(tag, b"defaultArrayLength") or "")
    except ValueError:
        raise InputError(
            Problem(
                "chromatogram has no valid defaultArrayLength attribute",
                file=file,
                where=where,
                hint="the file is not valid mzML; re-convert it",
            )
        ) from None
    bl = el.find(b"<binaryDataArrayList", tag_end)
    meta = _expand_groups(el[tag_end : bl if bl >= 0 else len(el)], groups)
    accs = [a.decode() for a in _ACCESSION_RE.findall(meta)]
    kind_acc = next((a for a in accs if a in CHROMATOGRAM_TYPES), None)
    kind = CHROMATOGRAM_TYPES.get(kind_acc or "", "other")

    def iso_target(section: bytes) -> float | None:
        s = meta.find(b"<" + section)
        if s < 0:
            return None
        e = meta.find(b"</" + section, s)
        m = re.search(rb'accession="MS:1000827"[^>]*', meta[s:e])
        return (
            _float(_VALUE_RE.search(m.group(0)).group(1))
            if m and _VALUE_RE.search(m.group(0))
            else None
        )

    try:
        arrays, units = _arrays(
            el, bl if bl >= 0 else len(el), default_length, (TIME_ARRAY, INTENSITY_ARRAY), groups
        )
    except _BadArray as bad:
        raise InputError(Problem(bad.message, file=file, where=where, hint=bad.hint)) from None
    time = arrays.get(TIME_ARRAY, _EMPTY64).astype(np.float64)
    unit = units.get(TIME_ARRAY)
    factor = _TIME_UNITS.get(unit, 1.0) if unit else 1.0
    return Chromatogram(
        index=index,
        native_id=native_id,
        kind=kind,
        accession=kind_acc,
        time_s=time * factor if factor != 1.0 else time,
        intensity=arrays.get(INTENSITY_ARRAY, _EMPTY32).astype(np.float32),
        precursor_mz=iso_target(b"precursor"),
        product_mz=iso_target(b"product"),
    )


# --------------------------------------------------------------------------- public API
# ----------------------------------------------------------------------- decoding processes
T = TypeVar("T")
PROCESS_MIN_BYTES = 48 << 20  # stored file size from which MzMLReader may parse on worker processes
# Spectra up to this size (XML bytes, on average) are parsing-bound, i.e. Python holding the GIL:
# worker processes pay off.  Larger ones are bound by base64 + inflate, which release the GIL:
# threads do as well without shipping the arrays between processes (measured on 2 cores:
# 7.7 KB spectra 1.6x faster on processes than in one; 150 KB spectra 1.3x slower).
PROCESS_MAX_SPECTRUM_BYTES = 32 << 10


def _parse_batch(
    raw: list[bytes], groups: dict[bytes, bytes], name: str, notes: set[str]
) -> list[Spectrum]:
    return [parse_spectrum(el, groups, file=name, rt_notes=notes) for el in raw]


def _worker_decode(
    raw: list[bytes], groups: dict[bytes, bytes], name: str, fn: Callable[[list[Spectrum]], T]
) -> tuple[T, set[str]]:
    notes: set[str] = set()
    return fn(_parse_batch(raw, groups, name, notes)), notes


def _same(spectra: list[Spectrum]) -> list[Spectrum]:
    return spectra


class MzMLReader:
    """Stream one mzML file: ``for batch in reader.spectrum_batches(): ...`` then ``reader.chromatograms()``.

    Spectra come in batches of about ``batch_bytes`` of XML, cut from the file by this thread
    while ``threads`` workers decode the previous ones (at most ``threads + 1`` batches in
    flight); a read-ahead thread reads, hashes and gunzips ``_READ_AHEAD`` blocks of
    ``READ_BLOCK`` bytes meanwhile.  The workers are processes for files of many small spectra
    (``PROCESS_MIN_BYTES``, ``PROCESS_MAX_SPECTRUM_BYTES``): parsing their XML is Python work
    that holds the GIL.  They are threads for large spectra, whose time goes to base64 and
    inflate, which release it.  ``processes`` forces the choice; ``threads=1`` decodes here.
    ``info`` is complete (including ``sha256``) once both iterators are exhausted.

    Examples
    --------
    >>> with MzMLReader("run.mzML") as reader:                     # doctest: +SKIP
    ...     n = sum(len(batch) for batch in reader.spectrum_batches())
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_bytes: int = BATCH_BYTES,
        threads: int = 2,
        processes: bool | None = None,
    ):
        self.path = Path(path)
        self.name = self.path.name
        self.batch_bytes = batch_bytes
        self.threads = max(1, threads)
        self.processes = processes
        self.info = RunInfo()
        self.rt_notes: set[str] = set()
        self._src: _Source | None = None
        self._split: _ElementSplitter | None = None
        self._groups: dict[bytes, bytes] = {}
        self._first_list: bytes | None = None
        self._open()

    def _open(self) -> None:
        if not self.path.is_file():
            raise InputError(Problem("file not found", file=str(self.path)))
        self.info.size_bytes = self.path.stat().st_size
        if self.info.size_bytes == 0:
            raise InputError(
                Problem(
                    "the file is empty (0 bytes)",
                    file=self.name,
                    hint="the export or copy did not finish; copy the file again",
                )
            )
        self._src = _Source(self.path)
        self.info.compression = "gzip" if self._src.gzipped else "none"
        self._split = _ElementSplitter(self._src)
        self._split._more()
        head = self._split.buf[:4096].lstrip()
        if not self._split.buf.strip():
            raise InputError(
                Problem(
                    "the file holds no XML (empty after decompression)",
                    file=self.name,
                    hint="the export or copy did not finish; copy the file again",
                )
            )
        if not head.startswith(b"<") or (
            b"<mzML" not in self._split.buf[:65536]
            and b"<indexedmzML" not in self._split.buf[:65536]
        ):
            start = head[:40].decode("utf-8", "replace")
            raise InputError(
                Problem(
                    f"not an mzML file (it starts with {start!r})",
                    file=self.name,
                    hint="convert vendor files to mzML first (msconvert or ThermoRawFileParser)",
                )
            )
        header, first = self._split.header()
        if first is None and b"</mzML>" not in header and self._split.eof:
            raise InputError(
                Problem(
                    "no <spectrumList> or <chromatogramList> found: the file ends early",
                    file=self.name,
                    where=f"byte {len(header)}",
                    hint="the file was cut short; copy it again",
                )
            )
        self._first_list = first
        self._groups = parse_param_groups(header)
        parse_run_info(header, self._groups, self.info)
        if m := re.search(
            rb'<spectrumList\b[^>]*count="(\d+)"', self._split.buf[len(header) : len(header) + 4096]
        ):
            self.info.spectrum_count_declared = int(m.group(1))

    def __enter__(self) -> MzMLReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._src is not None:
            self._src.close()

    def _raw_elements(self, tag: bytes) -> Iterator[tuple[int, bytes]]:
        assert self._split is not None
        count = 0
        try:
            for item in self._split.elements(tag):
                count += 1
                yield item
        except InputError as err:
            # a broken gzip stream surfaces while reading ahead: say after which element
            where = (
                f"after {tag.decode()} #{count - 1}, in the next one"
                if count
                else f"before the first {tag.decode()}"
            )
            raise InputError(
                [
                    Problem(p.message, file=p.file, where=p.where or where, hint=p.hint)
                    for p in err.problems
                ]
            ) from None
        except _Unexpected as u:
            name = tag.decode()
            raise InputError(
                Problem(
                    f"unexpected content inside the {name} list: {u.text.decode('utf-8', 'replace')!r}",
                    file=self.name,
                    where=f"after {name} #{count - 1}, byte {u.offset}",
                    hint="the file is not valid mzML; re-convert it (msconvert / ThermoRawFileParser)",
                )
            ) from None
        except _TooLarge as t:
            name = tag.decode()
            idx = _attr(t.head[: t.head.find(b">") + 1], b"index")
            where = f"{name} index {idx}" if idx else f"{name} at byte {t.offset}"
            raise InputError(limits.element_too_large(name, file=self.name, where=where)) from None
        except _Truncated as t:
            name = tag.decode()
            if not t.head:
                where = f"after {count} complete {name}s"
                message = f"the file ends after {name} #{count - 1} without closing the {name} list"
            else:
                idx = _attr(t.head[: t.head.find(b">") + 1], b"index")
                where = f"{name} index {idx}" if idx else f"{name} at byte {t.offset}"
                message = f"the file ends inside {where}"
            raise InputError(
                Problem(
                    message,
                    file=self.name,
                    where=where,
                    hint="the file was cut short; copy or export it again",
                )
            ) from None

    def scan(self) -> int:
        """Walk every spectrum and chromatogram element without decoding one (``validate``):
        stops with an InputError at the first element over the cap, at the decompressed-size
        cap of a gzip file, or where the file is cut; memory stays one element.  Returns the
        number of elements."""
        n = 0
        first = self._first_list
        if first is None:
            return 0
        for tag in (first, b"chromatogram" if first == b"spectrum" else b"spectrum"):
            for _ in self._raw_elements(tag):
                n += 1
        return n

    def _raw_batches(self) -> Iterator[list[bytes]]:
        if self._first_list != b"spectrum":
            return
        batch: list[bytes] = []
        size = 0
        for _, el in self._raw_elements(b"spectrum"):
            batch.append(el)
            size += len(el)
            if size >= self.batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _decode_batch(self, raw: list[bytes]) -> list[Spectrum]:
        return _parse_batch(raw, self._groups, self.name, self.rt_notes)

    def _decode_on(self) -> str:
        """Where batches are decoded: "processes", "threads" or "here" (see the class docstring)."""
        if self.processes is not None:
            return "processes" if self.processes else ("threads" if self.threads > 1 else "here")
        if self.threads == 1:
            return "here"
        if (
            self.info.size_bytes >= PROCESS_MIN_BYTES
            and self._typical_spectrum_bytes() <= PROCESS_MAX_SPECTRUM_BYTES
            # workers are forked (spawn and forkserver would re-run the caller's script), and
            # forking is deadlock-free only in a process without other threads, and only on
            # Linux (macOS system libraries may abort in a forked child)
            and threading.active_count() == 1
            and sys.platform.startswith("linux")
        ):
            return "processes"
        return "threads"

    def _typical_spectrum_bytes(self) -> float:
        """Mean XML size of the spectra in the first block read (infinite if none fits in it)."""
        assert self._split is not None
        buf = self._split.buf
        first = buf.find(b"<spectrum ", buf.find(b"<spectrumList"))
        last = buf.rfind(b"</spectrum>")
        n = buf.count(b"</spectrum>", first) if first >= 0 else 0
        return (last - first) / n if n and last > first else float("inf")

    def spectrum_batches(self) -> Iterator[list[Spectrum]]:
        """Spectra in file order, in batches; parsing overlaps reading on ``threads`` processes."""
        return self.map_batches(_same)

    def map_batches(self, fn: Callable[[list[Spectrum]], T]) -> Iterator[T]:
        """``fn`` of every batch of spectra, in file order, run where the batch is decoded.

        On worker processes, only ``fn``'s result comes back: make it compact (an Arrow record
        batch, a summary) and ``fn`` picklable (a module-level function or a partial of one).
        """
        if self._first_list != b"spectrum":
            return
        where = self._decode_on()
        if where == "here":
            for raw in self._raw_batches():
                yield fn(self._decode_batch(raw))
            return
        if where == "processes":
            # forks every worker now, before the read-ahead thread starts (ProcessPoolExecutor
            # forks all of them at the first submit)
            pool: Executor = ProcessPoolExecutor(
                self.threads, mp_context=multiprocessing.get_context("fork")
            )
            pool.submit(int).result()
        else:
            pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mzml-decode")
        pending: list[Future] = []
        with pool:
            try:
                for raw in self._raw_batches():
                    if where == "processes":
                        pending.append(
                            pool.submit(_worker_decode, raw, self._groups, self.name, fn)
                        )
                    else:
                        pending.append(pool.submit(self._decode_and_map, raw, fn))
                    if len(pending) > self.threads:
                        yield self._collect(pending.pop(0))
                while pending:
                    yield self._collect(pending.pop(0))
            finally:
                for fut in pending:  # stopped early (an error, or the consumer left): drop the rest
                    fut.cancel()

    def _decode_and_map(
        self, raw: list[bytes], fn: Callable[[list[Spectrum]], T]
    ) -> tuple[T, set[str]]:
        return fn(self._decode_batch(raw)), set()  # notes went straight into self.rt_notes

    def _collect(self, fut: Future) -> T:
        try:
            result, notes = fut.result()
        except BrokenProcessPool as err:
            raise RunError(
                f"a decoding process of {self.name} died ({err})",
                details=[
                    "the machine may be out of memory: run again with one thread "
                    "(threads: 1, decoding in one process, less memory)"
                ],
            ) from None
        self.rt_notes |= notes
        return result

    def spectra(self) -> Iterator[Spectrum]:
        for batch in self.spectrum_batches():
            yield from batch

    def chromatograms(self) -> Iterator[Chromatogram]:
        """Chromatograms stored in the file (read after the spectra, as they follow them)."""
        for pos, (_, el) in enumerate(self._raw_elements(b"chromatogram")):
            yield parse_chromatogram(el, self._groups, file=self.name, position=pos)
        self.finish()

    def finish(self) -> RunInfo:
        """Read to the end (hashing the whole stored file) and return the completed ``info``."""
        assert self._src is not None and self._split is not None
        if self.info.sha256 is None:
            while self._split._more():
                self._split.pos = len(self._split.buf)
            self.info.sha256 = self._src.digest()
            self.info.notes.extend(sorted(self.rt_notes))
        return self.info
