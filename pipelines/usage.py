"""Usage accounting: the usage record of one version (``_meta/usage.json``) and the billing report.

Where the figures come from, per Snakemake job:

* **the job's benchmark file** (every rule has ``benchmark:``; the profiles set
  ``benchmark-extended``): wall and CPU seconds, max RSS, I/O, and (extended format) the
  Snakemake job id, threads and resources (``mem_mb``, ``runtime``) the job was given.  The job
  writes it itself, next to its outputs, so it exists whatever the executor.
* **Snakemake's own log** (``_meta/snakemake.log``, captured by ``binds run``): which outputs
  belong to which job id and, on Slurm, ``Job N has been submitted with SLURM jobid M``.
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

import ast
import base64
import binascii
import csv
import datetime as dt
import io
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipelines.staging import StagedDataset

log = logging.getLogger(__name__)

USAGE_FORMAT = "binds-usage"
USAGE_FORMAT_VERSION = 1
USAGE_PATH = "_meta/usage.json"
#: average month (days) for GB-months
MONTH_DAYS = 365.25 / 12
SACCT_FIELDS = ("JobID", "JobName", "State", "CPUTimeRAW", "ElapsedRaw", "TotalCPU", "MaxRSS",
                "AllocTRES", "NodeList", "Start", "End")

_JOB_HEADER = re.compile(r"^(?:local)?rule (\S+):\s*$")
_JOB_FIELD = re.compile(r"^\s{4}(\w+): (.*)$")
_SLURM_SUBMIT = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\S+?)[ .]")
_SIZE = re.compile(r"^([0-9.]+)([KMGTP]?)$")


# ----------------------------------------------------------------------------- parsing
def parse_snakemake_log(path: str | Path) -> dict[int, dict[str, Any]]:
    """Job blocks of a Snakemake log by Snakemake job id: rule, input, output, benchmark, threads,
    resources, wildcards, and the Slurm job ids it was submitted as (one per attempt)."""
    jobs: dict[int, dict[str, Any]] = {}
    path = Path(path)
    if not path.is_file():
        return jobs
    block: dict[str, Any] | None = None  # the job being read; fields after jobid go to it too
    for line in path.read_text(errors="replace").splitlines():
        if m := _JOB_HEADER.match(line):
            block = {"rule": m.group(1)}
            continue
        if block is not None and (m := _JOB_FIELD.match(line)):
            key, value = m.group(1), m.group(2).strip()
            if key in ("input", "output", "log", "benchmark"):
                block[key] = [v for v in value.split(", ") if v]
            elif key == "jobid":
                block = jobs.setdefault(int(value), {}) | block
                jobs[int(value)] = block
            elif key == "threads":
                block["threads"] = int(value)
            elif key in ("resources", "wildcards"):
                block[key] = _key_values(value)
            continue
        block = None
        if m := _SLURM_SUBMIT.search(line):
            jobs.setdefault(int(m.group(1)), {}).setdefault("slurm_job_ids", []).append(m.group(2))
    return jobs


def _key_values(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in text.split(", "):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = _number(value.strip())
    return out


def _number(value: Any) -> Any:
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
        out["jobid"] = _number(row["jobid"])
        out["rule"] = row.get("rule_name")
        out["threads"] = _number(row.get("threads"))
        out["wildcards"] = _literal(row.get("wildcards") or "") or {}
        out["resources"] = _literal(row.get("resources") or "") or {}
        params = _literal(row.get("params") or "")
        out["params"] = params if isinstance(params, dict) else {}
    return out


def read_snakemake_metadata(work_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Snakemake's file-backed metadata (``.snakemake/metadata``): output path -> record."""
    folder = Path(work_dir) / ".snakemake" / "metadata"
    out: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return out
    for f in folder.iterdir():
        try:
            key = base64.urlsafe_b64decode(f.name.encode()).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            try:
                key = base64.b64decode(f.name.encode()).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
        try:
            out[key] = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return out


def parse_size_mb(text: str | None) -> float | None:
    """``sacct`` memory figures (``123456K``, ``1.5G``, plain bytes) in MiB."""
    if not text:
        return None
    m = _SIZE.match(text.strip())
    if not m:
        return None
    scale = {"": 1 / 2**20, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "P": 1024**3}[m.group(2)]
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


