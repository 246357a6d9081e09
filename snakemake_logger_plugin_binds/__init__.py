"""Snakemake logger plugin ``binds``: stream the workflow's events as JSON lines.

Snakemake finds logger plugins by module name (``snakemake_logger_plugin_<name>``), so this is
a top-level module of the binds-pipelines wheel.  ``binds run`` starts Snakemake with
``--logger binds`` and ``BINDS_SNAKEMAKE_EVENTS=<file>``; every log record becomes one JSON
line in that file, read by :mod:`pipelines.orchestrate.monitoring` while the workflow runs (each job
becomes a Prefect task run, every line reaches the flow run's log).  The file is also a
complete, machine-readable record of the run (``<stage>/_meta/snakemake-events.jsonl``).

Line format (one JSON object per line, ``t`` = Unix time in seconds)::

    {"t": 1764600000.1, "event": "job_info", "jobid": 3, "rule": "cryoem_fsc",
     "wildcards": {}, "threads": 2, "resources": {"mem_mb": 1200, "runtime": 10},
     "log": ["/abs/_meta/logs/cryoem_fsc.log"], "benchmark": "/abs/_meta/benchmarks/...tsv",
     "level": "INFO", "msg": "..."}
    {"t": ..., "event": "job_started", "jobs": [3, 4]}
    {"t": ..., "event": "job_finished", "jobid": 3}
    {"t": ..., "event": "job_error", "jobid": 3, "rule": "cryoem_fsc", "log": [...]}
    {"t": ..., "event": "external_jobid", "jobid": 3, "external_jobid": "1234", "executor": "slurm"}
    {"t": ..., "event": "progress", "done": 3, "total": 7}
    {"t": ..., "event": null, "level": "WARNING", "msg": "any other log line"}

Without ``BINDS_SNAKEMAKE_EVENTS`` (e.g. ``--logger binds`` typed by hand) the handler is
inert.  Only the main Snakemake process writes: the processes Snakemake starts inside a
Slurm job do not load this plugin.
"""

import json
import os
import re
import threading
from dataclasses import dataclass, field
from logging import LogRecord
from pathlib import Path
from typing import Any, Optional

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

EVENTS_ENV = "BINDS_SNAKEMAKE_EVENTS"
# executors announce their own job ids only as text (the interface has no field for it)
_EXTERNAL_ID = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    """``--logger-binds-events FILE`` overrides ``$BINDS_SNAKEMAKE_EVENTS``."""

    events: Optional[str] = field(  # noqa: UP045 (Snakemake calls the type: not `str | None`)
        default=None,
        metadata={
            "help": f"JSON-lines file to append the events to (default ${EVENTS_ENV})",
            "env_var": False,
            "required": False,
        },
    )


def _plain(value: Any) -> Any:
    """JSON-friendly copy of a log record attribute (Snakemake passes its own objects)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return str(value)


def _resources(resources: Any) -> dict[str, Any]:
    """``job.resources`` (a Mapping of Resource objects in Snakemake 9) as plain values."""
    out: dict[str, Any] = {}
    if resources is None:
        return out
    try:
        items = list(resources.items())
    except AttributeError:
        return out
    for name, res in items:
        if name.startswith("_"):  # _cores, _nodes: scheduler bookkeeping
            continue
        value = getattr(res, "value", res)
        if callable(value):
            continue
        out[name] = _plain(value)
    return out


def _paths(value: Any) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [str(Path(str(p)).absolute()) for p in items if p]


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        path = (
            self.settings.events
            if self.settings and self.settings.events
            else os.environ.get(EVENTS_ENV)
        )
        self._lock = threading.Lock()
        self._out = open(path, "a", buffering=1, encoding="utf-8") if path else None

    # --- the interface's declarations
    @property
    def writes_to_stream(self) -> bool:
        return False  # Snakemake keeps its own terminal output (binds reads it for progress)

    @property
    def writes_to_file(self) -> bool:
        return False  # an event stream, not a log file Snakemake should list at the end

    @property
    def has_filter(self) -> bool:
        return True  # every record: the flow decides what to show

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False

    def emit(self, record: LogRecord) -> None:
        if self._out is None:
            return
        try:
            line = json.dumps(self.event(record), default=str)
            with self._lock:
                self._out.write(line + "\n")
        except Exception:  # a monitoring fault must never break the workflow
            self.handleError(record)

    def close(self) -> None:
        if self._out is not None:
            with self._lock:
                self._out.close()
                self._out = None
        super().close()

    @staticmethod
    def event(record: LogRecord) -> dict[str, Any]:
        """The JSON object of one log record (see the module docstring)."""
        event = getattr(record, "event", None)
        name = str(event) if event is not None else None
        msg = record.getMessage() if record.args else str(record.msg or "")
        out: dict[str, Any] = {
            "t": round(record.created, 3),
            "event": name,
            "level": record.levelname,
            "msg": msg,
        }
        get = record.__dict__.get
        if name == "job_info":
            out |= {
                "jobid": get("jobid"),
                "rule": get("rule_name"),
                "rule_msg": get("rule_msg"),
                "wildcards": _plain(get("wildcards") or {}),
                "threads": get("threads"),
                "resources": _resources(get("resources")),
                "local": bool(get("local")),
                "input": _paths(get("input")),
                "output": _paths(get("output")),
                "log": _paths(get("log")),
                "benchmark": (_paths(get("benchmark")) or [None])[0],
                "reason": _plain(get("reason")),
            }
        elif name == "job_started":
            out["jobs"] = _plain(get("jobs") or [])
        elif name == "job_finished":
            out["jobid"] = get("job_id")
        elif name == "job_error":
            out |= {
                "jobid": get("jobid"),
                "rule": get("rule_name"),
                "log": _paths(get("log")),
                "aux": _plain(get("aux") or {}),
            }
        elif name == "progress":
            out |= {"done": get("done"), "total": get("total")}
        elif name == "run_info":
            out["stats"] = _plain(get("stats") or {})
        elif name == "error":
            out["exception"] = _plain(get("exception"))
        elif m := _EXTERNAL_ID.search(msg):
            out |= {
                "event": "external_jobid",
                "jobid": int(m.group(1)),
                "external_jobid": m.group(2),
                "executor": "slurm",
            }
        return out


__all__ = ["EVENTS_ENV", "LogHandler", "LogHandlerSettings"]
