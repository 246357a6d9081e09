"""Cryo-EM: MRC -> full OME-Zarr pyramid vs a naive single-scale Zarr write, and peak RSS.

Two comparisons (issue 3), both measured in this one run:

1. ``convert_maps`` (every pyramid level, streaming) against the naive write of the same
   array with the same codec: ``mrcfile.read`` then ``zarr.create_array(data=...)`` with
   128^3 chunks and Blosc zstd 3.  512^3 float32 (``--quick``: 192^3).  Median of 3 runs each,
   in this process, file in the page cache for both.  Goal: <= 1.3x.
2. Peak RSS of ``convert_maps`` on a >= 2 GiB map written to disk first (816^3 float32,
   2.07 GiB; ``--quick``: 320^3), each side in a fresh subprocess (``ru_maxrss`` of that child).
   Goal: peak RSS <= 25 % of the map size.  The time ratio of that pair is reported too.
   Peak RSS includes the interpreter and its imports (~105 MiB here).

Run: ``.venv/bin/python benchmarks/run.py cryoem`` (or ``make bench``).  The temporary maps and
stores live in a temporary folder that is deleted at the end.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Each child prints its seconds and its own peak RSS (VmHWM of its address space).  Not the
# parent's wait4() ru_maxrss: on Linux a child's ru_maxrss also holds the RSS of the address
# space it was forked from (the parent's, here > 1 GiB after part 1), so it overstates.
_PEAK = """
def peak_rss_mib():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""
_CONVERT = (
    _PEAK
    + """
import sys, time
from pipelines.modalities.cryoem import convert_maps
t = time.perf_counter()
convert_maps(map=sys.argv[1], out=sys.argv[2])
print(time.perf_counter() - t, peak_rss_mib())
"""
)
_NAIVE = (
    _PEAK
    + """
import sys, time
import mrcfile, zarr
from pipelines.modalities.cryoem.ngff import compressor
t = time.perf_counter()
data = mrcfile.read(sys.argv[1])
zarr.create_array(sys.argv[2], data=data, chunks=(128, 128, 128), compressors=compressor(),
                  fill_value=0, zarr_format=3, overwrite=True)
print(time.perf_counter() - t, peak_rss_mib())
"""
)


def write_synthetic_map(path: Path, n: int, *, seed: int = 0) -> int:
    """An n^3 float32 map: a smooth blob plus noise (compresses like a real map: hardly at all).

    Written slab by slab through an explicit file handle, so the generator never holds it.
    """
    rng = np.random.default_rng(seed)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.zeros((1, 1, 1), np.float32))  # header template, replaced below
        mrc.voxel_size = 1.0
    header = bytearray(path.read_bytes()[:1024])
    header[0:12] = np.array([n, n, n], "<i4").tobytes()  # NX, NY, NZ
    header[28:40] = np.array([n, n, n], "<i4").tobytes()  # MX, MY, MZ
    header[40:52] = np.array([float(n)] * 3, "<f4").tobytes()  # cell: 1 angstrom voxels
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) - n / 2
    with open(path, "wb") as fh:
        fh.write(bytes(header))
        for z0 in range(0, n, 32):
            d = min(32, n - z0)
            zz = (np.arange(z0, z0 + d, dtype=np.float32) - n / 2)[:, None, None]
            blob = np.exp(-(zz**2 + yy**2 + xx**2) / (2 * (n / 6) ** 2))
            slab = blob + 0.3 * rng.standard_normal((d, n, n), dtype=np.float32)
            fh.write(slab.astype("<f4").tobytes())
    return 4 * n**3


def _in_process(src: Path, out: Path, *, naive: bool) -> float:
    import zarr

    from pipelines.modalities.cryoem import convert_maps
    from pipelines.modalities.cryoem.ngff import compressor

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    if naive:
        zarr.create_array(
            str(out),
            data=mrcfile.read(src),
            chunks=(128, 128, 128),
            compressors=compressor(),
            fill_value=0,
            zarr_format=3,
            overwrite=True,
        )
    else:
        convert_maps(map=src, out=out)
    return time.perf_counter() - t


def _subprocess(code: str, src: Path, out: Path) -> tuple[float, float]:
    """(seconds reported by the child, its peak RSS in MiB)."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out_text = subprocess.run(
        [sys.executable, "-c", code, str(src), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    seconds, peak = out_text.strip().splitlines()[-1].split()
    return float(seconds), float(peak)


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(quick: bool = False) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(
        prefix="bench-cryoem-", dir=os.environ.get("BINDS_BENCH_TMP")
    ) as tmp:
        tmp = Path(tmp)
        # 1. time: pyramid vs naive single-scale, in this process
        n = 192 if quick else 512
        src = tmp / f"map{n}.mrc"
        size = write_synthetic_map(src, n)
        ours, naive = [], []
        for _ in range(1 if quick else 3):
            naive.append(_in_process(src, tmp / "naive.zarr", naive=True))
            ours.append(_in_process(src, tmp / "ours.ome.zarr", naive=False))
        o, b = statistics.median(ours), statistics.median(naive)
        rows.append(
            {
                "benchmark": f"cryoem MRC->OME-Zarr pyramid {n}^3 f32",
                "ours": o,
                "baseline": "naive single-scale zarr write",
                "baseline_s": b,
                "ratio": o / b,
                "goal": "<= 1.3x",
                "extra": {
                    "map_MiB": round(size / 2**20),
                    "GB_per_s": round(size / o / 1e9, 3),
                    "store_MiB": round(_tree_bytes(tmp / "ours.ome.zarr") / 2**20),
                    "naive_store_MiB": round(_tree_bytes(tmp / "naive.zarr") / 2**20),
                },
            }
        )
        for p in (src, tmp / "naive.zarr", tmp / "ours.ome.zarr"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        # 2. peak RSS on a big map, each side in its own process
        n = 320 if quick else 816
        src = tmp / f"map{n}.mrc"
        size = write_synthetic_map(src, n, seed=1)
        b, rss_naive = _subprocess(_NAIVE, src, tmp / "naive.zarr")
        shutil.rmtree(tmp / "naive.zarr", ignore_errors=True)
        o, rss = _subprocess(_CONVERT, src, tmp / "ours.ome.zarr")
        rows.append(
            {
                "benchmark": f"cryoem peak RSS {n}^3 f32 ({size / 2**30:.2f} GiB)",
                "ours": o,
                "baseline": "naive write (holds the map)",
                "baseline_s": b,
                "ratio": o / b,
                "goal": "RSS <= 25% of map",
                "extra": {
                    "map_MiB": round(size / 2**20),
                    "peak_rss_MiB": round(rss),
                    "rss_fraction": round(rss * 2**20 / size, 3),
                    "naive_peak_rss_MiB": round(rss_naive),
                },
            }
        )
    return rows


if __name__ == "__main__":
    for row in main(quick="--quick" in sys.argv):
        print(row)
