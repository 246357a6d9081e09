"""Run the Snakemake workflow of one run folder into a staged dataset.

Snakemake runs as a subprocess of the same Python (``python -m snakemake``) with a profile from
``profiles/``: exactly what an HPC operator runs by hand, so a profile that works here works
there.  Failures come back as :class:`InputError` (a rule met bad input and said so through
:func:`pipelines.toolkit.smk.run_step`) or :class:`RunError` naming the failed rule and its log tail.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.errors import BindsError, InputError, Problem, RunError
from pipelines.resources import profiles_dir, snakefile
from pipelines.run import worklock
from pipelines.toolkit.stage import StagedDataset

log = logging.getLogger(__name__)
_PROGRESS = re.compile(r"(\d+) of (\d+) steps \((\d+(?:\.\d+)?)%\) done")
_ERROR_RULE = re.compile(r"Error in rule (\S+?):")
_LOG_LINE = re.compile(r"^\s*log: (.+?) \(check log file")
EVENTS_ENV = "BINDS_SNAKEMAKE_EVENTS"  # read by snakemake_logger_plugin_binds


def snakemake_command(
    *,
    run_dir: Path,
    stage: StagedDataset,
    modality: str,
    profile: str = "local",
    cores: int | None = None,
    extra_args: Sequence[str] = (),
    events: bool | None = None,
) -> list[str]:
    """The ``snakemake`` command line for one run (``--config`` last: it swallows what follows).

    ``events``: add ``--logger binds`` (job events for the monitoring); default: when
    ``$BINDS_SNAKEMAKE_EVENTS`` is set."""
    prof = Path(profile)
    if not prof.is_dir():
        prof = profiles_dir() / profile
    if not (prof / "config.yaml").is_file():
        known = sorted(p.name for p in profiles_dir().iterdir() if (p / "config.yaml").is_file())
        raise InputError(
            Problem(
                f"unknown profile {profile!r}",
                where="--profile",
                hint=f"one of {', '.join(known)}, or a folder with a config.yaml",
            )
        )
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile()),
        "--directory",
        str(stage.root.parent),
        "--profile",
        str(prof),
    ]
    if cores:
        cmd += ["--cores", str(cores)]
    cmd += list(extra_args)
    if events is None:
        events = bool(os.environ.get(EVENTS_ENV))
    if events:  # binds run: jobs mirrored into Prefect
        cmd += ["--logger", "binds"]  # snakemake_logger_plugin_binds writes that file
    cmd += [
        "--config",
        # no scheduler holds a local job to its mem_mb: pipelines.toolkit.smk does (see run_step)
        f"enforce_mem_mb={_executor(prof) == 'local'}",
        f"run_dir={run_dir.resolve()}",
        f"stage_dir={stage.root.resolve()}",
        f"modality={modality}",
        f"experiment={(stage.meta_dir / 'experiment.json').resolve()}",
    ]
    return cmd


def _executor(profile_dir: Path) -> str:
    """The ``executor:`` of a profile (Snakemake's default: local)."""
    import yaml

    try:
        conf = yaml.safe_load((profile_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "local"
    return str(conf.get("executor") or "local")


def run_workflow(
    *,
    run_dir: str | Path,
    stage: StagedDataset,
    modality: str,
    profile: str = "local",
    cores: int | None = None,
    extra_args: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
    events: Path | None = None,
) -> Path:
    """Build ``stage`` from ``run_dir``; return the path of the Snakemake log.

    Raises
    ------
    InputError
        A rule reported bad input (file, place, hint): exit 2.
    RunError
        Any other failure, with the failed rule and the tail of its log.
    """
    return start_workflow(
        run_dir=run_dir,
        stage=stage,
        modality=modality,
        profile=profile,
        cores=cores,
        extra_args=extra_args,
        on_progress=on_progress,
        events=events,
    ).wait()


def start_workflow(
    *,
    run_dir: str | Path,
    stage: StagedDataset,
    modality: str,
    profile: str = "local",
    cores: int | None = None,
    extra_args: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
    events: Path | None = None,
) -> RunningWorkflow:
    """Start the Snakemake process of ``stage`` and return at once (:meth:`RunningWorkflow.wait`
    for its outcome).  ``binds run`` starts it before importing Prefect, so that Snakemake's
    start-up overlaps Prefect's.  Snakemake's logger plugin writes its job events to
    ``events`` (:mod:`snakemake_logger_plugin_binds`; by default the stage's
    ``_meta/snakemake-events.jsonl``, the job records everyone reads: usage, report, Prefect)."""
    run_dir = Path(run_dir)
    env = dict(os.environ)
    if events is None and not env.get(EVENTS_ENV):
        events = stage.events_file
    if events is not None:
        env[EVENTS_ENV] = str(events)
    cmd = snakemake_command(
        run_dir=run_dir,
        stage=stage,
        modality=modality,
        profile=profile,
        cores=cores,
        extra_args=extra_args,
        events=events is not None or bool(env.get(EVENTS_ENV)),
    )
    stage.meta_dir.mkdir(parents=True, exist_ok=True)
    if stage.errors_dir.exists():
        for old in stage.errors_dir.glob("*.json"):
            old.unlink()
    if events is not None:
        events.write_text("")  # the record of this run only (a resumed run starts it again)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log.info("running: %s", " ".join(cmd))
    return RunningWorkflow(cmd, env=env, stage=stage, on_progress=on_progress)


class RunningWorkflow:
    """One Snakemake process: its terminal output goes, line by line, to
    ``_meta/snakemake.log`` (a thread reads it, so the process never blocks on a full pipe)."""

    def __init__(
        self,
        cmd: list[str],
        *,
        env: dict[str, str],
        stage: StagedDataset,
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        self.stage = stage
        self.smk_log = stage.snakemake_log
        self.on_progress = on_progress
        self.failed_rules: list[str] = []
        self.rule_logs: list[str] = []
        self._closed = False
        lock_fd = worklock.held_fd(stage.root.parent)
        self._out = open(self.smk_log, "w", buffering=1)  # line by line: read live on failure
        # Own process group: whatever Snakemake leaves when it dies (its jobs) is killed with
        # the group below.  Parent-death signal: if binds is killed, Snakemake gets SIGINT and
        # stops its jobs (SIGTERM would make it wait for them).  The work folder's lock is
        # inherited, so no new run starts before this workflow has stopped.
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=stage.root.parent,
            process_group=0,
            preexec_fn=_die_with_parent,
            pass_fds=(lock_fd,) if lock_fd is not None else (),
        )
        self._reader = threading.Thread(
            target=self._read, daemon=True, name="binds-snakemake-output"
        )
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._out.write(line)
            if (m := _PROGRESS.search(line)) and self.on_progress:
                self.on_progress(int(m.group(1)), int(m.group(2)))
            if m := _ERROR_RULE.search(line):
                self.failed_rules.append(m.group(1))
            if m := _LOG_LINE.match(line):
                self.rule_logs.append(m.group(1).strip())

    def stop(self) -> None:
        """Stop the workflow (Ctrl-C, a cancelled flow) and whatever it left running; a no-op
        once it has ended."""
        if self._closed:
            return
        try:
            _stop(self.proc)
        finally:
            self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            _kill_group(self.proc.pid)  # what Snakemake left in its group (then the pipe ends)
            self._reader.join(timeout=10)
            self._out.close()

    def wait(self) -> Path:
        """Wait for Snakemake to exit; the log path, or InputError / RunError (see
        :func:`run_workflow`).  An exception while waiting (Ctrl-C) stops the workflow."""
        try:
            code = self.proc.wait()
        except BaseException:
            self.stop()
            raise
        self._close()
        if code == 0:
            return self.smk_log
        raise self._failure(code)

    def _failure(self, code: int) -> BindsError:
        stage, smk_log = self.stage, self.smk_log
        problems = _reported_problems(stage)
        if problems:
            return InputError(problems)
        crash = _reported_crash(stage)
        if crash is not None:
            reading = (
                f" writing {crash['output']}"
                if crash.get("output")
                else f" reading {crash['input']}"
                if crash.get("input")
                else ""
            )
            details = [f"traceback: {crash['log']}"] if crash.get("log") else []
            details.append(
                f"workflow failed in rule {crash['rule']} (exit {code}); full log: {smk_log}"
            )
            return RunError(
                f"rule {crash['rule']} failed{reading}: {crash['exception']}: {crash['message']}",
                details=details,
            )
        tail = _tail(Path(self.rule_logs[-1]), root=stage.root.parent) if self.rule_logs else []
        if len(tail) <= 1:  # the script died before logging: its traceback is in Snakemake's output
            tail = _traceback_before_error(smk_log) or _tail(
                smk_log, root=stage.root.parent, lines=25
            )
        rules = ", ".join(dict.fromkeys(self.failed_rules)) or "(before any rule ran)"
        return RunError(
            f"workflow failed in rule {rules} (exit {code}); full log: {smk_log}", details=tail
        )


_PR_SET_PDEATHSIG = 1
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGINT when the parent dies (Linux prctl)."""
    if _LIBC is not None and sys.platform.startswith("linux"):
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


def _stop(proc: subprocess.Popen, *, grace_s: float = 30.0) -> None:
    """Ask Snakemake to stop (SIGINT: it cancels its jobs), then kill what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()


def _kill_group(pgid: int) -> None:
    """SIGKILL what remains of Snakemake's process group (orphaned jobs of a killed Snakemake)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _error_records(stage: StagedDataset) -> list[dict]:
    """What the failed rules wrote through :func:`pipelines.toolkit.smk.run_step` (one file per rule job)."""
    records = []
    if stage.errors_dir.is_dir():
        for f in sorted(stage.errors_dir.glob("*.json")):
            try:
                records.append(json.loads(f.read_text()))
            except (OSError, ValueError):  # a rule killed while writing it: the log tail will tell
                continue
    return records


def _reported_problems(stage: StagedDataset) -> list[Problem]:
    """Bad input reported by rules (kind ``input``): raised as one InputError, exit 2."""
    return [
        Problem.from_dict(p) for rec in _error_records(stage) for p in rec.get("problems") or []
    ]


def _reported_crash(stage: StagedDataset) -> dict | None:
    """The first unexpected failure a rule reported (kind ``crash``): rule, input, exception."""
    return next((rec for rec in _error_records(stage) if rec.get("kind") == "crash"), None)


def _traceback_before_error(smk_log: Path, lines: int = 12) -> list[str]:
    """The last lines of the traceback Snakemake printed just before its first 'Error in rule'."""
    text = smk_log.read_text(errors="replace").splitlines()
    end = next((i for i, ln in enumerate(text) if _ERROR_RULE.search(ln)), len(text))
    start = next((i for i in range(end - 1, -1, -1) if text[i].startswith("Traceback")), None)
    if start is None:
        return []
    block = [
        ln
        for ln in text[start:end]
        if not ln.startswith(("RuleException", "CalledProcessError", "Command '", "["))
    ]
    return [f"{smk_log}:", *block[-lines:]]


def _tail(path: Path, *, root: Path, lines: int = 15) -> list[str]:
    if not path.is_absolute():
        path = root / path
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return [f"(log {path} not readable)"]
    return [f"{path}:", *text[-lines:]]
