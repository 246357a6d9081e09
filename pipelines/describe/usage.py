"""Usage accounting: the usage record of one version (``_meta/usage.json``) and the billing report.

Where the figures come from, per Snakemake job:

* **the job's benchmark file** (every rule has ``benchmark:``; the profiles set
  ``benchmark-extended``): wall and CPU seconds, max RSS, I/O, and (extended format) the
  Snakemake job id, threads and resources (``mem_mb``, ``runtime``) the job was given.  The job
  writes it itself, next to its outputs, so it exists whatever the executor.
* **the job records of the run** (:func:`pipelines.describe.jobs.read_jobs`: the logger
  plugin's events in ``_meta/snakemake-events.jsonl``, the record the report and the Prefect
  reporter read too): which outputs belong to which job id and, on Slurm, the Slurm job id of
  each attempt.
* **Snakemake's metadata** (``<work>/.snakemake/metadata``, when present): the exact inputs of
  each output and the job's start and end time.
* **Slurm accounting** (``sacct``, matched by Slurm job id) when the jobs ran on Slurm:
  CPUTimeRAW (allocated core-seconds, what a cluster charges), ElapsedRaw, TotalCPU, MaxRSS,
  AllocTRES (with ``gres/gpu``).

Core-hours are *allocated* cores x wall time (Slurm's CPUTimeRAW; locally threads x wall
seconds), GPU-hours allocated GPUs x wall time: what a facility charges, not what a process
happened to use (that is ``cpu_s``).  See docs/formats/store.md, "Usage record".
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipelines.describe.jobs import Job, as_number, parse_benchmark, read_jobs
from pipelines.describe.support_units import safe_cell
from pipelines.toolkit.stage import StagedDataset

log = logging.getLogger(__name__)

USAGE_FORMAT = "binds-usage"
USAGE_FORMAT_VERSION = 1
USAGE_PATH = "_meta/usage.json"
#: average month (days) for GB-months
MONTH_DAYS = 365.25 / 12
SACCT_FIELDS = (
    "JobID",
    "JobName",
    "State",
    "CPUTimeRAW",
    "ElapsedRaw",
    "TotalCPU",
    "MaxRSS",
    "AllocTRES",
    "NodeList",
    "Start",
    "End",
)

_SIZE = re.compile(r"^([0-9.]+)([KMGTP]?)$")


# ----------------------------------------------------------------------------- parsing
def snakemake_metadata(work_dir: str | Path, output: str) -> dict[str, Any] | None:
    """Snakemake's file-backed metadata record of one output (``.snakemake/metadata``): rule,
    exact inputs, start and end time. None when there is none (another persistence backend)."""
    folder = os.path.join(work_dir, ".snakemake", "metadata")
    b64 = base64.urlsafe_b64encode(output.encode()).decode()
    try:
        max_len = os.pathconf(folder, "PC_NAME_MAX") or 255
    except OSError:
        return None
    # long names are split into folders of max_len - 1 characters prefixed "@" (as Snakemake does)
    chunks = [b64[i : i + max_len - 1] for i in range(0, len(b64), max_len - 1)]
    path = os.path.join(folder, *(["@" + c for c in chunks[:-1]] + [chunks[-1]]))
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None


def parse_size_mb(text: str | None) -> float | None:
    """``sacct`` memory figures (``123456K``, ``1.5G``, plain bytes) in MiB."""
    if not text:
        return None
    m = _SIZE.match(text.strip())
    if not m:
        return None
    scale = {"": 1 / 2**20, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "P": 1024**3}[
        m.group(2)
    ]
    return float(m.group(1)) * scale


def parse_duration_s(text: str | None) -> float | None:
    """Slurm durations (``[D-]HH:MM:SS[.mmm]``, ``MM:SS.mmm``) in seconds."""
    if not text or text in ("INVALID", "Unknown"):
        return None
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        days = int(d)
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return None
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return days * 86400 + seconds


def parse_tres(text: str | None) -> dict[str, str]:
    """``cpu=2,mem=600M,node=1,billing=2,gres/gpu=1`` as a dict."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


def tres_gpus(tres: dict[str, str]) -> int:
    for key in ("gres/gpu", "gpu"):
        if key in tres:
            try:
                return int(float(tres[key]))
            except ValueError:
                return 0
    return 0


