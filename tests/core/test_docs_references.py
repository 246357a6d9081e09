"""Every dotted ``pipelines.x.y`` name and every repository path the docs mention exists (issue
20: the docs had kept names of modules that had moved)."""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest

from pipelines.moved import MOVED

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").rglob("*.md")]
)
DOTTED = re.compile(r"(?<![\w./-])pipelines(?:\.[A-Za-z_]\w*)+")
# a path inside the repository: a top-level folder of it, then a file or folder name
PATH = re.compile(
    r"(?<![\w./~-])(?:pipelines|tests|workflows|benchmarks|docs|metadata|profiles|envs)"
    r"/[\w./-]*[\w/]"
)


def resolves(dotted: str) -> bool:
    """A module, or an attribute of the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)  # an old, moved name
                obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        except DeprecationWarning:
            return False
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def _mentions(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """(doc, name) of each mention; a pattern (``bench_*.py``) or a placeholder in capitals
    (``profiles/NAME/``) names no one file."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in pattern.finditer(text):
            name = m.group(0).rstrip(".")
            if text[m.end() : m.end() + 1] in ("*", "<", "{") or re.search(r"/[A-Z_]+(/|$)", name):
                continue
            out.append((doc.relative_to(ROOT).as_posix(), name))
    return out


def test_every_dotted_name_in_the_docs_exists():
    # the old names are named on purpose where the move is explained
    missing = sorted(
        {
            (doc, name)
            for doc, name in _mentions(DOTTED)
            if not resolves(name) and not (doc == "docs/architecture.md" and name in MOVED)
        }
    )
    assert not missing, missing


def test_every_repository_path_in_the_docs_exists():
    missing = sorted({(doc, path) for doc, path in _mentions(PATH) if not (ROOT / path).exists()})
    assert not missing, missing


@pytest.mark.parametrize("name", ["pipelines.runner", "pipelines.cli.nothing_here"])
def test_a_moved_or_missing_name_is_reported(name):
    assert not resolves(name)
