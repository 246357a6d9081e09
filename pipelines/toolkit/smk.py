"""The one adapter every Snakemake ``script:`` uses to call a ``pipelines`` function.

A rule's script stays a few lines::

    from pipelines.toolkit.smk import run_step
    from pipelines.modalities.cryoem import convert_map

    run_step(snakemake, convert_map, src=snakemake.input.map, dest=snakemake.output.zarr)

``run_step`` sends logging to the rule's ``log:`` file and reports failures through
``<stage>/_meta/errors/<rule>-<n>.json``, which ``binds run`` (:mod:`pipelines.run.workflow`) reads:

* an :class:`InputError` becomes ``{"rule", "kind": "input", "problems": [...]}`` and exit
  status 2: the user sees each problem (file, place, hint) and ``binds run`` exits 2;
* any other exception (a bug, a broken environment, a file no reader expected) becomes
  ``{"rule", "kind": "crash", "input", "inputs", "exception", "message", "log"}`` and exit
  status 1; the traceback goes to the rule's log only, and the user sees one line naming the
  rule, the input file being read and the exception.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.errors import InputError

# the exception message in the one-line report: enough to recognise it, the rest is in the log
MESSAGE_CHARS = 200


def run_step(snakemake: Any, func: Callable[..., Any], /, **kwargs: Any) -> Any:
    log_path = snakemake.log[0] if len(snakemake.log) else None
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_path, mode="w")]
    logging.basicConfig(
        level=logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    inputs = [str(p) for p in snakemake.input]
    opened = _OpenedInputs(inputs, [str(p) for p in snakemake.output])
    _start_memory_guard(snakemake)
    try:
        with opened:
            return func(**kwargs)
    except InputError as err:
        _write_error(
            snakemake,
            {
                "rule": snakemake.rule,
                "kind": "input",
                "problems": [p.to_dict() for p in err.problems],
            },
        )
        logging.getLogger("pipelines").error("invalid input:\n%s", err)
        sys.exit(2)
    except Exception as err:
        logging.getLogger("pipelines").exception("rule %s failed", snakemake.rule)
        # a crash after the step began writing an output is a write failure, not a bad input
        reading = (
            None if opened.writing else opened.last or (inputs[0] if len(inputs) == 1 else None)
        )
        run_dir = snakemake.config.get("run_dir")
        stage_dir = snakemake.config.get("stage_dir")
        _write_error(
            snakemake,
            {
                "rule": snakemake.rule,
                "kind": "crash",
                "input": _shown(reading, run_dir) if reading else None,
                "output": _shown(opened.writing, stage_dir) if opened.writing else None,
                "inputs": [_shown(p, run_dir) for p in inputs],
                "exception": type(err).__name__,
                "message": _first_line(str(err)),
                "log": str(Path(log_path).resolve()) if log_path else None,
            },
        )
        sys.exit(1)


#: how often the memory guard measures the job (seconds): fine enough that an allocation
#: loop cannot run far past the limit, cheap (one /proc read per process of the job)
GUARD_INTERVAL = 0.05
MEMORY_EXCEEDED = "MemoryLimitExceeded"


def _start_memory_guard(snakemake: Any) -> None:
    """Hold the job to its ``mem_mb`` where no scheduler does (the local profile sets
    ``enforce_mem_mb`` in the config; Slurm / Kubernetes / Batch enforce it themselves).

    A thread sums the resident memory of this process and its children; past the limit the
    job's children are killed and it exits 1 with a crash record naming the rule and its limit
    (printed by ``binds run`` as one line; Snakemake removes the job's outputs, nothing is
    published).  Resident memory is what a scheduler's cgroup counts; an address-space limit
    (RLIMIT_AS) would also count untouched thread stacks and allocator reservations and fail
    jobs that fit."""
    if not snakemake.config.get("enforce_mem_mb"):
        return
    mem_mb = getattr(snakemake.resources, "mem_mb", None)
    if not mem_mb:
        return
    import threading

    import psutil  # a dependency of Snakemake

    limit = int(mem_mb) * 2**20
    me = psutil.Process()

    def used() -> int:
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def watch() -> None:
        while True:
            rss = used()
            if rss > limit:
                for child in me.children(recursive=True):
                    try:
                        child.kill()
                    except psutil.Error:
                        pass
                _write_error(
                    snakemake,
                    {
                        "rule": snakemake.rule,
                        "kind": "crash",
                        "input": None,
                        "inputs": [],
                        "exception": MEMORY_EXCEEDED,
                        "message": f"went over its memory limit of {int(mem_mb)} MB (mem_mb)",
                        "log": None,
                    },
                )
                logging.getLogger("pipelines").error(
                    "rule %s: %d MB resident, over its mem_mb of %d MB: stopped",
                    snakemake.rule,
                    rss // 2**20,
                    int(mem_mb),
                )
                logging.shutdown()
                _remove_partials([str(p) for p in snakemake.output])
                os._exit(1)  # at once: the allocating thread must not go on
            time.sleep(GUARD_INTERVAL)

    threading.Thread(target=watch, name="binds-memory-guard", daemon=True).start()


def _remove_partials(outputs: list[str]) -> None:
    """Delete the hidden temporaries steps write next to an output (``.<name>.partial``):
    Snakemake removes a failed job's declared outputs, and an exit without unwinding skips the
    step's own clean-up of its temporaries."""
    for out in outputs:
        folder, name = os.path.split(os.path.abspath(out))
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            if entry.startswith("." + name):
                try:
                    os.unlink(os.path.join(folder, entry))
                except OSError:
                    pass


