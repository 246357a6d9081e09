"""Run the Snakemake workflow of one run folder into a staged dataset.

Snakemake runs as a subprocess of the same Python (``python -m snakemake``) with a profile from
``profiles/``: exactly what an HPC operator runs by hand, so a profile that works here works
there.  Failures come back as :class:`InputError` (a rule met bad input and said so through
:func:`pipelines.smk.run_step`) or :class:`RunError` naming the failed rule and its log tail.
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
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines import worklock
from pipelines.errors import InputError, Problem, RunError
from pipelines.resources import profiles_dir, snakefile
from pipelines.staging import StagedDataset

log = logging.getLogger(__name__)
_PROGRESS = re.compile(r"(\d+) of (\d+) steps \((\d+(?:\.\d+)?)%\) done")
_ERROR_RULE = re.compile(r"Error in rule (\S+?):")
_LOG_LINE = re.compile(r"^\s*log: (.+?) \(check log file")


def snakemake_command(
    *,
    run_dir: Path,
    stage: StagedDataset,
    modality: str,
    profile: str = "local",
    cores: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``snakemake`` command line for one run (``--config`` last: it swallows what follows)."""
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
    if os.environ.get("BINDS_SNAKEMAKE_EVENTS"):  # binds run: jobs mirrored into Prefect
        cmd += ["--logger", "binds"]  # snakemake_logger_plugin_binds writes that file
    cmd += [
        "--config",
        f"run_dir={run_dir.resolve()}",
        f"stage_dir={stage.root.resolve()}",
        f"modality={modality}",
        f"experiment={(stage.meta_dir / 'experiment.json').resolve()}",
    ]
    return cmd


def run_workflow(
    *,
    run_dir: str | Path,
    stage: StagedDataset,
    modality: str,
    profile: str = "local",
    cores: int | None = None,
    extra_args: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Build ``stage`` from ``run_dir``; return the path of the Snakemake log.

    Raises
    ------
    InputError
        A rule reported bad input (file, place, hint): exit 2.
    RunError
        Any other failure, with the failed rule and the tail of its log.
    """
    run_dir = Path(run_dir)
    cmd = snakemake_command(
        run_dir=run_dir,
        stage=stage,
        modality=modality,
        profile=profile,
        cores=cores,
        extra_args=extra_args,
    )
    stage.meta_dir.mkdir(parents=True, exist_ok=True)
    if stage.errors_dir.exists():
        for old in stage.errors_dir.glob("*.json"):
            old.unlink()
    smk_log = stage.meta_dir / "snakemake.log"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log.info("running: %s", " ".join(cmd))
    failed_rules: list[str] = []
    rule_logs: list[str] = []
    lock_fd = worklock.held_fd(stage.root.parent)
    with open(smk_log, "w", buffering=1) as out:  # line by line: the monitor reads it live
        # Own process group: whatever Snakemake leaves when it dies (its jobs) is killed with
        # the group below.  Parent-death signal: if binds is killed, Snakemake gets SIGINT and
        # stops its jobs (SIGTERM would make it wait for them).  The work folder's lock is
        # inherited, so no new run starts before this workflow has stopped.
        proc = subprocess.Popen(
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
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                if (m := _PROGRESS.search(line)) and on_progress:
                    on_progress(int(m.group(1)), int(m.group(2)))
                if m := _ERROR_RULE.search(line):
                    failed_rules.append(m.group(1))
                if m := _LOG_LINE.match(line):
                    rule_logs.append(m.group(1).strip())
            code = proc.wait()
        except BaseException:  # Ctrl-C, or the flow cancelled: stop the workflow, then re-raise
            _stop(proc)
            raise
        finally:
            _kill_group(proc.pid)
    if code == 0:
        return smk_log
    problems = _reported_problems(stage)
    if problems:
        raise InputError(problems)
    crash = _reported_crash(stage)
    if crash is not None:
        reading = f" reading {crash['input']}" if crash.get("input") else ""
        details = [f"traceback: {crash['log']}"] if crash.get("log") else []
        details.append(
            f"workflow failed in rule {crash['rule']} (exit {code}); full log: {smk_log}"
        )
        raise RunError(
            f"rule {crash['rule']} failed{reading}: {crash['exception']}: {crash['message']}",
            details=details,
        )
    tail = _tail(Path(rule_logs[-1]), root=stage.root.parent) if rule_logs else []
    if (
        len(tail) <= 1
    ):  # the script died before logging anything: its traceback is in Snakemake's output
        tail = _traceback_before_error(smk_log) or _tail(smk_log, root=stage.root.parent, lines=25)
    rules = ", ".join(dict.fromkeys(failed_rules)) or "(before any rule ran)"
    raise RunError(
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
    """What the failed rules wrote through :func:`pipelines.smk.run_step` (one file per rule job)."""
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
