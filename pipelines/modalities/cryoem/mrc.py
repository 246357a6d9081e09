"""MRC/CCP4 headers and slab-by-slab reading of map data.

The header is parsed by ``mrcfile`` (permissive, so that a broken file becomes a list of
:class:`~pipelines.errors.Problem` instead of an exception).  Data are read by this module in
bricks of ``depth`` sections x ``rows`` rows x all columns, with explicit ``readinto`` calls:
pages read through ``mrcfile.mmap`` stay resident and count towards peak RSS, explicit reads
into short-lived buffers do not.  Gzip/bzip2 maps are decompressed as a stream (one section
block at a time), since a compressed stream cannot seek.

Conventions (MRC2014, https://www.ccpem.ac.uk/mrc_format/mrc2014.php):

- the file stores ``NS`` sections of ``NR`` rows of ``NC`` columns; MAPC/MAPR/MAPS say which
  of X, Y, Z (1, 2, 3) the columns, rows and sections run along;
- voxel size along X/Y/Z = cell length / MX, MY, MZ (never / NX: EMD-3001 has NX != MX);
- NXSTART/NYSTART/NZSTART are the index of the first column/row/section.
"""

from __future__ import annotations

import bz2
import gzip
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import mrcfile
import numpy as np
from mrcfile.utils import data_dtype_from_header

from pipelines.errors import InputError, Problem
from pipelines.toolkit import limits

HEADER_BYTES = 1024
#: MRC modes this workflow converts, with what they hold.
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_OTHER_MODES = {3: "complex int16", 4: "complex float32", 101: "packed 4-bit"}
_AXIS_NAMES = {1: "X", 2: "Y", 3: "Z"}


@dataclass(frozen=True, slots=True)
class MapHeader:
    """What the workflow needs from one MRC header, in file order and in z/y/x order.

    Attributes
    ----------
    display
        The file as named to the user (relative to the run folder when possible).
    file_shape
        ``(NS, NR, NC)``: sections, rows, columns, the order of the bytes in the file.
    axis_order
        ``(MAPC, MAPR, MAPS)``: which of X=1, Y=2, Z=3 columns, rows and sections run along.
    voxel_size_xyz
        Angstrom per voxel along X, Y, Z (cell length / sampling).
    """

    path: Path
    display: str
    compression: str | None
    mode: int
    file_dtype: np.dtype
    file_shape: tuple[int, int, int]
    axis_order: tuple[int, int, int]
    voxel_size_xyz: tuple[float, float, float]
    cell_angles: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    start_crs: tuple[int, int, int]
    data_offset: int
    ext_header_bytes: int
    ext_header_type: str
    space_group: int
    nversion: int
    labels: tuple[str, ...]
    header_fields: dict[str, Any] = field(repr=False, compare=False)

    # ------------------------------------------------------------------ derived geometry
    @property
    def dtype(self) -> np.dtype:
        """Native-endian dtype of the data (what the Zarr arrays hold)."""
        return self.file_dtype.newbyteorder("=")

    @property
    def data_bytes(self) -> int:
        return math.prod(self.file_shape) * self.file_dtype.itemsize

    @property
    def file_to_zyx(self) -> tuple[int, int, int]:
        """Axes of the file-order array to take, in order, to get z, y, x (for ``np.transpose``)."""
        # file axis 0 = sections (MAPS), 1 = rows (MAPR), 2 = columns (MAPC); X=1 -> zyx index 2
        zyx_index = [3 - self.axis_order[2], 3 - self.axis_order[1], 3 - self.axis_order[0]]
        return tuple(zyx_index.index(j) for j in range(3))  # type: ignore[return-value]

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(self.file_shape[i] for i in self.file_to_zyx)  # type: ignore[return-value]

    @property
    def voxel_size_zyx(self) -> tuple[float, float, float]:
        x, y, z = self.voxel_size_xyz
        return (z, y, x)

    @property
    def start_xyz(self) -> tuple[int, int, int]:
        """NXSTART/NYSTART/NZSTART moved from column/row/section to X/Y/Z."""
        out = [0, 0, 0]
        for crs_index, axis in enumerate(self.axis_order):
            out[axis - 1] = self.start_crs[crs_index]
        return tuple(out)  # type: ignore[return-value]

    def translation_zyx(
        self, voxel_size_zyx: tuple[float, float, float] | None = None
    ) -> tuple[float, float, float]:
        """Physical position (angstrom) of voxel (0, 0, 0).

        The MRC2000 ORIGIN field wins when it is non-zero (as in ChimeraX); otherwise the
        start indices times the voxel size.
        """
        vz, vy, vx = voxel_size_zyx or self.voxel_size_zyx
        if any(self.origin_xyz):
            ox, oy, oz = self.origin_xyz
            return (float(oz), float(oy), float(ox))
        sx, sy, sz = self.start_xyz
        return (sz * vz, sy * vy, sx * vx)

    def region_zyx(self, s: slice, r: slice, c: slice) -> tuple[slice, slice, slice]:
        """A file-order block (sections, rows, columns) as z/y/x slices."""
        file_slices = (s, r, c)
        return tuple(file_slices[i] for i in self.file_to_zyx)  # type: ignore[return-value]

    def facts(self) -> dict[str, Any]:
        """Header facts for metadata.jsonld and the Zarr attributes (JSON types only)."""
        return {
            "file": self.display,
            "compression": self.compression,
            "mode": self.mode,
            "dtype": str(self.dtype),
            "shape_zyx": list(self.shape_zyx),
            "voxel_size_zyx_angstrom": [round(v, 6) for v in self.voxel_size_zyx],
            "axis_order_crs": "".join(_AXIS_NAMES[a] for a in self.axis_order),
            "cell_angles_deg": [round(a, 4) for a in self.cell_angles],
            "origin_xyz_angstrom": list(self.origin_xyz),
            "start_xyz": list(self.start_xyz),
            "space_group": self.space_group,
            "extended_header_bytes": self.ext_header_bytes,
            "extended_header_type": self.ext_header_type,
            "nversion": self.nversion,
            "labels": list(self.labels),
        }


