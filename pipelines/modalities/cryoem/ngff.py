"""Write maps as OME-NGFF 0.5 multiscale images (Zarr v3), streaming.

One pass over the MRC file writes every pyramid level: each brick read is written to level 0
and, while a background thread compresses it, halved into the level-1 buffer; a level's buffer
is written (and halved into the next level) as soon as it holds one chunk depth of sections.
Memory is a few bricks plus one chunk-deep slab per level >= 1, never the whole map.

Pyramid: 2x per level on every axis until the smallest axis is < 32 voxels (that level is the
last).  Odd sizes round up, the last voxel being averaged with itself (edge padding).  Level
``k`` has scale ``voxel * 2**k`` and a translation that keeps voxel centres where they are:
``t_k = t_0 + (2**k - 1) / 2 * voxel``.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipelines.errors import InputError, Problem
from pipelines.modalities.cryoem.mrc import MapHeader, iter_bricks

log = logging.getLogger(__name__)

#: Stamped into the ``binds`` attributes of every image group this module writes.
FORMAT_NAME = "binds-cryoem-map"
FORMAT_VERSION = 1
CHUNK = 128
MIN_LEVEL_SIZE = 32
AXES = [{"name": n, "type": "space", "unit": "angstrom"} for n in ("z", "y", "x")]
LABEL_COLORS = [{"label-value": 1, "rgba": [255, 200, 0, 160]}]


def compressor() -> BloscCodec:
    """Blosc zstd level 3, byte shuffle: the codec of every array and of the benchmark baseline."""
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


def level_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes of the pyramid: halve (rounding up) until the smallest axis is < 32."""
    shapes = [tuple(shape)]
    while min(shapes[-1]) >= MIN_LEVEL_SIZE:
        shapes.append(tuple(math.ceil(n / 2) for n in shapes[-1]))
    return shapes


def level_transforms(
    voxel_zyx: tuple[float, float, float],
    translation_zyx: tuple[float, float, float],
    n_levels: int,
) -> list[list[dict[str, Any]]]:
    out = []
    for k in range(n_levels):
        f = 2**k
        scale = [float(v * f) for v in voxel_zyx]
        trans = [
            float(t + (f - 1) / 2 * v) for t, v in zip(translation_zyx, voxel_zyx, strict=True)
        ]
        out.append(
            [{"type": "scale", "scale": scale}, {"type": "translation", "translation": trans}]
        )
    return out


@dataclass(frozen=True, slots=True)
class ImageWritten:
    """What :func:`write_image` wrote."""

    group: str
    shapes: list[tuple[int, int, int]]
    dtype: str
    n_chunks_level0: int