def query_sacct(job_ids: Sequence[str], *, sacct: str = "sacct",
                timeout_s: float = 60) -> dict[str, dict[str, Any]] | None:
    """``sacct`` figures by Slurm job id (allocation row, MaxRSS the largest of its steps).

    None when ``sacct`` is missing or fails (accounting disabled): the record says so.
    """
    if not job_ids or not shutil.which(sacct):
        return None
    cmd = [sacct, "-P", "-n", "--noconvert", "-j", ",".join(job_ids),
           "--format=" + ",".join(SACCT_FIELDS)]
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
        row = dict(zip(SACCT_FIELDS, cells))
        job_id, _, step = row["JobID"].partition(".")
        rec = jobs.setdefault(job_id, {"job_id": job_id, "max_rss_mb": None, "steps": 0})
        rss = parse_size_mb(row["MaxRSS"])
        if rss is not None:
            rec["max_rss_mb"] = max(rec["max_rss_mb"] or 0.0, rss)
        if step:
            rec["steps"] += 1
            continue
        tres = parse_tres(row["AllocTRES"])
        rec.update({
            "job_name": row["JobName"],
            "state": row["State"],
            "cpu_time_raw_s": _number(row["CPUTimeRAW"]) if row["CPUTimeRAW"] else None,
            "elapsed_raw_s": _number(row["ElapsedRaw"]) if row["ElapsedRaw"] else None,
            "total_cpu_s": parse_duration_s(row["TotalCPU"]),
            "alloc_tres": row["AllocTRES"],
            "alloc_cpus": _number(tres.get("cpu")) if tres.get("cpu") else None,
            "gpus": tres_gpus(tres),
            "node": row["NodeList"],
            "start": row["Start"],
            "end": row["End"],
        })
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