# ---------------------------------------------------------------------------------- header
class _Unusable(Exception):
    """A header check failed: the file cannot be used (carries the message, place and hint)."""

    def __init__(self, message: str, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.where, self.hint = where, hint


def read_header(
    path: str | Path, *, display: str | None = None
) -> tuple[MapHeader | None, list[Problem]]:
    """Parse and check one MRC/CCP4 header; return ``(header, problems)``.

    ``header`` is ``None`` when the file cannot be used at all.  Checks: the file is not empty
    and holds a full header, the map id ``MAP `` is present, the mode is supported, the
    dimensions, axis order and sampling are sane, and the data size matches the file size
    (for gzip via its trailer; bzip2 is checked while streaming).
    """
    path = Path(path)
    name = display or path.name
    try:
        compression, size = _check_raw_header(path)
        h, voxel, caught = _open_header(path)
        _check_header_fields(h, path=path, compression=compression, size=size)
    except _Unusable as bad:
        return None, [Problem(str(bad), file=name, where=bad.where, hint=bad.hint)]
    header = _map_header(h, voxel, path=path, display=name, compression=compression)
    for w in caught:
        # Header oddities that do not stop the conversion (e.g. an unusual machine stamp) are
        # recorded, not raised: the checks above already decided the file is usable.
        header.header_fields.setdefault("_reader_warnings", []).append(str(w.message))
    return header, []


def _check_raw_header(path: Path) -> tuple[str | None, int]:
    """The file exists, is not empty, and its first bytes carry the map id: (compression, size)."""
    if not path.is_file():
        raise _Unusable(
            "file not found", hint="check the path in the cryoem block of experiment.yaml"
        )
    size = path.stat().st_size
    if size == 0:
        raise _Unusable(
            "the file is empty (0 bytes)", hint="copy the map again from the instrument PC"
        )
    compression = _compression_of(path)
    if compression is None and size < HEADER_BYTES:
        raise _Unusable(
            f"not an MRC/CCP4 map: only {size} bytes, an MRC header alone is {HEADER_BYTES}",
            hint="the file is truncated or is not a map",
        )
    # Check the map id on the raw bytes first: mrcfile would otherwise trust garbage (a text
    # file's NSYMBT can claim gigabytes of extended header and take seconds to give up).
    try:
        raw = _first_bytes(path, compression, HEADER_BYTES)
    except (OSError, EOFError) as err:
        raise _Unusable(
            f"cannot read the file: {err}", hint="a corrupt gzip/bzip2 stream? copy the map again"
        ) from None
    if len(raw) < HEADER_BYTES:
        raise _Unusable(
            f"not an MRC/CCP4 map: only {len(raw)} bytes"
            f"{' after decompression' if compression else ''}, "
            f"an MRC header alone is {HEADER_BYTES}",
            hint="the file is truncated or is not a map",
        )
    if raw[208:212] != b"MAP ":
        raise _Unusable(
            f"not an MRC/CCP4 map: bytes 209-212 are {raw[208:212]!r}, not b'MAP '",
            where="header MAP",
            hint="is this really a density map? MRC2000/CCP4 files carry 'MAP ' there",
        )
    return compression, size


def _open_header(path: Path) -> tuple[Any, Any, list[warnings.WarningMessage]]:
    """mrcfile's header and voxel size, with the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                h = mrc.header
                voxel = mrc.voxel_size
        except Exception as err:  # mrcfile raises ValueError/OSError/EOFError for broken files
            raise _Unusable(
                f"cannot read the MRC header: {err}",
                hint="the file is truncated, not a map, or a corrupt gzip/bzip2 stream",
            ) from None
    if h is None:
        raise _Unusable("cannot read the MRC header", hint="the file is not an MRC/CCP4 map")
    return h, voxel, list(caught)


def _check_header_fields(h: Any, *, path: Path, compression: str | None, size: int) -> None:
    """Mode, dimensions, axis order, extended header, and the data size against the file."""
    mode = int(h.mode)
    if mode not in SUPPORTED_MODES:
        what = _OTHER_MODES.get(mode, "unknown")
        raise _Unusable(
            f"unsupported mode {mode} ({what})",
            where="header MODE",
            hint="convert it to mode 2 (float32); modes 0, 1, 2, 6 and 12 are read",
        )
    nc, nr, ns = int(h.nx), int(h.ny), int(h.nz)
    if min(nc, nr, ns) < 1:
        raise _Unusable(
            f"dimensions NX, NY, NZ = {nc}, {nr}, {ns} must all be >= 1", where="header NX/NY/NZ"
        )
    order = (int(h.mapc), int(h.mapr), int(h.maps))
    if sorted(order) != [1, 2, 3]:
        raise _Unusable(
            f"axis order MAPC, MAPR, MAPS = {order} is not a permutation of 1, 2, 3",
            where="header MAPC/MAPR/MAPS",
            hint="the header is corrupt",
        )
    nsymbt = int(h.nsymbt)
    if nsymbt < 0:
        raise _Unusable(f"negative extended header size NSYMBT = {nsymbt}", where="header NSYMBT")
    data_bytes = nc * nr * ns * data_dtype_from_header(h).itemsize
    expected = HEADER_BYTES + nsymbt + data_bytes
    if compression and expected > limits.max_decompressed_bytes(size):
        # the reader stops at the declared size, so the declared size bounds the inflation:
        # refused here, before a byte of data is inflated
        problem = limits.decompressed_too_large(file=path.name, compressed_size=size)
        raise _Unusable(
            f"{problem.message}: the header declares {expected / 2**30:.3g} GiB",
            where="header NX/NY/NZ/MODE",
            hint=problem.hint,
        )
    actual = _uncompressed_size(path, compression, size)
    if actual is not None and actual != expected:
        detail = (
            f"the header promises {nc} x {nr} x {ns} voxels of mode {mode} "
            f"({SUPPORTED_MODES[mode]}) after a {HEADER_BYTES + nsymbt}-byte header = "
            f"{expected} bytes, "
            f"but the {'decompressed ' if compression else ''}file has {actual}"
        )
        if actual < expected:
            raise _Unusable(
                f"truncated file: {detail}",
                where="data",
                hint="the copy is incomplete; copy the map again",
            )
        raise _Unusable(
            f"header dimensions do not match the file size: {detail}",
            where="header NX/NY/NZ/MODE",
            hint="the header's NX/NY/NZ, MODE or NSYMBT is wrong, or data were appended",
        )


def _map_header(
    h: Any, voxel: Any, *, path: Path, display: str, compression: str | None
) -> MapHeader:
    nc, nr, ns = int(h.nx), int(h.ny), int(h.nz)
    nsymbt = int(h.nsymbt)
    # the header holds float32: round to 1e-6 angstrom so 1.06 is written as 1.06, not as
    # 1.0600000619888306
    vx, vy, vz = (round(float(voxel.x), 6), round(float(voxel.y), 6), round(float(voxel.z), 6))
    labels = tuple(
        bytes(lbl).decode("ascii", "replace").rstrip(" \x00")
        for lbl in h.label[: max(0, min(int(h.nlabl), 10))]
    )
    return MapHeader(
        path=path,
        display=display,
        compression=compression,
        mode=int(h.mode),
        file_dtype=data_dtype_from_header(h),
        file_shape=(ns, nr, nc),
        axis_order=(int(h.mapc), int(h.mapr), int(h.maps)),
        voxel_size_xyz=(vx, vy, vz),
        cell_angles=tuple(float(a) for a in h.cellb.tolist()),
        origin_xyz=tuple(round(float(o), 6) for o in h.origin.tolist()),
        start_crs=(int(h.nxstart), int(h.nystart), int(h.nzstart)),
        data_offset=HEADER_BYTES + nsymbt,
        ext_header_bytes=nsymbt,
        ext_header_type=bytes(h.exttyp).decode("ascii", "replace").strip("\x00 "),
        space_group=int(h.ispg),
        nversion=int(h.nversion),
        labels=labels,
        header_fields=_header_dict(h),
    )


def _compression_of(path: Path) -> str | None:
    """Compression by magic bytes (not by the name: a ``.map`` may be gzipped and vice versa)."""
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"BZh":
        return "bzip2"
    return None


def map_bytes(path: str | Path) -> int:
    """The map's size once decompressed, for memory and runtime plans: the file size, or for
    a gzip/bzip2 map the size its header declares (which the preflight has checked against
    the gzip trailer and the decompression cap, and which the reader never reads past)."""
    path = Path(path)
    size = path.stat().st_size
    compression = _compression_of(path)
    if compression is None:
        return size
    try:
        raw = _first_bytes(path, compression, HEADER_BYTES)
        order = ">" if raw[212:213] == b"\x11" else "<"  # machine stamp: 0x11 big-endian
        nx, ny, nz, mode = np.frombuffer(raw[:16], dtype=f"{order}i4").tolist()
        nsymbt = int(np.frombuffer(raw[92:96], dtype=f"{order}i4")[0])
        itemsize = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}[mode]
        return HEADER_BYTES + nsymbt + nx * ny * nz * itemsize
    except Exception:  # a broken header: preflight reports it; plan as the old rule of thumb did
        return size * 4


def _first_bytes(path: Path, compression: str | None, n: int) -> bytes:
    opener = {"gzip": gzip.open, "bzip2": bz2.open}.get(compression or "", open)
    with opener(path, "rb") as fh:
        return fh.read(n)


def _uncompressed_size(path: Path, compression: str | None, size: int) -> int | None:
    if compression is None:
        return size
    if compression == "gzip" and size < 2**32:
        # The gzip trailer stores the input size modulo 2**32: exact for files below 4 GiB.
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            return int.from_bytes(fh.read(4), "little")
    return None  # bzip2 (or huge gzip): checked while streaming


def _header_dict(h: np.recarray) -> dict[str, Any]:
    """The MRC header as JSON types, for the Zarr attributes (labels as text, no raw bytes)."""
    out: dict[str, Any] = {}
    for name in h.dtype.names:
        value = h[name]
        if name == "label":
            out[name] = [bytes(lbl).decode("ascii", "replace").rstrip(" \x00") for lbl in value]
        elif name in ("map", "exttyp"):
            out[name] = bytes(value).decode("ascii", "replace")
        elif name == "machst":
            out[name] = bytes(value).hex()
        elif name == "extra1" or name == "extra2":
            continue  # reserved padding
        elif value.dtype.names:  # records such as cella (x, y, z)
            out[name] = [
                float(v) if isinstance(v, (float, np.floating)) else int(v) for v in value.tolist()
            ]
        elif value.ndim:
            out[name] = value.tolist()
        else:
            v = value.item()
            out[name] = float(v) if isinstance(v, float) else v
    # NaN/Inf in statistics fields would make the attributes invalid JSON
    for key in ("dmin", "dmax", "dmean", "rms"):
        if key in out and not math.isfinite(out[key]):
            out[key] = None
    return out


def open_header(path: str | Path, *, display: str | None = None) -> MapHeader:
    """Like :func:`read_header` but raise :class:`InputError` on any problem."""
    header, problems = read_header(path, display=display)
    if problems or header is None:
        raise InputError(problems or [Problem("cannot read the map", file=display or str(path))])
    return header


# ---------------------------------------------------------------------------------- data
@dataclass(frozen=True, slots=True)
class Brick:
    """A block of the map in file order: sections ``s``, rows ``r``, all columns."""

    s0: int
    r0: int
    data: np.ndarray  # (sections, rows, columns), native byte order

    @property
    def s(self) -> slice:
        return slice(self.s0, self.s0 + self.data.shape[0])

    @property
    def r(self) -> slice:
        return slice(self.r0, self.r0 + self.data.shape[1])


def iter_bricks(header: MapHeader, *, depth: int = 128, rows: int = 128) -> Iterator[Brick]:
    """Yield the map as bricks of ``depth`` sections x ``rows`` rows x all columns.

    Bricks come section block by section block, rows within; every brick is a fresh array
    (callers may hand it to another thread).  Memory: one brick (one section block for
    compressed files).

    Raises
    ------
    InputError
        The data end early (truncated file) or continue past the promised size.
    """
    ns, nr, nc = header.file_shape
    item = header.file_dtype.itemsize
    row_bytes = nc * item
    with _open_data(header) as fh:
        for s0 in range(0, ns, depth):
            d = min(depth, ns - s0)
            if header.compression:
                block = np.empty((d, nr, nc), dtype=header.file_dtype)
                _read_exact(fh, memoryview(block).cast("B"), header, (s0 * nr) * row_bytes)
                block = _native(block)
                for r0 in range(0, nr, rows):
                    yield Brick(s0, r0, block[:, r0 : r0 + rows])
                continue
            for r0 in range(0, nr, rows):
                h = min(rows, nr - r0)
                brick = np.empty((d, h, nc), dtype=header.file_dtype)
                view = memoryview(brick).cast("B")
                step = h * row_bytes
                for i in range(d):
                    offset = ((s0 + i) * nr + r0) * row_bytes
                    fh.seek(header.data_offset + offset)
                    _read_exact(fh, view[i * step : (i + 1) * step], header, offset)
                yield Brick(s0, r0, _native(brick))
        if header.compression and fh.read(1):
            raise InputError(
                Problem(
                    f"the decompressed data are longer than the {header.data_bytes} bytes "
                    "the header promises",
                    file=header.display,
                    where="header NX/NY/NZ/MODE",
                    hint="the header's NX/NY/NZ, MODE or NSYMBT is wrong",
                )
            )


def read_zyx(header: MapHeader) -> np.ndarray:
    """The whole map as one z/y/x array (for FSC and small maps; memory = map size)."""
    out = np.empty(header.shape_zyx, dtype=header.dtype)
    for b in iter_bricks(header):
        out[header.region_zyx(b.s, b.r, slice(None))] = np.transpose(b.data, header.file_to_zyx)
    return out


def _open_data(header: MapHeader) -> BinaryIO:
    if header.compression == "gzip":
        fh: BinaryIO = gzip.open(header.path, "rb")  # type: ignore[assignment]
    elif header.compression == "bzip2":
        fh = bz2.open(header.path, "rb")  # type: ignore[assignment]
    else:
        return open(header.path, "rb", buffering=0)
    _skip(fh, header.data_offset)
    return fh


def _skip(fh: BinaryIO, n: int) -> None:
    while n > 0:
        got = fh.read(min(n, 1 << 20))
        if not got:
            break
        n -= len(got)


def _read_exact(fh: BinaryIO, view: memoryview, header: MapHeader, data_offset: int) -> None:
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            have = data_offset + got
            raise InputError(
                Problem(
                    f"truncated file: the data end after {have} of {header.data_bytes} bytes",
                    file=header.display,
                    where="data",
                    hint="the copy is incomplete; copy the map again",
                )
            )
        got += n


def _native(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))