def halve(a: np.ndarray, *, how: Literal["mean", "max"]) -> np.ndarray:
    """2x downsampling on all three axes; odd sizes round up (last voxel paired with itself).

    ``mean`` returns float32; ``max`` keeps the dtype.  Pairwise sums axis by axis cost about
    1.75 passes over the input (each axis halves the data) instead of a reshape-and-mean.
    """
    out = a.astype(np.float32, copy=False) if how == "mean" else a
    for axis in range(3):
        n = out.shape[axis]
        if n == 1:
            out = out + out if how == "mean" else out
            continue
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis] = slice(0, None, 2)
        odd[axis] = slice(1, None, 2)
        a_even, a_odd = out[tuple(even)], out[tuple(odd)]
        if n % 2 == 0:
            out = a_even + a_odd if how == "mean" else np.maximum(a_even, a_odd)
            continue
        res = a_even.copy()
        head = [slice(None)] * 3
        head[axis] = slice(0, n // 2)
        last = [slice(None)] * 3
        last[axis] = slice(n // 2, None)
        if how == "mean":
            res[tuple(head)] += a_odd
            res[tuple(last)] *= 2
        else:
            np.maximum(res[tuple(head)], a_odd, out=res[tuple(head)])
        out = res
    if how == "mean":
        out *= np.float32(0.125)
    return out


def _cast(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if a.dtype == dtype:
        return a
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(a), info.min, info.max).astype(dtype)
    return a.astype(dtype)


class _Level:
    """Chunk-deep buffer of one pyramid level >= 1, in file order (sections, rows, columns)."""

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype):
        self.shape = shape
        self.start = 0  # first section of the buffer in this level
        self.fill = 0
        self.buf = np.empty((min(CHUNK, shape[0]), *shape[1:]), dtype=dtype)

    @property
    def full(self) -> bool:
        """One chunk depth collected, or the level's last sections."""
        return self.fill == min(self.buf.shape[0], self.shape[0] - self.start)


class _PyramidWriter:
    """Streams file-order bricks into the z/y/x arrays of one multiscale image."""

    def __init__(
        self,
        arrays: list[zarr.Array],
        header: MapHeader,
        shapes_file: list[tuple[int, int, int]],
        *,
        how: Literal["mean", "max"],
        pool: ThreadPoolExecutor,
        max_pending: int = 1,
    ):
        self.arrays = arrays
        self.header = header
        self.how = how
        self.pool = pool
        self.max_pending = max_pending
        self.pending: deque[Future] = deque()
        work = np.dtype(np.float32) if how == "mean" else arrays[0].dtype
        self.levels = [None] + [_Level(s, work) for s in shapes_file[1:]]

    def _write(self, k: int, s: slice, r: slice, block: np.ndarray, *, wait: bool = False) -> None:
        """Write a file-order block; in the background unless ``wait`` (then the caller may
        reuse ``block`` as soon as this returns)."""
        region = self.header.region_zyx(s, r, slice(None))
        data = np.transpose(_cast(block, self.arrays[k].dtype), self.header.file_to_zyx)
        limit = 1 if wait else self.max_pending  # wait: none left in flight after this
        while self.pending and len(self.pending) >= limit:
            self.pending.popleft().result()
        if wait:
            self.arrays[k][region] = data
        else:
            self.pending.append(self.pool.submit(self.arrays[k].__setitem__, region, data))

    def add_brick(self, s0: int, r0: int, block: np.ndarray, *, last_rows: bool) -> None:
        self._write(0, slice(s0, s0 + block.shape[0]), slice(r0, r0 + block.shape[1]), block)
        if len(self.levels) > 1:
            lvl = self.levels[1]
            rr = r0 // 2
            # halve 16 sections at a time: the temporaries stay a few MiB instead of half a brick
            for i in range(0, block.shape[0], 16):
                down = halve(block[i : i + 16], how=self.how)
                at = lvl.fill + i // 2
                lvl.buf[at : at + down.shape[0], rr : rr + down.shape[1]] = down
            if last_rows:  # the section block is complete
                lvl.fill += math.ceil(block.shape[0] / 2)
                if lvl.full:
                    self._flush(1)

    def _flush(self, k: int) -> None:
        lvl = self.levels[k]
        data = lvl.buf[: lvl.fill]
        # written in the foreground so that the one buffer of each level is reused: a second
        # buffer in flight would cost as much memory as all level-0 bricks together
        self._write(k, slice(lvl.start, lvl.start + lvl.fill), slice(None), data, wait=True)
        if k + 1 < len(self.levels):
            nxt = self.levels[k + 1]
            down = halve(data, how=self.how)
            nxt.buf[nxt.fill : nxt.fill + down.shape[0]] = down
            nxt.fill += down.shape[0]
            if nxt.full:
                self._flush(k + 1)
        lvl.start += lvl.fill
        lvl.fill = 0

    def abort(self) -> None:
        while self.pending:
            self.pending.popleft().exception()

    def close(self) -> None:
        for k in range(1, len(self.levels)):
            if self.levels[k].fill:
                self._flush(k)
        while self.pending:
            self.pending.popleft().result()


def write_image(
    root: zarr.Group,
    header: MapHeader,
    *,
    path: str,
    name: str,
    voxel_size_zyx: tuple[float, float, float],
    binds_attrs: dict[str, Any],
    label_threshold: float | None = None,
    threads: int = 2,
) -> ImageWritten:
    """Write one map as a multiscale image group ``path`` ('' = the root group) of ``root``.

    ``threads`` chunks are compressed at once.  With ``label_threshold`` the map is a mask:
    it is written as an NGFF label image (uint8, 1 where the mask value >= threshold) and
    pyramid levels take the max, so a coarse voxel is inside when any of its eight children is.

    Raises
    ------
    InputError
        The data hold NaN or Inf (named by voxel), or the file is truncated.
    """
    shape_zyx = header.shape_zyx
    shapes_zyx = level_shapes(shape_zyx)
    # the same pyramid in file order, for the buffers
    inv = [header.file_to_zyx.index(i) for i in range(3)]
    shapes_file = [tuple(s[j] for j in inv) for s in shapes_zyx]
    is_label = label_threshold is not None
    dtype = np.dtype(np.uint8) if is_label else header.dtype
    group = root.require_group(path) if path else root
    arrays = [
        group.create_array(
            name=str(k),
            shape=shape,
            dtype=dtype,
            chunks=tuple(min(CHUNK, n) for n in shape),
            compressors=compressor(),
            fill_value=0,
            dimension_names=("z", "y", "x"),
            overwrite=True,
        )
        for k, shape in enumerate(shapes_zyx)
    ]
    group.update_attributes(
        _image_attributes(
            header,
            name=name,
            voxel_size_zyx=voxel_size_zyx,
            n_levels=len(shapes_zyx),
            binds_attrs=binds_attrs,
            label_threshold=label_threshold,
        )
    )
    _stream_pyramid(arrays, header, shapes_file, label_threshold=label_threshold, threads=threads)
    chunks0 = math.prod(math.ceil(n / CHUNK) for n in shape_zyx)
    log.info("wrote %s: levels %s, dtype %s", path or "(root)", shapes_zyx, dtype)
    return ImageWritten(
        group=path, shapes=[tuple(s) for s in shapes_zyx], dtype=str(dtype), n_chunks_level0=chunks0
    )


def _image_attributes(
    header: MapHeader,
    *,
    name: str,
    voxel_size_zyx: tuple[float, float, float],
    n_levels: int,
    binds_attrs: dict[str, Any],
    label_threshold: float | None,
) -> dict[str, Any]:
    """The group's ``ome`` (NGFF 0.5 multiscales, image-label for a mask) and ``binds`` attributes."""
    is_label = label_threshold is not None
    transforms = level_transforms(voxel_size_zyx, header.translation_zyx(voxel_size_zyx), n_levels)
    multiscale = {
        "name": name,
        "axes": AXES,
        "datasets": [
            {"path": str(k), "coordinateTransformations": t} for k, t in enumerate(transforms)
        ],
        "type": "max" if is_label else "mean",
        "metadata": {
            "method": ("2x2x2 max" if is_label else "2x2x2 mean") + ", odd sizes edge-padded",
            "chunk": CHUNK,
            "min_level_size": MIN_LEVEL_SIZE,
        },
    }
    ome: dict[str, Any] = {"version": "0.5", "multiscales": [multiscale]}
    if is_label:
        ome["image-label"] = {"colors": LABEL_COLORS, "source": {"image": "../../"}}
    binds = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **binds_attrs}
    if is_label:
        binds["label_threshold"] = label_threshold
    return {"ome": ome, "binds": binds}