def query_sacct(
    job_ids: Sequence[str], *, sacct: str = "sacct", timeout_s: float = 60
) -> dict[str, dict[str, Any]] | None:
    """``sacct`` figures by Slurm job id (allocation row, MaxRSS the largest of its steps).

    None when ``sacct`` is missing or fails (accounting disabled): the record says so.
    """
    if not job_ids or not shutil.which(sacct):
        return None
    cmd = [
        sacct,
        "-P",
        "-n",
        "--noconvert",
        "-j",
        ",".join(job_ids),
        "--format=" + ",".join(SACCT_FIELDS),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("sacct failed: %s", err)
        return None
    if proc.returncode != 0:
        log.warning("sacct failed (exit %d): %s", proc.returncode, proc.stderr.strip()[:300])
        return None
    return parse_sacct(proc.stdout)


def parse_sacct(text: str) -> dict[str, dict[str, Any]]:
    """Rows of ``sacct -P -n --format=<SACCT_FIELDS>`` folded per job allocation."""
    jobs: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) < len(SACCT_FIELDS):
            continue
        row = dict(zip(SACCT_FIELDS, cells[: len(SACCT_FIELDS)], strict=True))
        job_id, _, step = row["JobID"].partition(".")
        rec = jobs.setdefault(job_id, {"job_id": job_id, "max_rss_mb": None, "steps": 0})
        rss = parse_size_mb(row["MaxRSS"])
        if rss is not None:
            rec["max_rss_mb"] = max(rec["max_rss_mb"] or 0.0, rss)
        if step:
            rec["steps"] += 1
            continue
        tres = parse_tres(row["AllocTRES"])
        rec.update(
            {
                "job_name": row["JobName"],
                "state": row["State"],
                "cpu_time_raw_s": as_number(row["CPUTimeRAW"]) if row["CPUTimeRAW"] else None,
                "elapsed_raw_s": as_number(row["ElapsedRaw"]) if row["ElapsedRaw"] else None,
                "total_cpu_s": parse_duration_s(row["TotalCPU"]),
                "alloc_tres": row["AllocTRES"],
                "alloc_cpus": as_number(tres.get("cpu")) if tres.get("cpu") else None,
                "gpus": tres_gpus(tres),
                "node": row["NodeList"],
                "start": row["Start"],
                "end": row["End"],
            }
        )
    return jobs


# ----------------------------------------------------------------------------- the record
def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def _gpus_requested(resources: dict[str, Any]) -> int:
    for key in ("gpu", "gpus", "nvidia_gpu"):
        v = resources.get(key)
        if isinstance(v, (int, float)):
            return int(v)
    gres = str(resources.get("gres") or "")
    m = re.search(r"gpu(?::[^:,]+)?:(\d+)", gres)
    return int(m.group(1)) if m else 0


