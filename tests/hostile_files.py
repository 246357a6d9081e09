"""Builders of hostile raw files for the tests of every modality (small, made in tmp_path).

HDF5 files that reach outside themselves, decompression bombs (.mzML.gz, .map.gz).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import numpy as np

MiB = 1 << 20
N_CELLS, N_GENES = 60, 40
SECRET = b"root:x:0:0:SECRET-LINE-OF-ANOTHER-LAB:/root:/bin/bash\n" * 40


def clean_10x_h5(path: Path) -> Path:
    from pipelines.modalities.transcriptomics.demo import (
        barcodes_for,
        synthetic_counts,
        write_10x_h5,
    )

    X, symbols, _ = synthetic_counts(n_cells=N_CELLS, n_genes=N_GENES, n_types=2, seed=1)
    return write_10x_h5(path, X, symbols=symbols, barcodes=barcodes_for(N_CELLS, seed=1))


def outside_file(tmp_path: Path) -> Path:
    """A file outside the run folder, as another lab's data (or /etc/passwd) would be."""
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(SECRET)
    return secret


def hostile_h5(path: Path, kind: str, outside: Path) -> Path:
    """A valid 10x v3 file whose matrix/features/name reaches ``outside`` by ``kind``:
    ``external_storage``, ``external_link`` or ``virtual``."""
    clean_10x_h5(path)
    with h5py.File(path, "a") as f:
        del f["matrix/features/name"]
        if kind == "external_storage":
            f["matrix/features"].create_dataset(
                "name", shape=(N_GENES,), dtype="S16", external=[(str(outside), 0, 16 * N_GENES)]
            )
        elif kind == "external_link":
            other = outside.with_suffix(".h5")
            with h5py.File(other, "w") as o:
                o["name"] = np.array([b"STOLEN%03d" % i for i in range(N_GENES)])
            f["matrix/features/name"] = h5py.ExternalLink(str(other), "/name")
        elif kind == "virtual":
            other = outside.with_suffix(".vds.h5")
            with h5py.File(other, "w") as o:
                o["name"] = np.array([b"STOLEN%03d" % i for i in range(N_GENES)], dtype="S16")
            layout = h5py.VirtualLayout(shape=(N_GENES,), dtype="S16")
            layout[:] = h5py.VirtualSource(str(other), "name", shape=(N_GENES,))
            f["matrix/features"].create_virtual_dataset("name", layout)
        else:
            raise ValueError(kind)
    return path


def mzml_bomb(real_dir: Path, dest: Path, *, spectrum_mib: int) -> Path:
    """example.mzML with the first m/z array replaced by ``spectrum_mib`` MiB of base64, gzipped
    as a stream (the test never holds the inflated file)."""
    text = (real_dir / "example.mzML").read_bytes()
    b = text.index(b"<binary>") + len(b"<binary>")
    e = text.index(b"</binary>", b)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    chunk = b"A" * MiB
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        out.write(comp.compress(text[:b]))
        for _ in range(spectrum_mib):
            out.write(comp.compress(chunk))
        out.write(comp.compress(text[e:]))
        out.write(comp.flush())
    return dest


def gz_map(tmp_path: Path, dest: Path, n: int) -> Path:
    """A valid n^3 float32 MRC map of zeros, gzipped as a stream (~1000x smaller than inside)."""
    import mrcfile

    small = tmp_path / "small.mrc"
    with mrcfile.new(small, overwrite=True) as mrc:
        mrc.set_data(np.zeros((2, 2, 2), dtype=np.float32))
    header = bytearray(small.read_bytes()[:1024])
    header[0:12] = np.array([n, n, n], dtype="<i4").tobytes()
    header[28:40] = np.array([n, n, n], dtype="<i4").tobytes()  # MX, MY, MZ (sampling)
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    total = n**3 * 4
    zeros = bytes(MiB)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        out.write(comp.compress(bytes(header)))
        while total:
            step = min(total, MiB)
            out.write(comp.compress(zeros[:step]))
            total -= step
        out.write(comp.flush())
    return dest
