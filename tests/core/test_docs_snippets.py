"""Every `# snippet:` code block of the README's AI-team section and docs/formats/ runs, as
written, against the demo store (one fresh interpreter per snippet)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "formats").glob("*.md"))]
BLOCK = re.compile(r"```python\n(# snippet: ([^\n]+)\n.*?)```", re.S)


def _snippets() -> list[tuple[str, str]]:
    return [
        (f"{doc.name}: {m.group(2)}", m.group(1))
        for doc in DOCS
        for m in BLOCK.finditer(doc.read_text())
    ]


def test_one_snippet_per_tool_is_documented():
    names = {name.split(": ", 1)[1] for name, _ in _snippets()}
    for tool in (
        "pandas",
        "duckdb",
        "polars",
        "zarr / ome-zarr",
        "anndata",
        "mlcroissant",
        "rdflib",
        "pipelines.access",
    ):
        assert tool in names, f"no '# snippet: {tool}' block in README.md or docs/formats/"


@pytest.mark.parametrize("name,code", _snippets(), ids=[n for n, _ in _snippets()])
def test_snippet_runs_on_the_demo_store(name, code, demo_store, tmp_path):
    (tmp_path / "demo-store").symlink_to(demo_store)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, f"{name}:\n{out.stderr[-3000:]}"
    assert out.stdout.strip(), f"{name} printed nothing"
