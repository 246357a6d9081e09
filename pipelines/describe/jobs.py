"""Snakemake's job evidence, read once for everyone who shows or counts jobs (the usage
record, the provenance crate, the QC report and the Prefect reporter):

* the job records of a run: :class:`JobBook` folds the logger plugin's events
  (``_meta/snakemake-events.jsonl``, :mod:`snakemake_logger_plugin_binds`) into :class:`Job`
  records, one per attempt, live (the Prefect reporter) or from the file (:func:`read_jobs`);
* the one parser of Snakemake's benchmark files (``benchmark:`` TSVs, plain or extended).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from dataclasses import dataclass, field
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


# ----------------------------------------------------------------------------- job records
@dataclass
class Job:
    """One Snakemake job as its events tell it (one attempt: a restarted job is a new Job)."""

    jobid: int
    rule: str
    wildcards: dict[str, Any]
    threads: int | None
    resources: dict[str, Any]
    log: list[str]
    benchmark: str | None
    inputs: list[str]
    outputs: list[str]
    attempt: int = 1
    started: float | None = None
    finished: float | None = None
    failed: str | None = None  # why, when it failed
    external_jobid: str | None = None  # the Slurm job id of this attempt
    console_log: str | None = None  # Snakemake's output, where a crashed script's traceback is

    @property
    def name(self) -> str:
        wc = ",".join(f"{k}={v}" for k, v in self.wildcards.items())
        name = f"{self.rule}[{wc}]" if wc else self.rule
        return name if self.attempt == 1 else f"{name} (attempt {self.attempt})"

    @property
    def key(self) -> str:
        return f"{self.jobid}.{self.attempt}"

    @property
    def status(self) -> str:
        if self.finished is None:
            return "running"
        return "failed" if self.failed else "completed"


@dataclass
class JobBook:
    """The logger plugin's events folded into :class:`Job` records, in the order they came.

    :meth:`apply` takes one event and returns the job it changed (``None``: not a job event,
    or a job never announced), so a live reader (the Prefect reporter) acts on each change and
    a file reader (:func:`read_jobs`) just folds.
    """

    jobs: list[Job] = field(default_factory=list)
    current: dict[int, Job] = field(default_factory=dict)  # Snakemake job id -> latest attempt
    console_log: str | None = None

    def apply(self, ev: dict[str, Any], *, now: float | None = None) -> Job | None:
        kind = ev.get("event")
        t = ev.get("t") or now
        if kind == "job_info":
            jobid = ev["jobid"]
            old = self.current.get(jobid)
            attempt = Job(
                jobid=jobid,
                rule=ev.get("rule") or "?",
                wildcards=ev.get("wildcards") or {},
                threads=ev.get("threads"),
                resources=ev.get("resources") or {},
                log=ev.get("log") or [],
                benchmark=ev.get("benchmark"),
                inputs=ev.get("input") or [],
                outputs=ev.get("output") or [],
                attempt=(old.attempt + 1) if old else 1,
                console_log=self.console_log,
                started=t,  # Snakemake logs a job's info when it starts it
            )
            self.current[jobid] = attempt
            self.jobs.append(attempt)
            return attempt
        job = self.current.get(ev.get("jobid"))  # type: ignore[arg-type]
        if job is None:
            return None
        if kind in ("job_finished", "job_error"):
            if job.finished is not None:
                return None
            if kind == "job_error":
                job.failed = "see its log" if job.log else "no log (see the Snakemake log)"
            job.finished = t
            return job
        if kind == "external_jobid":
            job.external_jobid = str(ev.get("external_jobid"))
            return job
        return None

    def unfinished(self) -> list[Job]:
        return [job for job in self.current.values() if job.finished is None]


def read_jobs(events_file: str | Path) -> list[Job]:
    """Every job attempt of the run whose events ``events_file`` holds ([] without the file);
    a damaged line is skipped (the plugin writes one line per event, a kill may cut the last)."""
    book = JobBook()
    try:
        text = Path(events_file).read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(ev, dict):
            book.apply(ev)
    return book.jobs
