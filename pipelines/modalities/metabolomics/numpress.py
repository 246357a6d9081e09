"""MS-Numpress decoders (linear, positive integer "pic", short logged float "slof") in numpy.

The three codecs of MS-Numpress (Teleman et al., MCP 2014; mzML terms MS:1002312-MS:1002314)
decoded exactly as the reference C++ implementation that OpenMS / pyopenms and ProteoWizard
use: the same 32-bit integer arithmetic, the same division by the fixed point, the same
treatment of a trailing half byte.  Vectorised so a spectrum of a million values decodes in
milliseconds rather than seconds (pymzml's codec is a Python loop per half byte).

Linear and pic store integers as variable-length runs of half bytes ("nibbles"): a head nibble
``h`` says how many of the 8 nibbles of a 32-bit value are leading zeros (``h <= 8``) or
leading ``0xf`` (``h > 8``, ``h - 8`` of them); the remaining nibbles follow, least significant
first.  Where each value starts depends on every value before it: that scan is the one step done per
value in Python; extracting the nibbles and assembling the values is vectorised.
"""

from __future__ import annotations

import math

import numpy as np


class NumpressError(ValueError):
    """The bytes are not valid MS-Numpress data (too short, cut inside a value)."""


def _nibbles(raw: bytes | np.ndarray) -> np.ndarray:
    b = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw
    out = np.empty(b.size * 2, dtype=np.uint8)
    out[0::2] = b >> 4  # the high half of each byte comes first
    out[1::2] = b & 0xF
    return out


def _starts(size: bytes, n: int) -> np.ndarray:
    """Where each value starts: the one sequential step (a value's length is in its head).

    A plain loop over a ``bytes`` object (~40 ns a value); the vectorised alternative, pointer
    doubling, measured 20 s on 2 M values because of its log2(n) random gathers over the stream.
    """
    out = []
    append = out.append
    p = 0
    while p < n:
        append(p)
        p += size[p]
    return np.asarray(out, dtype=np.int64)


def _decode_ints(nib: np.ndarray) -> np.ndarray:
    """The 32-bit values (as int64 of their signed int32 reading) of a nibble stream."""
    n = nib.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    head = nib.astype(np.int64)
    lead = np.where(head <= 8, head, head - 8)  # leading nibbles not written
    size = 1 + (8 - lead)  # nibbles this value takes, head included
    starts = _starts(size.astype(np.uint8).tobytes(), n)
    # a value must fit: a last head whose nibbles run past the end is padding (a 0 half byte
    # that fills the last byte) or damage; the reference decoder stops at the padding
    complete = starts + size[starts] <= n
    if not complete[:-1].all():
        raise NumpressError("a value is cut short inside the data")
    if not complete[-1]:
        if not (starts[-1] == n - 1 and nib[-1] == 0):
            raise NumpressError("the data ends inside a value")
        starts = starts[:-1]
    lead_s = lead[starts]
    used = size[starts]
    end = int(starts[-1] + used[-1]) if starts.size else 0
    # each data nibble shifted to its place (0 for heads), summed per value: the bits of one
    # value's nibbles never overlap, so the sum is their bitwise or
    offset = np.arange(end, dtype=np.int64) - np.repeat(starts, used) - 1
    shift = (4 * np.maximum(offset, 0)).astype(np.uint64)
    contrib = np.where(offset >= 0, nib[:end].astype(np.uint64) << shift, np.uint64(0))
    value = np.add.reduceat(contrib, starts) if starts.size else np.zeros(0, np.uint64)
    # leading 0xf nibbles (head > 8): the top `lead` nibbles all ones
    fill = head[starts] > 8
    ones = np.where(
        fill,
        (np.uint64(0xFFFFFFFF) << (4 * (8 - lead_s)).astype(np.uint64)) & np.uint64(0xFFFFFFFF),
        np.uint64(0),
    ).astype(np.uint64)
    return (value | ones).astype(np.uint32).view(np.int32).astype(np.int64)


def _fixed_point(raw: bytes) -> float:
    return float(np.frombuffer(raw[:8], dtype=">f8")[0])  # stored big-endian


def decode_pic(raw: bytes) -> np.ndarray:
    """Positive integers (MS:1002313), e.g. ion counts, as float64."""
    ints = _decode_ints(_nibbles(raw))
    # the reference reads each value as an unsigned 32-bit integer
    return (ints & 0xFFFFFFFF).astype(np.float64)


def decode_linear(raw: bytes) -> np.ndarray:
    """Linear prediction (MS:1002312), e.g. m/z and retention times, as float64."""
    if len(raw) in (0, 8):  # an empty array: nothing, or the fixed point alone
        return np.zeros(0, dtype=np.float64)
    if len(raw) < 12:
        raise NumpressError(f"{len(raw)} bytes is too short for linear numpress data")
    fp = _fixed_point(raw)
    first = np.frombuffer(raw[8:16], dtype="<u4").astype(np.int64)  # 1 or 2 values, little-endian
    if len(raw) < 16:
        return first[:1] / fp
    diffs = _decode_ints(_nibbles(raw[16:]))
    # y[i] = y[i-1] + (y[i-1] - y[i-2]) + diff[i]: the second difference of y is diff, so y is a
    # double cumulative sum started from the two stored values (exact in int64: the reference
    # keeps the running values in 64-bit integers too)
    y0, y1 = int(first[0]), int(first[1])
    m = diffs.size
    steps = np.arange(1, m + 1, dtype=np.int64)
    y = y1 + steps * (y1 - y0) + np.cumsum(np.cumsum(diffs))
    return np.concatenate([first.astype(np.float64), y.astype(np.float64)]) / fp


def decode_slof(raw: bytes) -> np.ndarray:
    """Short logged float (MS:1002314), e.g. intensities, as float64: exp(x / fp) - 1."""
    if not raw:
        return np.zeros(0, dtype=np.float64)
    if len(raw) < 8:
        raise NumpressError(f"{len(raw)} bytes is too short for slof numpress data")
    if (len(raw) - 8) % 2:
        raise NumpressError("slof data is not a whole number of 16-bit values")
    fp = _fixed_point(raw)
    x = np.frombuffer(raw[8:], dtype="<u2").astype(np.float64) / fp
    # C's exp, value by value: numpy's SIMD exp can differ from libm in the last bit
    return np.fromiter(map(math.exp, x.tolist()), dtype=np.float64, count=x.size) - 1


DECODERS = {"linear": decode_linear, "pic": decode_pic, "slof": decode_slof}