def _stream_pyramid(
    arrays: list[Any],
    header: MapHeader,
    shapes_file: list[tuple[int, ...]],
    *,
    label_threshold: float | None,
    threads: int,
) -> None:
    """Read the map brick by brick and write every pyramid level (memory: a few bricks)."""
    is_label = label_threshold is not None
    # zarr encodes up to async.concurrency chunks at once, each holding ~3 copies of a chunk
    # (slice, raw bytes, compressed): one per thread keeps the cores busy without holding a
    # whole brick's worth of copies (zarr's default is 10)
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-write") as pool,
        zarr.config.set({"async.concurrency": max(1, threads)}),
    ):
        writer = _PyramidWriter(
            arrays, header, shapes_file, how="max" if is_label else "mean", pool=pool
        )
        nr = header.file_shape[1]
        try:
            for brick in iter_bricks(header, depth=CHUNK, rows=CHUNK):
                block = brick.data
                _check_finite(block, header, brick.s0, brick.r0)
                if label_threshold is not None:
                    block = (block >= label_threshold).astype(np.uint8)
                writer.add_brick(
                    brick.s0, brick.r0, block, last_rows=brick.r0 + block.shape[1] >= nr
                )
        except BaseException:
            writer.abort()  # bad input mid-stream: finish what is in flight, write nothing more
            raise
        writer.close()


def _check_finite(block: np.ndarray, header: MapHeader, s0: int, r0: int) -> None:
    if not np.issubdtype(block.dtype, np.floating):
        return
    # a float32 sum is one fast pass; NaN/Inf propagate into it (an overflow to Inf of huge
    # but finite values only costs the exact check below)
    if np.isfinite(block.sum(dtype=np.float32)):
        return
    bad = ~np.isfinite(block)
    n_bad = int(bad.sum())
    if not n_bad:
        return
    s, r, c = (int(i[0]) for i in np.nonzero(bad))
    file_index = (s0 + s, r0 + r, c)
    zyx = tuple(file_index[i] for i in header.file_to_zyx)
    first = block[s, r, c]
    raise InputError(
        Problem(
            f"{n_bad} NaN/Inf value(s) in the data (first: {first} at voxel "
            f"z={zyx[0]}, y={zyx[1]}, x={zyx[2]}; counted in sections "
            f"{s0}-{s0 + block.shape[0] - 1}, rows {r0}-{r0 + block.shape[1] - 1})",
            file=header.display,
            where=f"voxel z={zyx[0]}, y={zyx[1]}, x={zyx[2]}",
            hint="they are not replaced silently: fix the processing step that made them, "
            "or set them to 0 explicitly and note it",
        )
    )


def open_root(path: str | Path) -> zarr.Group:
    """Create (replacing) a Zarr v3 group on disk."""
    return zarr.open_group(str(path), mode="w", zarr_format=3)
