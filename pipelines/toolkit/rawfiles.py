"""Checks every raw file of a run gets before anything reads its contents.

``binds validate`` and every run (:func:`pipelines.run.runner.check_run_dir`) call
:func:`raw_file_problems` on the files a modality's input resolver returned, before the
modality's own header checks:

* **names** the workflow can carry: at most :data:`MAX_NAME_BYTES` bytes (output names add a
  prefix and a suffix, and Linux allows 255), no control characters (a newline in a name
  splits log lines and Snakemake's file lists), no ``{`` / ``}`` (Snakemake's wildcard syntax),
  and no name Snakemake takes for a periodic wildcard (``aaaa...a.mzML``: the run fails with
  ``PeriodicWildcardError`` after validation said ok);
* **compressed inputs past the decompression cap** (:mod:`pipelines.toolkit.limits`): every
  gzip / bzip2 input is counted as a stream that stops at the cap;
* **HDF5 files that reach outside** (:func:`hdf5_problems`): a dataset whose values are stored
  in another file (external raw storage), an external link, or a virtual dataset (values mapped
  from other files).  HDF5 follows each of these to any path the file names: ``/etc/passwd``,
  another lab's data.  Checked for every input that is HDF5 by its signature, whatever its
  extension (``.h5``, ``.h5ad``, and any later HDF5-based format).

A problem names the file (relative to the run folder) and, for HDF5, the object path; it never
quotes the outside target (a refusal does not reveal what the file tried to reach).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from pipelines.errors import InputError, Problem
from pipelines.toolkit import limits

#: Longest raw file name (UTF-8 bytes): outputs are named ``.<name>.parquet.partial`` and the
#: like, which must stay under the 255 bytes of Linux file systems.
MAX_NAME_BYTES = 200
#: Longest path of a raw file relative to the run folder (bytes).
MAX_PATH_BYTES = 1024
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# characters that break a line of a log or a Snakemake file list, or Snakemake's wildcard syntax
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f{}]")
_NAME_HINT = (
    "rename the file: letters, digits, '.', '_' and '-' (at most {n} bytes) are always safe"
)
_HDF5_HINT = (
    "HDF5 inputs must hold their own data: re-write the file without external storage, "
    "external links or virtual datasets (e.g. h5repack, or anndata/Cell Ranger output as written)"
)


def name_problems(rel: str) -> list[Problem]:
    """What is wrong with the name of a raw file at ``rel`` (POSIX, relative to the run folder)."""
    out: list[Problem] = []
    shown = _printable(rel)
    name = rel.rsplit("/", 1)[-1]
    hint = _NAME_HINT.format(n=MAX_NAME_BYTES)
    try:
        encoded = rel.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in the name (os.fsdecode's surrogates)
        return [Problem("the file name is not valid UTF-8", file=shown, hint=hint)]
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        out.append(
            Problem(
                f"the file name is {len(name.encode('utf-8'))} bytes long; at most "
                f"{MAX_NAME_BYTES} are allowed",
                file=shown,
                hint=hint,
            )
        )
    elif len(encoded) > MAX_PATH_BYTES:
        out.append(
            Problem(
                f"the path is {len(encoded)} bytes long; at most {MAX_PATH_BYTES} are allowed",
                file=shown,
                hint="move the file up into fewer folders",
            )
        )
    bad = sorted(set(_BAD_CHARS.findall(rel)))
    if bad:
        what = ", ".join(_describe(c) for c in bad)
        out.append(Problem(f"the file name holds {what}", file=shown, hint=hint))
    if periodic := _periodic(name):
        out.append(
            Problem(
                f"the file name repeats {_printable(periodic)[:20]!r} over and over, which "
                "Snakemake refuses as a wildcard value (PeriodicWildcardError)",
                file=shown,
                hint=hint,
            )
        )
    return out


def _describe(char: str) -> str:
    if char == "\n":
        return "a line break"
    if char in "{}":
        return f"'{char}'"
    return f"a control character (U+{ord(char):04X})"


def _printable(text: str) -> str:
    """``text`` safe for one line of a terminal or log: control characters escaped."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    )


def _periodic(name: str) -> str | None:
    """The repeated part, if Snakemake would see a periodic wildcard in the name or in the name
    without its extensions (the run names of the workflows drop them)."""
    from snakemake.io import PeriodicityDetector  # the very check Snakemake applies to jobs

    detector = PeriodicityDetector()
    candidates = {name}
    stem = name
    while "." in stem.strip("."):
        stem = stem.rsplit(".", 1)[0]
        candidates.add(stem)
    for value in sorted(candidates):
        if found := detector.is_periodic(value):
            return str(found)
    return None


def is_hdf5(path: Path) -> bool:
    """True when the file carries the HDF5 signature (at 0, or after a 512 x 2^k user block)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            offset = 0
            while offset + 8 <= size:
                fh.seek(offset)
                if fh.read(8) == HDF5_SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def hdf5_problems(path: Path, *, file: str | None = None) -> list[Problem]:
    """Every object of an HDF5 file that takes data from outside it (see the module doc).

    Only the file's own metadata is read: links are listed without being followed, and a
    dataset's storage layout is looked up without reading a value.  A file h5py cannot open is
    left to the reader, which says why.
    """
    import h5py

    name = file or path.name
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        return []
    out: list[Problem] = []

    def visit(obj_path: str, link: object) -> None:
        where = "/" + obj_path
        if isinstance(link, h5py.ExternalLink):
            out.append(
                Problem(
                    "is an HDF5 external link to another file",
                    file=name,
                    where=where,
                    hint=_HDF5_HINT,
                )
            )
            return
        if not isinstance(link, h5py.HardLink):
            return  # soft links point inside the file (to an object checked on its own)
        obj = h5.get(obj_path, getlink=False)
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.is_virtual:
            out.append(
                Problem(
                    "is an HDF5 virtual dataset (its values are mapped from other files)",
                    file=name,
                    where=where,
                    hint=_HDF5_HINT,
                )
            )
        elif obj.external:
            out.append(
                Problem(
                    "is an HDF5 dataset with external raw storage (its values live in "
                    "another file)",
                    file=name,
                    where=where,
                    hint=_HDF5_HINT,
                )
            )

    with h5:
        h5.visititems_links(visit)
    return out


def refuse_outside_hdf5(path: str | Path, *, file: str | None = None) -> None:
    """Raise :class:`InputError` when the HDF5 file at ``path`` reaches outside (readers call
    this before they read anything, so a job refuses the file even without ``validate``)."""
    if problems := hdf5_problems(Path(path), file=file):
        raise InputError(problems)


def raw_file_problems(run_dir: str | Path, files: Iterable[Path]) -> list[Problem]:
    """Names and HDF5 references of every file in ``files`` (folders: the files in them)."""
    root = Path(os.path.abspath(run_dir))
    out: list[Problem] = []
    for f in files:
        for p in sorted(f.rglob("*")) if f.is_dir() else [f]:
            if not p.is_file():
                continue
            absolute = Path(os.path.abspath(p))
            rel = absolute.relative_to(root).as_posix() if absolute.is_relative_to(root) else p.name
            named = name_problems(rel)
            out += named
            if named:
                continue
            if is_hdf5(p):
                out += hdf5_problems(p, file=rel)
            elif limits.compression_of(p) is not None:
                # a gzip / bzip2 input of any modality (matrix.mtx.gz, counts.tsv.gz ...): counted
                # as a stream, stopped at the cap, before a reader inflates it into memory
                if limits.decompressed_size(p).over_cap:
                    out.append(
                        limits.decompressed_too_large(file=rel, compressed_size=p.stat().st_size)
                    )
    return out