def _write_error(snakemake: Any, record: dict[str, Any]) -> None:
    stage = snakemake.config.get("stage_dir")
    if not stage:
        return
    err_dir = Path(stage) / "_meta" / "errors"
    err_dir.mkdir(parents=True, exist_ok=True)
    # stable across processes (hash() is salted per process): a retried job overwrites its own
    # report instead of adding another, so a problem is printed once
    outputs = hashlib.sha256("\0".join(map(str, snakemake.output)).encode()).hexdigest()[:12]
    name = f"{snakemake.rule}-{outputs}.json"
    (err_dir / name).write_text(json.dumps(record, indent=2))


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 3] + "..."


def _shown(path: str, run_dir: str | None) -> str:
    """A path as the user knows it: relative to the run folder when inside it."""
    if run_dir:
        for base in {os.path.abspath(run_dir), os.path.realpath(run_dir)}:
            try:
                return Path(os.path.abspath(path)).relative_to(base).as_posix()
            except ValueError:
                continue
    return str(path)


class _OpenedInputs:
    """Remembers the last of the rule's input files (or a file inside an input folder) that the
    step opened, through Python's ``open`` audit event, so that a crash can name the file being
    read.  Readers that open files in C (h5py, pyarrow) are not seen: the report then falls back
    to the rule's only input.  An audit hook cannot be removed, so it is installed once per
    process and switched on only inside the ``with`` block."""

    _active: _OpenedInputs | None = None
    _installed = False

    def __init__(self, inputs: list[str], outputs: list[str] = ()):  # type: ignore[assignment]
        # real path -> the path as the rule names it (run folders link raw data from elsewhere)
        self._files = {os.path.realpath(p): p for p in inputs if os.path.isfile(p)}
        self._dirs = {os.path.realpath(p) + os.sep: p for p in inputs if os.path.isdir(p)}
        # outputs (files, or directory() outputs such as a Zarr store): absolute path -> as named
        self._outputs = {os.path.abspath(p): p for p in outputs}
        self.last: str | None = None
        #: the output being written when the step last opened a file for writing (None once
        #: it reads an input again)
        self.writing: str | None = None

    def __enter__(self) -> _OpenedInputs:
        if not _OpenedInputs._installed:
            sys.addaudithook(_OpenedInputs._hook)
            _OpenedInputs._installed = True
        _OpenedInputs._active = self
        return self

    def __exit__(self, *exc: object) -> None:
        _OpenedInputs._active = None

    @staticmethod
    def _hook(event: str, args: tuple) -> None:
        me = _OpenedInputs._active
        if (
            me is None
            or event != "open"
            or not args
            or not isinstance(args[0], (str, bytes, os.PathLike))
        ):
            return
        mode = args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or flags & (
            os.O_WRONLY | os.O_RDWR
        ):
            written = os.path.abspath(os.fsdecode(args[0]))
            out = next(
                (
                    named
                    for p, named in me._outputs.items()
                    if written == p
                    or written.startswith(p + os.sep)
                    # a step may write to a hidden temporary next to the output (.x.partial)
                    or (
                        os.path.dirname(written) == os.path.dirname(p)
                        and os.path.basename(written).startswith("." + os.path.basename(p))
                    )
                ),
                None,
            )
            if out is not None:
                me.writing = out
            return
        _OpenedInputs._active = None  # realpath below may itself open nothing, but never recurse
        try:
            path = os.path.realpath(os.fsdecode(args[0]))
            if path in me._files:
                me.last, me.writing = me._files[path], None
            else:
                top = next((d for d in me._dirs if path.startswith(d)), None)
                if top is not None:
                    me.last, me.writing = os.path.join(me._dirs[top], path[len(top) :]), None
        finally:
            _OpenedInputs._active = me
