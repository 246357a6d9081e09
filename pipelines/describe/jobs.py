"""Snakemake's job evidence: the one parser of its benchmark files (``benchmark:`` TSVs, plain
or extended), used by the usage record, the provenance crate, the QC report and the Prefect
reporter.
"""

from __future__ import annotations

import ast
import csv
import io
import re
from pathlib import Path
from typing import Any

_PATH_REPR = re.compile(r"\b(?:Posix|Windows)?Path\(('[^']*'|\"[^\"]*\")\)")


def as_number(value: Any) -> Any:
    """An int or a float when ``value`` reads as one; else ``value`` unchanged."""
    if isinstance(value, (int, float)) or value is None:
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        pass
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _literal(text: str) -> Any:
    """A Python literal as Snakemake's extended benchmark writes it (dict repr); None if not one."""
    if text in ("{}", ""):
        return {} if text else None
    if "Path(" in text:
        text = _PATH_REPR.sub(r"\1", text)  # PosixPath('/a') -> '/a'
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def parse_benchmark(path: str | Path) -> dict[str, Any] | None:
    """One benchmark TSV (plain or extended format) as typed figures; repeats are summed."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text()), delimiter="\t"))
    except OSError:
        return None
    if not rows:
        return None
    row = rows[0]

    def num(key: str, r: dict[str, str] = row) -> float | None:
        v = r.get(key)
        if v in (None, "", "NA", "-"):
            return None
        try:
            return float(v)
        except ValueError:
            return None

    out: dict[str, Any] = {
        "wall_s": sum(num("s", r) or 0.0 for r in rows),
        "cpu_s": None if num("cpu_time") is None else sum(num("cpu_time", r) or 0.0 for r in rows),
        "max_rss_mb": num("max_rss"),
        "io_in_mb": num("io_in"),
        "io_out_mb": num("io_out"),
        "mean_load": num("mean_load"),
        "repeats": len(rows),
        "mtime": path.stat().st_mtime,
    }
    if "jobid" in row:
        out["jobid"] = as_number(row["jobid"])
        out["rule"] = row.get("rule_name")
        out["threads"] = as_number(row.get("threads"))
        out["wildcards"] = _literal(row.get("wildcards") or "") or {}
        out["resources"] = _literal(row.get("resources") or "") or {}
        params = _literal(row.get("params") or "")
        out["params"] = params if isinstance(params, dict) else {}
    return out


# the figures the report's job table and the Prefect task runs show, under their names there
_FIGURES = (
    ("wall_s", "wall_s"),
    ("cpu_s", "cpu_s"),
    ("max_rss_mb", "max_rss_mb"),
    ("mean_load", "mean_load_percent"),
    ("io_in_mb", "io_in_mb"),
    ("io_out_mb", "io_out_mb"),
)


def benchmark_figures(path: str | Path | None) -> dict[str, float]:
    """CPU seconds, max RSS (MB), wall seconds ... of one job's benchmark file (repeats summed,
    as :func:`parse_benchmark`), rounded to the millisecond / kB for display; {} without one."""
    bench = parse_benchmark(path) if path else None
    if not bench:
        return {}
    return {
        shown: round(float(bench[key]), 3)
        for key, shown in _FIGURES
        if isinstance(bench.get(key), (int, float))
    }