def collect_jobs(stage: StagedDataset, *, sacct_rows: dict[str, dict[str, Any]] | None = None,
                 use_sacct: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """Every Snakemake job of the staged run with its figures, and notes on what is missing.

    ``sacct_rows`` (tests, or figures fetched elsewhere) replaces the ``sacct`` call.
    """
    notes: list[str] = []
    log_jobs = parse_snakemake_log(stage.meta_dir / "snakemake.log")
    meta = read_snakemake_metadata(stage.root.parent)
    by_bench: dict[str, int] = {}
    for jid, j in log_jobs.items():
        for b in j.get("benchmark", []):
            by_bench[str(Path(b).resolve())] = jid
    bench_dir = stage.meta_dir / "benchmarks"
    records: dict[int | str, dict[str, Any]] = {}
    for tsv in sorted(bench_dir.rglob("*.tsv")) if bench_dir.is_dir() else []:
        bench = parse_benchmark(tsv)
        if bench is None:
            notes.append(f"unreadable benchmark file {tsv.relative_to(stage.root).as_posix()}")
            continue
        jid = bench.get("jobid")
        if jid is None:
            jid = by_bench.get(str(tsv.resolve()), tsv.relative_to(bench_dir).as_posix())
        records[jid] = {"benchmark_path": tsv.relative_to(stage.root).as_posix(), "bench": bench}
    for jid, j in log_jobs.items():
        if j.get("rule") and j["rule"] != "all" and jid not in records:
            records[jid] = {"benchmark_path": None, "bench": None}
    slurm_ids = sorted({sid for j in log_jobs.values() for sid in j.get("slurm_job_ids", [])}, key=_sort_key)
    if slurm_ids and sacct_rows is None and use_sacct:
        sacct_rows = query_sacct(slurm_ids)
        if sacct_rows is None:
            notes.append("the jobs ran on Slurm but sacct gave no figures (accounting disabled, or "
                         "not reachable from the publishing host): benchmark figures are used")
    jobs = []
    for jid, rec in records.items():
        lj = log_jobs.get(jid, {}) if isinstance(jid, int) else {}
        bench = rec["bench"] or {}
        rule = bench.get("rule") or lj.get("rule") or Path(rec["benchmark_path"] or "unknown").stem
        resources = dict(bench.get("resources") or lj.get("resources") or {})
        threads = bench.get("threads") or lj.get("threads") or resources.get("_cores") or 1
        outputs = lj.get("output", [])
        md = next((meta[o] for o in outputs if o in meta), None)
        inputs = (md or {}).get("input") or lj.get("input", [])
        end = (md or {}).get("endtime") or bench.get("mtime")
        start = (md or {}).get("starttime")
        if start is None and end is not None and bench.get("wall_s") is not None:
            start = end - bench["wall_s"]
        job: dict[str, Any] = {
            "jobid": jid,
            "rule": rule,
            "wildcards": bench.get("wildcards") or lj.get("wildcards") or {},
            "threads": int(threads),
            "mem_mb": _number(resources.get("mem_mb")),
            "runtime_min": _number(resources.get("runtime")),
            "gpus_requested": _gpus_requested(resources),
            "start": _iso(start),
            "end": _iso(end),
            "input": inputs,
            "output": outputs,
            "params": bench.get("params") or {},
            "benchmark": rec["benchmark_path"],
            "wall_s": bench.get("wall_s"),
            "cpu_s": bench.get("cpu_s"),
            "max_rss_mb": bench.get("max_rss_mb"),
            "io_in_mb": bench.get("io_in_mb"),
            "io_out_mb": bench.get("io_out_mb"),
            "source": "benchmark" if rec["bench"] else "none",
        }
        if rec["bench"] is None:
            notes.append(f"job {jid} ({rule}) has no benchmark file: no figures")
        attempts = [(sacct_rows or {}).get(sid) or {"job_id": sid} for sid in lj.get("slurm_job_ids", [])]
        if attempts:
            job["slurm"] = attempts
        jobs.append(_with_charged(job))
    jobs.sort(key=lambda j: (j["start"] or "", _sort_key(str(j["jobid"]))))
    return jobs, notes


def _sort_key(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 62, text)


def _with_charged(job: dict[str, Any]) -> dict[str, Any]:
    """Add what is charged: ``core_s`` (allocated cores x wall) and ``gpu_s``; Slurm's figures
    (every attempt) win over the benchmark's where sacct answered."""
    attempts = [a for a in job.get("slurm", []) if a.get("cpu_time_raw_s") is not None]
    wall = job.get("wall_s") or 0.0
    if attempts:
        job["core_s"] = float(sum(a["cpu_time_raw_s"] for a in attempts))
        job["gpu_s"] = float(sum((a.get("gpus") or 0) * (a.get("elapsed_raw_s") or 0) for a in attempts))
        job["elapsed_s"] = float(sum(a.get("elapsed_raw_s") or 0 for a in attempts))
        totals = [a["total_cpu_s"] for a in attempts if a.get("total_cpu_s") is not None]
        job["job_cpu_s"] = float(sum(totals)) if totals else None
        rss = [a["max_rss_mb"] for a in attempts if a.get("max_rss_mb") is not None]
        job["job_max_rss_mb"] = max(rss) if rss else None
        job["source"] = "sacct"
    else:
        job["core_s"] = float(job["threads"] * wall)
        job["gpu_s"] = float(job["gpus_requested"] * wall)
        job["elapsed_s"] = float(wall)
    return job


def summarise(jobs: Iterable[dict[str, Any]], *, stored_bytes: int) -> dict[str, Any]:
    """The totals of a usage record (also the catalog row's usage columns)."""
    jobs = list(jobs)
    rss = [v for j in jobs for v in (j.get("job_max_rss_mb"), j.get("max_rss_mb")) if v is not None]
    return {
        "jobs": len(jobs),
        "slurm_jobs": sum(len(j.get("slurm", [])) for j in jobs),
        "cpu_s": round(sum(j.get("cpu_s") or 0.0 for j in jobs), 3),
        "wall_s": round(sum(j.get("elapsed_s") or 0.0 for j in jobs), 3),
        "core_hours": round(sum(j["core_s"] for j in jobs) / 3600, 6),
        "gpu_hours": round(sum(j["gpu_s"] for j in jobs) / 3600, 6),
        "peak_rss_mb": round(max(rss), 3) if rss else None,
        "stored_bytes": int(stored_bytes),
    }


def build_usage(*, stage: StagedDataset, experiment: dict[str, Any], dataset_id: str, version: int,
                files: list[dict[str, Any]], created: str, extra_stored_bytes: int = 0,
                sacct_rows: dict[str, dict[str, Any]] | None = None,
                jobs: list[dict[str, Any]] | None = None, notes: list[str] | None = None) -> dict[str, Any]:
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
        "jobs": [{k: v for k, v in j.items() if k not in ("input", "output", "params")} for j in jobs],
        "notes": notes,
    }


def inputs_digest(inputs: Iterable[dict[str, Any]]) -> str:
    """Identity of an instrument run: sha256 over its raw inputs' sorted ``name size sha256``."""
    import hashlib

    h = hashlib.sha256()
    for i in sorted(inputs, key=lambda i: i.get("name", "")):
        h.update(f"{i.get('name')}\t{i.get('size')}\t{i.get('sha256')}\n".encode())
    return "sha256:" + h.hexdigest()
