"""Where the non-Python parts live: the Snakefile, workflows/ and metadata/.

In a source checkout (editable install, the usual case) they sit at the repository root; a
wheel carries copies under ``pipelines/_bundled``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@cache
def project_root() -> Path:
    """The folder holding ``Snakefile``, ``workflows/``, ``metadata/`` and ``profiles/``."""
    for candidate in (_PKG.parent, _PKG / "_bundled"):
        if (candidate / "Snakefile").is_file() and (candidate / "metadata").is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the Snakefile and metadata/ next to {_PKG}")


def metadata_dir() -> Path:
    return project_root() / "metadata"


def snakefile() -> Path:
    return project_root() / "Snakefile"


def profiles_dir() -> Path:
    return project_root() / "profiles"