def collect_jobs(
    stage: StagedDataset,
    *,
    sacct_rows: dict[str, dict[str, Any]] | None = None,
    use_sacct: bool = True,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every Snakemake job of the staged run with its figures, and notes on what is missing.

    ``sacct_rows`` (tests, or figures fetched elsewhere) replaces the ``sacct`` call.
    """
    notes: list[str] = []
    log_jobs = _by_jobid(read_jobs(stage.events_file))
    root = stage.root.resolve()  # the events name absolute paths
    records = _benchmark_records(root, log_jobs, notes)
    slurm_ids = sorted(
        {sid for j in log_jobs.values() for sid in j.get("slurm_job_ids", [])}, key=_sort_key
    )
    if slurm_ids and sacct_rows is None and use_sacct:
        sacct_rows = query_sacct(slurm_ids)
        if sacct_rows is None:
            notes.append(
                "the jobs ran on Slurm but sacct gave no figures (accounting disabled, or "
                "not reachable from the publishing host): benchmark figures are used"
            )
    jobs = []
    for jid, rec in records.items():
        lj = log_jobs.get(jid, {}) if isinstance(jid, int) else {}
        job = _job_record(jid, rec, lj, work_dir=str(root.parent))
        if rec["bench"] is None:
            notes.append(f"job {jid} ({job['rule']}) has no benchmark file: no figures")
        attempts = [
            (sacct_rows or {}).get(sid) or {"job_id": sid} for sid in lj.get("slurm_job_ids", [])
        ]
        if attempts:
            job["slurm"] = attempts
        jobs.append(_with_charged(job))
    jobs.sort(key=lambda j: (j["start"] or "", _sort_key(str(j["jobid"]))))
    return jobs, notes


def _by_jobid(jobs: list[Job]) -> dict[int, dict[str, Any]]:
    """Each Snakemake job id's latest attempt, with the Slurm job ids of all its attempts."""
    out: dict[int, dict[str, Any]] = {}
    for job in jobs:
        before = out.get(job.jobid, {}).get("slurm_job_ids", [])
        out[job.jobid] = {
            "rule": job.rule,
            "input": job.inputs,
            "output": job.outputs,
            "benchmark": [job.benchmark] if job.benchmark else [],
            "threads": job.threads,
            "resources": job.resources,
            "wildcards": job.wildcards,
            "slurm_job_ids": before + ([job.external_jobid] if job.external_jobid else []),
        }
    return out


def _benchmark_records(
    root: Path, log_jobs: dict[Any, dict[str, Any]], notes: list[str]
) -> dict[int | str, dict[str, Any]]:
    """Job id -> its parsed benchmark file (or None), for every job the events or a file name."""
    by_bench: dict[str, int] = {}
    for jid, j in log_jobs.items():
        for b in j.get("benchmark", []):
            by_bench[os.path.realpath(b)] = jid
    bench_dir = root / "_meta" / "benchmarks"
    records: dict[int | str, dict[str, Any]] = {}
    for tsv in sorted(bench_dir.rglob("*.tsv")) if bench_dir.is_dir() else []:
        bench = parse_benchmark(tsv)
        if bench is None:
            notes.append(f"unreadable benchmark file {tsv.relative_to(root).as_posix()}")
            continue
        # the events name each job's benchmark file; the extended format's jobid is only the
        # main workflow's on the local executor (a Slurm job numbers its own jobs from 0)
        jid = by_bench.get(os.path.realpath(tsv))
        if jid is None:
            jid = (
                bench.get("jobid")
                if bench.get("jobid") is not None
                else tsv.relative_to(bench_dir).as_posix()
            )
        records[jid] = {"benchmark_path": tsv.relative_to(root).as_posix(), "bench": bench}
    for jid, j in log_jobs.items():
        if j.get("rule") and j["rule"] != "all" and jid not in records:
            records[jid] = {"benchmark_path": None, "bench": None}
    return records


def _job_record(
    jid: int | str, rec: dict[str, Any], lj: dict[str, Any], *, work_dir: str
) -> dict[str, Any]:
    """One job's figures: benchmark file first, then Snakemake's log and metadata."""
    bench = rec["bench"] or {}
    rule = bench.get("rule") or lj.get("rule") or Path(rec["benchmark_path"] or "unknown").stem
    resources = dict(bench.get("resources") or lj.get("resources") or {})
    threads = bench.get("threads") or lj.get("threads") or resources.get("_cores") or 1
    outputs = lj.get("output", [])
    md = next((m for o in outputs[:3] if (m := snakemake_metadata(work_dir, o))), None)
    inputs = (md or {}).get("input") or lj.get("input", [])
    end = (md or {}).get("endtime") or bench.get("mtime")
    start = (md or {}).get("starttime")
    if start is None and end is not None and bench.get("wall_s") is not None:
        start = end - bench["wall_s"]
    return {
        "jobid": jid,
        "rule": rule,
        "wildcards": bench.get("wildcards") or lj.get("wildcards") or {},
        "threads": int(threads),
        "mem_mb": as_number(resources.get("mem_mb")),
        "runtime_min": as_number(resources.get("runtime")),
        "gpus_requested": _gpus_requested(resources),
        "start": _iso(start),
        "end": _iso(end),
        "input": inputs,
        "output": outputs,
        "params": bench.get("params") or {},
        "wall_s": bench.get("wall_s"),
        "cpu_s": bench.get("cpu_s"),
        "max_rss_mb": bench.get("max_rss_mb"),
        "io_in_mb": bench.get("io_in_mb"),
        "io_out_mb": bench.get("io_out_mb"),
        "source": "benchmark" if rec["bench"] else "none",
        # the rule's own processes, as Snakemake measured them (psutil, sampled every 0.5-30 s)
        "benchmark": {
            "path": rec["benchmark_path"],
            **{k: bench.get(k) for k in ("wall_s", "cpu_s", "max_rss_mb", "mean_load", "repeats")},
        }
        if rec["bench"]
        else None,
    }


def _slurm_time(text: str | None) -> str | None:
    """``2026-12-01T17:51:07`` (sacct, local time of this host) as ISO 8601 UTC."""
    try:
        local = dt.datetime.fromisoformat(text or "")
    except ValueError:
        return None
    return local.astimezone(dt.UTC).isoformat(timespec="seconds")


def _sort_key(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 62, text)


def _with_charged(job: dict[str, Any]) -> dict[str, Any]:
    """Settle the job's figures: where sacct answered, Slurm's accounting of the whole job (every
    attempt) replaces the benchmark's wall, CPU and memory figures; add what is charged,
    ``core_s`` (allocated cores x wall) and ``gpu_s``."""
    attempts = [a for a in job.get("slurm", []) if a.get("cpu_time_raw_s") is not None]
    if attempts:
        job["wall_s"] = float(sum(a.get("elapsed_raw_s") or 0 for a in attempts))
        totals = [a["total_cpu_s"] for a in attempts if a.get("total_cpu_s") is not None]
        if totals:
            job["cpu_s"] = round(float(sum(totals)), 3)
        rss = [a["max_rss_mb"] for a in attempts if a.get("max_rss_mb") is not None]
        if rss:  # empty when the job ended before Slurm's first sample
            job["max_rss_mb"] = max(rss + ([job["max_rss_mb"]] if job.get("max_rss_mb") else []))
        # Slurm's start and end (the cluster's local time) rather than the submitting process's
        starts = [s for a in attempts if (s := _slurm_time(a.get("start")))]
        ends = [e for a in attempts if (e := _slurm_time(a.get("end")))]
        if starts and ends:
            job["start"], job["end"] = min(starts), max(ends)
        job["core_s"] = float(sum(a["cpu_time_raw_s"] for a in attempts))
        job["gpu_s"] = float(
            sum((a.get("gpus") or 0) * (a.get("elapsed_raw_s") or 0) for a in attempts)
        )
        job["source"] = "sacct"
    else:
        wall = job.get("wall_s") or 0.0
        job["core_s"] = float(job["threads"] * wall)
        job["gpu_s"] = float(job["gpus_requested"] * wall)
    return job


def summarise(jobs: Iterable[dict[str, Any]], *, stored_bytes: int) -> dict[str, Any]:
    """The totals of a usage record (also the catalog row's usage columns)."""
    jobs = list(jobs)
    rss = [j["max_rss_mb"] for j in jobs if j.get("max_rss_mb") is not None]
    return {
        "jobs": len(jobs),
        "slurm_jobs": sum(len(j.get("slurm", [])) for j in jobs),
        "cpu_s": round(sum(j.get("cpu_s") or 0.0 for j in jobs), 3),
        "wall_s": round(sum(j.get("wall_s") or 0.0 for j in jobs), 3),
        "core_hours": round(sum(j["core_s"] for j in jobs) / 3600, 6),
        "gpu_hours": round(sum(j["gpu_s"] for j in jobs) / 3600, 6),
        "peak_rss_mb": round(max(rss), 3) if rss else None,
        "stored_bytes": int(stored_bytes),
    }


def build_usage(
    *,
    stage: StagedDataset,
    experiment: dict[str, Any],
    dataset_id: str,
    version: int,
    files: list[dict[str, Any]],
    created: str,
    extra_stored_bytes: int = 0,
    sacct_rows: dict[str, dict[str, Any]] | None = None,
    jobs: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The ``_meta/usage.json`` document of one version (a plain dict).

    ``files`` are the version's data/ and qc/ files (path, size, sha256); ``extra_stored_bytes``
    what else the version stores (metadata.jsonld); ``jobs``/``notes`` from :func:`collect_jobs`
    when the caller has them already.
    """
    if jobs is None:
        jobs, notes = collect_jobs(stage, sacct_rows=sacct_rows)
    notes = list(notes or [])
    run = stage.run_info
    inputs = run.get("inputs", [])
    stored = sum(int(f["size"]) for f in files) + int(extra_stored_bytes)
    executor = "slurm" if any(j.get("slurm") for j in jobs) else "local"
    return {
        "format": USAGE_FORMAT,
        "format_version": USAGE_FORMAT_VERSION,
        "dataset_id": dataset_id,
        "version": version,
        "request_id": experiment.get("request_id"),
        "modality": experiment.get("modality"),
        "support_unit": experiment.get("support_unit"),
        "instrument": experiment.get("instrument"),
        "created": created,
        "run": {
            "started": run.get("started"),
            "staged": run.get("staged"),
            "workflow": run.get("workflow"),
            "inputs": len(inputs),
            "input_bytes": sum(int(i.get("size") or 0) for i in inputs),
            "inputs_digest": inputs_digest(inputs),
        },
        "executor": executor,
        "totals": summarise(jobs, stored_bytes=stored),
        # the file lists and params are in the crate; the usage record keeps the figures
        "jobs": [
            {k: v for k, v in j.items() if k not in ("input", "output", "params")} for j in jobs
        ],
        "notes": notes,
    }


#: Inputs that are metadata, not instrument output: a fix to them (a licence, a title) is a new
#: version of the same instrument run, not a second run to bill.
METADATA_INPUTS = frozenset({"experiment.yaml", "experiment.yml"})


def inputs_digest(inputs: Iterable[dict[str, Any]]) -> str:
    """Identity of an instrument run: sha256 over its raw files' sorted ``name size sha256``
    (the run folder's metadata, :data:`METADATA_INPUTS`, left out)."""
    import hashlib

    h = hashlib.sha256()
    raw = [i for i in inputs if str(i.get("name", "")) not in METADATA_INPUTS]
    for i in sorted(raw, key=lambda i: i.get("name", "")):
        h.update(f"{i.get('name')}\t{i.get('size')}\t{i.get('sha256')}\n".encode())
    return "sha256:" + h.hexdigest()


# ----------------------------------------------------------------------------- the report
#: the billing services a usage report charges, with their unit
SERVICES = (
    ("compute", "core_hours", "core-hour"),
    ("gpu", "gpu_hours", "GPU-hour"),
    ("storage", "gb_months", "GB-month"),
    ("instrument", "instrument_runs", "run"),
)
GROUPINGS = ("request", "unit", "month")


def _utc(value: dt.datetime | dt.date | str) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _month_start(t: dt.datetime) -> dt.datetime:
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(t: dt.datetime) -> dt.datetime:
    return (t.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def version_usage(
    store: Any,
    *,
    request: str | None = None,
    levels: Iterable[str] | None = None,
    unreadable: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One dict per committed version: the catalog row's usage columns, plus the support unit and
    the instrument run's identity from its ``_meta/usage.json`` (older versions: catalog only).

    ``levels``: only these access levels (default all); ``unreadable`` receives the levels whose
    catalog the store refused."""
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.describe.catalog import StoreSource, read_catalog
    from pipelines.progress import counting
    from pipelines.store.base import StoreError
    from pipelines.store.identifiers import ACCESS_LEVELS

    rows = [
        row
        for row in read_catalog(
            store, levels=list(levels or ACCESS_LEVELS), unreadable=unreadable
        ).to_pylist()
        if not request or row["request_id"] == request
    ]

    def usage_doc(row: dict[str, Any]) -> dict[str, Any] | None:
        try:
            doc = json.loads(store.get(row["path"] + USAGE_PATH))
        except (KeyError, StoreError, json.JSONDecodeError):
            return None  # published before usage records: the catalog row's figures only
        finally:
            advance(1)
        return doc if isinstance(doc, dict) else None

    # each version's usage record once, in parallel on S3 (16 at a time)
    with (
        counting("reading usage records", len(rows)) as advance,
        ThreadPoolExecutor(max_workers=StoreSource(store).workers) as pool,
    ):
        docs = list(pool.map(usage_doc, rows))
    out = []
    for row, doc in zip(rows, docs, strict=True):
        rec = {
            "request_id": row["request_id"] or "",
            "dataset_id": row["dataset_id"],
            "version": row["version"],
            "modality": row["modality"],
            "created": row["created"],
            "core_hours": row.get("core_hours") or 0.0,
            "gpu_hours": row.get("gpu_hours") or 0.0,
            "peak_rss_mb": row.get("peak_rss_mb"),
            "stored_bytes": row.get("stored_bytes")
            if row.get("stored_bytes") is not None
            else (row.get("bytes") or 0),
            "support_unit": "",
            "run_id": f"{row['dataset_id']}@{row['content_digest']}",
        }
        if doc is not None:
            rec["support_unit"] = doc.get("support_unit") or ""
            rec["run_id"] = (doc.get("run") or {}).get("inputs_digest") or rec["run_id"]
        out.append(rec)
    return out


def usage_report(
    versions: Iterable[dict[str, Any]],
    *,
    since: dt.datetime | dt.date | str | None = None,
    until: dt.datetime | dt.date | str | None = None,
    by: str = "request",
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``binds usage``: per request (or support unit, or month) in [since, until).

    Compute (core-/GPU-hours, peak memory) and instrument runs count in the period in which the
    version was published; storage accrues from publication on (versions are never deleted):
    GB-months over the overlap with the period, stored GB as held at its end.
    """
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {GROUPINGS}")
    versions = list(versions)
    end = _utc(until) if until is not None else _utc(now or dt.datetime.now(dt.UTC))
    start = (
        _utc(since)
        if since is not None
        else min((_utc(v["created"]) for v in versions), default=end)
    )
    periods = _month_periods(start, end) if by == "month" else [(start, end)]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    runs: dict[tuple[str, str], set[str]] = {}
    for p_start, p_end in periods:
        for v in versions:
            created = _utc(v["created"])
            if created >= p_end:
                continue
            key = {
                "request": v["request_id"],
                "unit": v["support_unit"],
                "month": p_start.strftime("%Y-%m"),
            }[by]
            row = rows.setdefault((key, p_start.isoformat()), _empty_row(by, key, p_start, p_end))
            gb = (v["stored_bytes"] or 0) / 1e9
            row["stored_gb"] += gb
            held = (p_end - max(created, p_start)).total_seconds() / 86400
            row["gb_months"] += gb * max(held, 0.0) / MONTH_DAYS
            row["requests"].add(v["request_id"])
            row["units"].add(v["support_unit"])
            if created >= p_start:  # published in this period: its compute is charged here
                row["versions"] += 1
                row["core_hours"] += v["core_hours"] or 0.0
                row["gpu_hours"] += v["gpu_hours"] or 0.0
                if v.get("peak_rss_mb") is not None:
                    row["peak_rss_mb"] = max(row["peak_rss_mb"] or 0.0, v["peak_rss_mb"])
                runs.setdefault((key, p_start.isoformat()), set()).add(v["run_id"])
    out = []
    for k, row in sorted(rows.items()):
        row["instrument_runs"] = len(runs.get(k, ()))
        row["requests"] = sorted(r for r in row["requests"] if r)
        row["units"] = sorted(u for u in row["units"] if u)
        for f in ("core_hours", "gpu_hours", "stored_gb", "gb_months"):
            row[f] = round(row[f], 6)
        out.append(row)
    return out


def _month_periods(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Calendar months covering [start, end), clipped to it."""
    periods, t = [], _month_start(start)
    while t < end:
        periods.append((max(t, start), min(_next_month(t), end)))
        t = _next_month(t)
    return periods


def _empty_row(by: str, key: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    return {
        by: key,
        "period_start": start,
        "period_end": end,
        "versions": 0,
        "instrument_runs": 0,
        "core_hours": 0.0,
        "gpu_hours": 0.0,
        "peak_rss_mb": None,
        "stored_gb": 0.0,
        "gb_months": 0.0,
        "requests": set(),
        "units": set(),
    }


def billing_lines(rows: Iterable[dict[str, Any]], *, by: str = "request") -> list[dict[str, Any]]:
    """The report as facility-billing lines (iLab / PPMS style imports): one per request (or
    unit / month), service and period, non-zero quantities only."""
    lines = []
    for row in rows:
        last_day = (row["period_end"] - dt.timedelta(seconds=1)).date()  # periods end exclusive
        period = f"{row['period_start'].date().isoformat()}/{last_day.isoformat()}"
        for service, field_name, unit in SERVICES:
            quantity = round(float(row[field_name]), 4)
            if not quantity:
                continue
            lines.append(
                {
                    "request_id": row.get("request")
                    or (";".join(row["requests"]) if by != "request" else ""),
                    "service": service,
                    "quantity": quantity,
                    "unit": unit,
                    "period": period,
                    "support_unit": row.get("unit") or ";".join(row["units"]),
                }
            )
    return lines


def billing_csv(lines: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf,
        fieldnames=["request_id", "service", "quantity", "unit", "period", "support_unit"],
        lineterminator="\n",
    )
    writer.writeheader()
    # cells are data, never formulas, when the billing office opens the file in a spreadsheet
    writer.writerows({k: safe_cell(v) for k, v in line.items()} for line in lines)
    return buf.getvalue()
