"""Group-private files: everything binds creates is ``0750`` (folders) / ``0640`` (files), or
stricter when the operator's umask is.

A support unit shares a login node with other units: a store's ``restricted/`` tree, a staged
copy's ``_meta/experiment.json`` (names, sample descriptions), the inbox state and binds' own
Prefect database must not be readable by "other".  One unix group per unit (and setgid folders,
README "Access levels") decides who of the unit's people reads them.

The umask is set once per process at every entry point (the ``binds`` command, a flow run a
served deployment starts in its own process); child processes (Snakemake jobs, local or Slurm)
inherit it.  The local store writer also sets explicit modes, so a library caller with a loose
umask still writes a private store.
"""

from __future__ import annotations

import os
from pathlib import Path

#: bits binds always clears: write for the group, everything for others
PRIVATE_UMASK = 0o027
DIR_MODE = 0o750
FILE_MODE = 0o640


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o077)  # not atomic: only reached off Linux
    os.umask(old)
    return old


def private_umask() -> int:
    """Make the process umask at least :data:`PRIVATE_UMASK` (a stricter one is kept); return
    the umask now in force."""
    mask = current_umask() | PRIVATE_UMASK
    os.umask(mask)
    return mask


def file_mode() -> int:
    return FILE_MODE & ~current_umask()


def dir_mode() -> int:
    return DIR_MODE & ~current_umask()


def make_private_dirs(path: Path) -> None:
    """``mkdir -p`` with group-private modes for every folder it creates."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    mode = dir_mode()
    for d in reversed(missing):
        try:
            d.mkdir(mode=mode)
        except FileExistsError:
            continue
        os.chmod(d, mode | (d.parent.stat().st_mode & 0o2000))  # keep an operator's setgid bit


__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "PRIVATE_UMASK",
    "current_umask",
    "dir_mode",
    "file_mode",
    "make_private_dirs",
    "private_umask",
]
