"""Prefect glue of ``binds run``: the API check, the temporary server, Snakemake jobs as task runs.

Four things, each kept out of the flow so that the flow stays a list of steps:

- :func:`api_problem` asks a configured Prefect API for ``/health`` (2 s, no Prefect import):
  ``binds run`` checks it before starting the flow and, when it does not answer, runs with a
  temporary server instead and says so in one line (the data are processed either way).
- :class:`TemporaryServer` is what Prefect's ephemeral mode starts (its API app under
  uvicorn, on a free loopback port), but started by ``binds`` itself: *while* the run folder is
  validated and the workflow runs (its ~5 s of CPU at nice 10: the jobs first), in its own
  session, so a Ctrl-C in the terminal reaches ``binds`` and Snakemake but not the server:
  the flow run is still recorded as interrupted and the logs are flushed before the server
  is stopped.
- :class:`RunReporter` follows the JSON-lines event file written by the Snakemake logger
  plugin (:mod:`snakemake_logger_plugin_binds`) and reports every Snakemake job as a Prefect
  task run named ``<rule>[<wildcards>]`` (``<rule>`` when it has none), stamped with the job's
  own start and end, failed with the log tail when the job failed, waiting for the jobs that
  made its inputs, with threads / mem_mb / runtime, the benchmark figures (CPU seconds, max
  RSS) and the Slurm job id in its logs.  Snakemake's own log lines go to the flow run's logs.
- :func:`prefect_environment`: the Prefect settings every ``binds`` command uses.

And :class:`EarlyFlowRun`: the flow run of ``binds run`` created with plain REST calls as soon
as Snakemake is started (in the UI at once), which Prefect's engine then adopts.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.describe.jobs import Job, JobBook, benchmark_figures

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 20


# ----------------------------------------------------------------------------- timing
TRACE_ENV = "BINDS_TRACE"  # a file: each step of `binds run` appends "<unix time> <step>"


def trace(step: str) -> None:
    """Record when ``step`` happened (benchmarks/bench_overhead.py reads these)."""
    if path := os.environ.get(TRACE_ENV):
        with open(path, "a") as fh:
            fh.write(f"{time.time():.3f} {step}\n")


# ----------------------------------------------------------------------------- the Prefect API
def api_problem(api_url: str, *, timeout_s: float = 2.0) -> str | None:
    """``None`` when ``<api_url>/health`` answers 200 within ``timeout_s``, else why not."""
    url = api_url.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status} from {url}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} from {url}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url}: {reason}"


class ApiUnreachable(Exception):
    """The Prefect API did not answer (refused, timed out): not an HTTP error from a server."""


def api_call(api_url: str, method: str, path: str, body: Any = None, *, timeout_s: float) -> Any:
    """One JSON call to the Prefect REST API with the standard library (no Prefect import).

    Sends the credentials Prefect's client sends (``PREFECT_API_AUTH_STRING``: basic,
    ``PREFECT_API_KEY``: bearer; from the environment or the active profile).  Raises
    :class:`ApiUnreachable` when nothing answers, ``urllib.error.HTTPError`` on an error status."""
    import base64

    headers = {"Content-Type": "application/json"}
    if auth := configured_setting("PREFECT_API_AUTH_STRING"):
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    elif key := configured_setting("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        api_url.rstrip("/") + path,
        data=None if body is None else json.dumps(body).encode(),
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ApiUnreachable(f"{api_url}: {getattr(exc, 'reason', exc)}") from None
    return json.loads(raw) if raw else None


#: The flow of ``binds run`` (pipelines.orchestrate.flows.make_flow), named here for the early flow run.
FLOW_NAME = "binds-run"
#: How long each REST call of the early flow run may take (as the /health check): it runs in a
#: thread, the workflow never waits on it.  A busy 2-core machine answered after > 1 s.
EARLY_TIMEOUT_S = 2.0


@dataclass
class EarlyFlowRun:
    """The flow run of ``binds run``, created with two REST calls (``POST /flows/``, a
    get-or-create by name, then ``POST /flow_runs/``) as soon as Snakemake is started, before
    Prefect is imported (~1.5 s of CPU): the run is in the UI within a second of the command,
    ``Running`` from then on (the server stamps the state: the flow run's start time).  Prefect's
    flow engine then adopts it (:func:`pipelines.orchestrate.flows.run_flow` with ``flow_run``) instead of
    creating a second one, and ends it as usual.  ``record`` is the server's answer (a FlowRun).

    Not earlier than that: the run's name, tags and parameters (absolute paths) reach Prefect
    only once the run folder passed validation (the privacy gate first), and the server, not
    the client, stamps a state's time, so the run's start is when it is created."""

    api_url: str
    record: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @classmethod
    def create(
        cls, api_url: str, *, name: str, parameters: dict[str, Any], tags: list[str]
    ) -> EarlyFlowRun:
        """Raises :class:`ApiUnreachable` or ``HTTPError`` (the caller keeps today's path)."""
        flow = api_call(api_url, "POST", "/flows/", {"name": FLOW_NAME}, timeout_s=EARLY_TIMEOUT_S)
        body = {
            "flow_id": flow["id"],
            "name": name,
            "parameters": parameters,
            "context": {},
            "tags": sorted(set(tags)),
            "state": {"type": "RUNNING", "name": "Running", "state_details": {}},
            # entering Running counts a run; the engine's own Running (when it adopts the run)
            # is the one to count: run_count 1, as for a run the engine created.  The server
            # clears the indicator on that first transition (RemoveResumingIndicator).
            "empirical_policy": {"retries": 0, "retry_delay": 0, "resuming": True},
        }
        # a POST that timed out may have created the run: the one retry, with the same key,
        # gets that run back instead of a second one
        body["idempotency_key"] = f"binds-run-{uuid.uuid4()}"
        try:
            record = api_call(api_url, "POST", "/flow_runs/", body, timeout_s=EARLY_TIMEOUT_S)
        except ApiUnreachable:
            record = api_call(api_url, "POST", "/flow_runs/", body, timeout_s=EARLY_TIMEOUT_S)
        return cls(api_url, record)

    def end(self, state_type: str, message: str) -> None:
        """End the run in ``state_type`` unless it has ended (the engine ended it).  Never
        raises: the record only, the command's own outcome stands."""
        try:
            run = api_call(self.api_url, "GET", f"/flow_runs/{self.id}", timeout_s=EARLY_TIMEOUT_S)
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return
            state = {"type": state_type, "name": state_type.capitalize(), "message": message}
            api_call(
                self.api_url,
                "POST",
                f"/flow_runs/{self.id}/set_state",
                {"state": state, "force": True},
                timeout_s=EARLY_TIMEOUT_S,
            )
        except Exception as err:
            log.debug("could not end the flow run %s: %s", self.id, err)

    def close_if_open(self, exc: BaseException) -> None:
        """``binds run`` stopped before the engine ended the run (interrupted before the engine
        took it over, a failure before the workflow started): Crashed on an interrupt, as the
        engine ends one, else Failed, so that it does not stay Running."""
        if isinstance(exc, KeyboardInterrupt):
            self.end("CRASHED", "Execution was aborted by an interrupt signal.")
        else:  # the command reported why; its text may name files: not copied to Prefect
            self.end("FAILED", f"binds run stopped before the flow ran ({type(exc).__name__})")


class FlowRunOpener:
    """Creates the :class:`EarlyFlowRun` of ``binds run`` in a thread once the run folder is
    valid (:func:`pipelines.run.runner.start_run`'s ``on_valid``), while the raw files are hashed
    and Snakemake starts: nothing waits for the API.  :meth:`result` is the run (or None)."""

    def __init__(self, session: PrefectSession, parameters: dict[str, Any]) -> None:
        self.session = session
        self.parameters = parameters
        self._thread: threading.Thread | None = None
        self._run: EarlyFlowRun | None = None

    def start(self, experiment: Any) -> None:
        from pipelines.orchestrate.service_guard import flow_run_name

        name = flow_run_name(experiment.data, experiment.dataset_id)  # a hash unless open
        tags = run_tags(experiment.data)
        self._thread = threading.Thread(
            target=self._open, args=(name, tags), daemon=True, name="binds-flow-run"
        )
        self._thread.start()

    def _open(self, name: str, tags: list[str]) -> None:
        self._run = self.session.open_flow_run(name=name, parameters=self.parameters, tags=tags)
        trace("flow run created" if self._run else "flow run not created early")

    def result(self) -> EarlyFlowRun | None:
        """The flow run, once its creation ended (at most two short REST calls)."""
        if self._thread is not None:
            self._thread.join(timeout=3.5 * EARLY_TIMEOUT_S)
        return self._run

    def close_if_open(self, exc: BaseException) -> None:
        if (run := self.result()) is not None:
            run.close_if_open(exc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TemporaryServer:
    """A Prefect API server on a free loopback port for the length of one ``binds`` process.

    The same app and database (``$PREFECT_HOME``) as Prefect's own ephemeral mode, started as
    ``python -m uvicorn`` in a new session: terminal signals do not reach it, and
    :meth:`stop` ends it (SIGTERM to its process group, then SIGKILL) after the flow.
    """

    # uvicorn's exit code when the app's start-up failed: here, the database migration raced
    # another server migrating the same new PREFECT_HOME database ("duplicate column name")
    STARTUP_FAILED = 3
    ATTEMPTS = 3

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self._startup_lock: _StartupLock | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @staticmethod
    def home() -> Path:
        home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
        home.mkdir(parents=True, exist_ok=True)  # SQLite cannot create its folder
        return home

    def start(self) -> TemporaryServer:
        """Start booting, unless another ``binds`` is booting a server on the same database:
        then :meth:`wait_ready` starts this one once that one answers (its migration done)."""
        self._startup_lock = _StartupLock(self.home() / "binds-temporary-server.lock")
        if self._startup_lock.acquire(block=False):
            self._launch()
        return self

    def _launch(self) -> None:
        env = dict(os.environ)
        env.pop("PREFECT_API_URL", None)
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # nothing leaves the host
        env |= {
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            # binds uses no blocks; registering them costs ~0.6 s CPU of every start
            "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
        }
        server = [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            _prefect_parent_dir(),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ]
        if sys.platform == "linux":  # exec'd through a wrapper: no preexec_fn in a threaded process
            server = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *server]
        with open(self.home() / "binds-temporary-server.log", "ab") as server_log:
            self.proc = subprocess.Popen(
                server,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=server_log,
                start_new_session=True,
            )

    def wait_ready(self, *, timeout_s: float = 120) -> None:
        """Block until ``/health`` answers; RuntimeError when the server died or timed out.

        A server whose start-up failed (another process migrating the same database at that
        moment) is started again, up to :attr:`ATTEMPTS` times."""
        assert self._startup_lock is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        try:
            if self.proc is None:
                # another binds' server is migrating the database; after the deadline, start
                # anyway (the lock holder may hang) and rely on the retries
                self._startup_lock.acquire(block=True, until=deadline)
                self._launch()
            self._wait_answer(deadline, timeout_s)
        finally:
            self._startup_lock.release()

    def _wait_answer(self, deadline: float, timeout_s: float) -> None:
        assert self.proc is not None
        attempt = 1
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if self.proc.returncode == self.STARTUP_FAILED and attempt < self.ATTEMPTS:
                    attempt += 1
                    log.info("temporary Prefect server: start-up failed, attempt %d", attempt)
                    time.sleep(random.uniform(0.2, 1.0))  # apart from the other retrying ones
                    self._launch()
                    continue
                raise RuntimeError(
                    f"the temporary Prefect server exited with code {self.proc.returncode}"
                    f" (see {self.home() / 'binds-temporary-server.log'})"
                )
            if api_problem(self.api_url, timeout_s=1) is None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the temporary Prefect server did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self._startup_lock is not None:
            self._startup_lock.release()
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


class _StartupLock:
    """An exclusive ``flock`` on a file of PREFECT_HOME, held while one ``binds`` boots its
    temporary server: servers booting together on one new database race its migration.
    The kernel releases it when the process dies, however it dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, block: bool, until: float = 0.0) -> bool:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not block or time.monotonic() >= until:
                    return False
                time.sleep(0.1)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = None


# Run in the server's process before it execs uvicorn: SIGTERM when binds dies, however it
# dies (SIGKILL, the SIGHUP of a dropped SSH session), so a temporary server never outlives
# its run.  argv: parent pid, then the server's command.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
os.nice(10)  # the workflow first: the server boots (~5 s CPU) on what the jobs leave free
if os.getppid() != int(sys.argv[1]):  # the parent died before prctl
    sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _prefect_parent_dir() -> str:
    """The folder holding the ``prefect`` package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    assert spec and spec.origin
    return str(Path(spec.origin).parent.parent)


#: The thread ``binds run`` imports Prefect in, while Snakemake starts (found by its name).
IMPORT_THREAD = "binds-prefect-import"


class BackgroundImport(threading.Thread):
    """Imports a module (Prefect: 2-4 s) while the main thread waits for a server; ``done`` is
    set when the import has ended, whatever its outcome.

    Waited for with the event, never with ``join()``: a Ctrl-C landing in ``join()`` of a live
    thread makes Python 3.11 mark that thread stopped (bpo-45274's recovery releases the lock
    the running thread holds), and every later ``join()`` or ``is_alive()`` then says it ended
    while it still imports Prefect."""

    def __init__(self, module: str) -> None:
        super().__init__(daemon=True, name=IMPORT_THREAD)
        self.module = module
        self.done = threading.Event()

    def run(self) -> None:
        import importlib

        try:
            importlib.import_module(self.module)
        except BaseException:  # the main thread imports it again and reports the error
            pass
        finally:
            self.done.set()


def import_in_background(module: str) -> BackgroundImport:
    """Start importing ``module`` in a :class:`BackgroundImport` thread."""
    thread = BackgroundImport(module)
    thread.start()
    return thread


def wait_for_background_import(*, timeout_s: float = 60) -> None:
    """Leaving (Ctrl-C) while Prefect is still being imported: let the import end first,
    because the session's exit flushes Prefect's queues, which imports Prefect too (one module
    imported by two threads: Python reports a deadlock and Prefect prints "Failed to initialize
    plugins").  Found by name: a Ctrl-C may land between the thread's start and the assignment
    of ``importing``, or inside ``Thread.start()`` itself, before the thread runs."""
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread.name != IMPORT_THREAD:
            continue
        if isinstance(thread, BackgroundImport):
            thread.done.wait(timeout=max(0.0, deadline - time.monotonic()))
            continue
        while True:  # a plain thread under that name: join it once it can be joined
            try:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
                break
            except RuntimeError:  # "cannot join thread before it is started"
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)


def _importing_now() -> bool:
    return any(
        isinstance(t, BackgroundImport) and not t.done.is_set() for t in threading.enumerate()
    )


def flush_prefect() -> None:
    """Send the logs and events Prefect still holds (before the temporary server stops).

    Not while the import thread is still importing Prefect (a Ctrl-C during the import that
    :func:`wait_for_background_import` did not see end): the flow engine has not run, so there
    is nothing to send, and importing Prefect's workers from a second thread is a deadlock to
    Python ("Failed to initialize plugins: deadlock detected by _ModuleLock(...)")."""
    if any(t.name == IMPORT_THREAD and t.is_alive() for t in threading.enumerate()):
        return
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
    except Exception as exc:
        log.debug("flushing Prefect: %s", exc)


# ----------------------------------------------------------------------------- live flow runs
def pid_file(flow_run_id: str) -> Path:
    """Where a running ``binds-run`` flow run leaves its pid (on the host that runs it), so that
    ``binds serve`` can tell, after a crash, a run still going from one that died with it."""
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
    return home / "binds-flow-runs" / f"{flow_run_id}.pid"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/status")
    return not (state.exists() and "zombie" in state.read_text().lower())


# ----------------------------------------------------------------------------- run identity
def artifact_key(kind: str, dataset_id: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    safe = "".join(c if c.isalnum() else "-" for c in dataset_id.lower()).strip("-")
    return f"{kind}-{safe}"


def run_tags(experiment: dict[str, Any]) -> list[str]:
    """Tags of a flow run: modality, access level, support unit (a code), and the request id of
    open data (consortium and restricted runs carry nothing that names them)."""
    tags = [f"modality:{experiment['modality']}", f"access:{experiment['access']['level']}"]
    if experiment["access"]["level"] == "open":
        tags.insert(1, f"request:{experiment['request_id']}")
    from pipelines.describe.support_units import safe_tag_value

    if unit := safe_tag_value(experiment.get("support_unit")):  # a code, never free text
        tags.append(f"unit:{unit}")
    return tags


# ----------------------------------------------------------------------------- Snakemake jobs
def log_tail(paths: list[str], *, lines: int = LOG_TAIL_LINES) -> list[str]:
    out: list[str] = []
    for p in paths:
        try:
            text = Path(p).read_text(errors="replace").splitlines()
        except OSError:
            continue
        out += [f"{p}:", *text[-lines:]]
    return out


def console_traceback(
    console_log: Path, *, rule: str, wait_s: float = 3, lines: int = LOG_TAIL_LINES
) -> list[str]:
    """The traceback printed just before ``Error in rule <rule>`` in Snakemake's terminal
    output (a script that crashed on import never writes its own log)."""
    marker = f"Error in rule {rule}"  # the terminal prints "Error in rule R:" then "jobid: N"
    deadline = time.monotonic() + wait_s
    while True:  # the output is written by another thread, a moment after the event
        try:
            text = console_log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        end = next((i for i, ln in enumerate(text) if marker in ln), None)
        if end is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if end is None:
        return []
    start = next((i for i in range(end - 1, -1, -1) if text[i].startswith("Traceback")), None)
    if start is None:
        return []
    return [f"{console_log}:", *text[start:end][-lines:]]


def log_at(logger: Any, level: int, t: float | None, msg: str) -> None:
    """Log ``snakemake: <msg>`` stamped with the time Snakemake logged it (``t``), not the
    time it is forwarded: the Prefect UI then shows each line at its own time.  ``logger`` is a
    logger or a LoggerAdapter (Prefect's run logger: its ``extra`` names the flow run)."""
    base = getattr(logger, "logger", logger)
    if not isinstance(level, int):
        level = logging.INFO
    if not base.isEnabledFor(level):
        return
    extra = dict(getattr(logger, "extra", None) or {})
    record = base.makeRecord(
        base.name, level, __file__, 0, "snakemake: %s", (msg,), None, extra=extra
    )
    if isinstance(t, (int, float)) and t > 0:
        record.created = float(t)
        record.msecs = (record.created - int(record.created)) * 1000
    base.handle(record)


def _clock(t: float | None) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds") if t else "?"


def _when(t: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC)


class RunReporter:
    """Report what ran to a flow run: each Snakemake job (and each binds step that ran outside
    Prefect's task engine, e.g. ``validate``) as a task run with its own start and end.

    Prefect is the monitoring sink here, not the executor: the workflow runs without it, and
    the reporter turns the logger plugin's events (:mod:`snakemake_logger_plugin_binds`) into
    Prefect's task-run state events (``Running`` stamped with the job's start, then
    ``Completed``/``Failed`` stamped with its end: what Prefect's own engine emits for a task)
    and log records.  Both leave through Prefect's batching workers (one websocket for the
    events, batched ``POST /logs``): no thread, engine or API round trip per job.

    Use inside a flow run (the events and logs belong to it)::

        reporter = RunReporter(flow_logger, console_log=...)
        reporter.step("validate", started=t0, finished=t1)
        with reporter.following(events_file):
            workflow.wait()
        reporter.jobs                  # every job seen, with its state

    On leaving ``following`` the file is read to its end and the jobs that never reported an
    end (the workflow stopped) are failed.
    """

    def __init__(
        self,
        flow_logger: logging.Logger | logging.LoggerAdapter,
        *,
        console_log: Path | None = None,
        poll_s: float = 0.1,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        from prefect.context import FlowRunContext, TagsContext

        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None, "RunReporter needs a flow run"
        self.flow_run_id = ctx.flow_run.id
        self.logger = flow_logger
        self.poll_s = poll_s
        self.on_event = on_event
        self.tags = sorted(TagsContext.get().current_tags or [])
        self.book = JobBook(console_log=str(console_log) if console_log else None)
        self._runs: dict[str, Any] = {}  # Job.key -> its TaskRun (as last reported)
        self._by_output: dict[str, str] = {}  # output path -> Job.key of the job making it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- task runs
    def _task_run(
        self, name: str, *, task_key: str, key: str, tags: list[str], started: float, upstream=()
    ):
        from prefect.client.schemas.objects import TaskRun, TaskRunPolicy, TaskRunResult
        from prefect.states import Running

        state = Running(timestamp=_when(started))
        run = TaskRun(
            name=name,
            flow_run_id=self.flow_run_id,
            task_key=task_key,
            dynamic_key=key,
            tags=[*self.tags, *tags],
            task_inputs={"wait_for": [TaskRunResult(id=u) for u in upstream]},
            empirical_policy=TaskRunPolicy(),
            expected_start_time=state.timestamp,
            start_time=state.timestamp,
            run_count=1,
            created=state.timestamp,
        )
        state.state_details.task_run_id = run.id
        state.state_details.flow_run_id = self.flow_run_id
        self._set_state(run, state)
        return run

    def _set_state(self, run, state) -> None:
        from prefect.utilities.engine import emit_task_run_state_change_event

        previous = run.state
        if previous is not None and previous.is_running():
            run.total_run_time += state.timestamp - previous.timestamp
        if state.is_final():
            run.end_time = state.timestamp
        run.state, run.state_id, run.state_type, run.state_name = (
            state,
            state.id,
            state.type,
            state.name,
        )
        emit_task_run_state_change_event(
            task_run=run, initial_state=previous, validated_state=state
        )

    def _finish(self, run, *, finished: float, failed: str | None) -> None:
        from prefect.states import Completed, Failed

        when = _when(max(finished, run.start_time.timestamp() + 1e-6))
        state = Failed(message=failed, timestamp=when) if failed else Completed(timestamp=when)
        state.state_details.task_run_id = run.id
        state.state_details.flow_run_id = self.flow_run_id
        self._set_state(run, state)

    def _task_logger(self, run):
        from prefect.logging.loggers import PrefectLogAdapter

        return PrefectLogAdapter(
            logging.getLogger("prefect.task_runs"),
            extra={
                "task_run_id": str(run.id),
                "flow_run_id": str(self.flow_run_id),
                "task_run_name": run.name,
                "task_name": run.task_key,
            },
        )

    def step(
        self, name: str, *, started: float, finished: float, failed: str | None = None
    ) -> None:
        """A task run for a binds step that ran outside Prefect's engine (e.g. ``validate``)."""
        run = self._task_run(name, task_key=name, key=name, tags=[], started=started)
        if failed:
            self._task_logger(run).error("%s", failed)
        self._finish(run, finished=finished, failed=failed)

    # -- the follower
    @property
    def console_log(self) -> Path | None:
        """Snakemake's terminal output, where a job that died before logging left its
        traceback (set once the run's stage is known)."""
        return Path(self.book.console_log) if self.book.console_log else None

    @console_log.setter
    def console_log(self, path: Path | None) -> None:
        self.book.console_log = str(path) if path else None

    @property
    def jobs(self) -> list[Job]:
        """Every job attempt seen, with its state."""
        return self.book.jobs

    @contextlib.contextmanager
    def following(self, events: Path):
        """Follow ``events`` in one thread (carrying the flow run's context) for the block."""
        ctx = contextvars.copy_context()
        self._thread = threading.Thread(
            target=ctx.run, args=(self._follow, Path(events)), daemon=True, name="binds-reporter"
        )
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=60)
            stopped = time.time()
            for job in self.book.unfinished():
                job.failed = job.failed or "the workflow stopped before this job ended"
                job.finished = stopped
                self._end(job)

    def _follow(self, events: Path) -> None:
        with open(events, encoding="utf-8") as fh:
            buf = ""
            while True:
                chunk = fh.read()
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split("\n")
                    for line in lines:
                        if line.strip():
                            self._handle_line(line)
                elif self._stop.is_set():
                    if buf.strip():
                        self._handle_line(buf)
                    return
                else:
                    time.sleep(self.poll_s)

    def _handle_line(self, line: str) -> None:
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            return
        try:
            self.handle(ev)
        except Exception as exc:
            log.warning("snakemake event not reported to Prefect: %s (%s)", exc, line[:200])

    def handle(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if self.on_event:
            self.on_event(ev)
        self._forward_log(ev)
        job = self.book.apply(ev, now=time.time())
        if job is None:
            return
        if kind == "job_info":
            self._start(job)
        elif kind in ("job_finished", "job_error"):
            self._end(job)
        elif kind == "external_jobid" and job.key in self._runs:
            self._task_logger(self._runs[job.key]).info("Slurm job id %s", job.external_jobid)

    def _forward_log(self, ev: dict[str, Any]) -> None:
        msg = (ev.get("msg") or "").rstrip()
        if not msg or msg == "None" or ev.get("event") in ("progress", "shellcmd"):
            return
        log_at(self.logger, logging.getLevelName(ev.get("level") or "INFO"), ev.get("t"), msg)

    def _start(self, job: Job) -> None:
        upstream = {  # the run graph: a job waits for the jobs that made its inputs
            self._runs[k].id: None
            for i in job.inputs
            if (k := self._by_output.get(i)) is not None and k in self._runs
        }
        for o in job.outputs:
            self._by_output[o] = job.key
        run = self._task_run(
            job.name,
            task_key=f"snakemake-{job.rule}",
            key=job.key,
            tags=[f"rule:{job.rule}"],
            started=job.started or time.time(),
            upstream=list(upstream),
        )
        self._runs[job.key] = run
        res = job.resources
        self._task_logger(run).info(
            "Snakemake job %s: threads %s, mem_mb %s, runtime %s",
            job.jobid,
            job.threads,
            res.get("mem_mb"),
            res.get("runtime"),
        )

    def _end(self, job: Job) -> None:
        run = self._runs.get(job.key)
        if run is None:
            return
        logger = self._task_logger(run)
        logger.info(
            "Snakemake job %s: started %s, ended %s (%.2f s)",
            job.jobid,
            _clock(job.started),
            _clock(job.finished),
            (job.finished or 0) - (job.started or 0),
        )
        if figures := benchmark_figures(job.benchmark):
            logger.info("benchmark: %s", ", ".join(f"{k} {v}" for k, v in figures.items()))
        message = None
        if job.failed:
            tail = log_tail(job.log)
            if len(tail) <= len(job.log) + 1 and job.console_log:  # died before logging
                tail = console_traceback(Path(job.console_log), rule=job.rule) or tail
            for line in tail:
                logger.error("%s", line)
            message = f"rule {job.rule} failed: {job.failed}" + (
                "\n" + "\n".join(tail) if tail else ""
            )
        self._finish(run, finished=job.finished or time.time(), failed=message)


# ----------------------------------------------------------------------------- one CLI session
def prefect_environment(*, quiet: bool = True) -> None:
    """The Prefect settings of a ``binds`` process (environment defaults, set before Prefect is
    imported; what the user set wins).  ``quiet``: Prefect's terminal output off."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side analytics (no internet)
    from pipelines.store.filemodes import make_private_dirs, private_umask

    private_umask()  # Prefect's database holds run names, parameters and logs: group-private
    os.environ.setdefault("PREFECT_HOME", str(Path.home() / ".binds" / "prefect"))
    # Prefect's SQLite database cannot be created in a folder that does not exist yet
    make_private_dirs(Path(os.environ["PREFECT_HOME"]).expanduser())
    # the ephemeral API server needs more than Prefect's 20 s on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if quiet:
        # failures are reported by binds itself (one clear message); Prefect's own copy on the
        # terminal is noise.  Only the console handler is quieted: the flow run's logs (and
        # Snakemake's lines) still reach the API, i.e. the UI's Logs tab.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "ERROR")


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment, else from the active Prefect profile (read
    as TOML, without importing Prefect)."""
    return configured_setting("PREFECT_API_URL")


def configured_setting(name: str) -> str | None:
    """A Prefect setting from the environment, else from the active Prefect profile (read as
    TOML, without importing Prefect)."""
    if value := os.environ.get(name):
        return value
    import tomllib

    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml"))
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or doc.get("active") or "ephemeral"
    return (doc.get("profiles", {}).get(active, {}) or {}).get(name) or None


class PrefectSession:
    """Which Prefect API a ``binds`` command talks to, decided before Prefect is imported.

    - ``PREFECT_API_URL`` (or the active profile) answers: use it (runs show in its UI).
    - It is set but does not answer within 2 s: one warning line, then a temporary server
      (the run is processed and recorded locally; it does not show in that UI).
    - Nothing configured: a temporary server, started at once (:meth:`begin`) so that it
      boots while the run folder is validated.

    ``warn`` receives the one-line warning.  Use as a context manager around the command:
    on exit the Prefect log/event queues are flushed, then the temporary server is stopped.
    """

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.server: TemporaryServer | None = None
        self.api_url: str | None = None
        self._checked = False
        self._settings = None
        self._prefect_preloaded = False

    def __enter__(self) -> PrefectSession:
        self._prefect_preloaded = "prefect.settings" in sys.modules
        self.api_url = configured_api_url()
        if not self.api_url:
            self.server = TemporaryServer().start()
            self._checked = True
        return self

    def choose(self) -> str:
        """Decide which API to use (<= 2 s, starts a temporary server if needed, does not wait
        for it) and export it as ``PREFECT_API_URL``: Prefect may be imported from then on."""
        if not self._checked:
            self._checked = True
            if problem := api_problem(self.api_url or ""):
                self.warn(
                    f"warning: the Prefect API at {self.api_url} does not answer ({problem}); "
                    "running with a temporary local Prefect server instead (this run will "
                    "not show in that UI)"
                )
                self.server = TemporaryServer().start()
        if self.server is not None:
            self.api_url = self.server.api_url
        os.environ["PREFECT_API_URL"] = self.api_url or ""
        return self.api_url or ""

    def open_flow_run(
        self, *, name: str, parameters: dict[str, Any], tags: list[str]
    ) -> EarlyFlowRun | None:
        """Create the flow run at once on the configured API (:class:`EarlyFlowRun`); None,
        and the engine creates it when Prefect is imported (as before), with a temporary server
        (still booting), when the API does not answer within a second (:meth:`choose` then
        decides, as before: the one warning, a temporary server) or refused (a warning)."""
        if self._checked or not self.api_url:
            return None
        try:
            run = EarlyFlowRun.create(self.api_url, name=name, parameters=parameters, tags=tags)
        except ApiUnreachable:
            return None
        except Exception as exc:  # an HTTP error, an unexpected answer: the engine's path
            log.warning("the flow run was not created early (%s): Prefect creates it", exc)
            return None
        self._checked = True  # it answers: no /health check before the import
        return run

    def ready(self) -> str:
        """Make sure an API answers (wait for the temporary one); returns its URL."""
        self.choose()
        if self.server is not None:
            try:
                self.server.wait_ready()
            except RuntimeError as exc:
                from pipelines.errors import RunError

                raise RunError(
                    str(exc),
                    details=[
                        "set PREFECT_API_URL to a running Prefect server "
                        "to do without the temporary one"
                    ],
                ) from None
        # Prefect reads its settings when imported: if it was imported before this session
        # (tests, a second command in one process), the URL is applied as temporary settings.
        # Not when it is being imported right now (binds run imports it in a thread).
        if self._prefect_preloaded and self._settings is None:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            self._settings = temporary_settings(updates={PREFECT_API_URL: self.api_url})
            self._settings.__enter__()
        return self.api_url or ""

    def __exit__(self, *exc: Any) -> None:
        # Prefect half-imported by the import thread is in sys.modules too: the flush imports
        # Prefect's workers, and one module imported by two threads is a deadlock to Python
        wait_for_background_import()
        if "prefect" in sys.modules:
            flush_prefect()
        if self._settings is not None:
            self._settings.__exit__(None, None, None)
        if self.server is not None:
            self.server.stop()
