"""Shared fixtures.

Real instrument files are read in place from ``../shared/data/<modality>/`` (never copied into
the repository).  When they are missing the tests that need them fail under CI (``CI`` set)
and skip with the reason on a user's machine.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BINDS_SHARED_DATA", REPO.parent / "shared" / "data"))
# numba (scanpy's neighbors/UMAP) compiles ~110 s once; the Makefile keeps its cache in the
# project, and so does a bare `pytest` (numba reads this when it is first imported)
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))

# A suite started in the background by a script (`make test &`, nohup) inherits SIGINT and
# SIGHUP ignored, and so would every `binds` a test starts to play a user's Ctrl-C or a dropped
# ssh session (they ran to the end instead): give the suite what a terminal gives.
for _sig, _handler in (
    (signal.SIGINT, signal.default_int_handler),
    (signal.SIGHUP, signal.SIG_DFL),
):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, _handler)


def shared_data(modality: str) -> Path:
    """Folder of real files for ``modality``; fail loudly in CI when it is missing."""
    path = SHARED_DATA / modality
    if not path.is_dir():
        msg = f"real test data not found at {path} (set BINDS_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(autouse=True, scope="session")
def _shared_data_is_an_allowed_root():
    """Tests link real files from ../shared/data into their run folders, as units link raw data
    from the instrument share: the operator's setting that allows it (see pipelines.toolkit.inputs)."""
    from pipelines.toolkit.inputs import ALLOWED_ROOTS_ENV

    os.environ[ALLOWED_ROOTS_ENV] = str(SHARED_DATA.resolve())
    yield


@pytest.fixture(autouse=True, scope="session")
def _isolated_prefect(tmp_path_factory):
    """Prefect state (its SQLite db, logs) under a temporary PREFECT_HOME, no telemetry."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ.setdefault("PREFECT_HOME", str(home))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # SQLite needs the folder
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # never the caller's server: a test asks for the session's (prefect_api) or none
    os.environ.pop("PREFECT_API_URL", None)
    yield


# ----------------------------------------------------------------------------- S3 on loopback
@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint on loopback: moto's server mode on a free port."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "binds-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "binds-test-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch, request):
    """A fresh bucket; BINDS_S3_ENDPOINT_URL points at the loopback server. Returns its s3:// URL."""
    import re
    import uuid

    import boto3

    name = (
        re.sub(r"[^a-z0-9-]", "-", f"t-{request.node.name.lower()}")[:40].strip("-")
        + "-"
        + uuid.uuid4().hex[:8]
    )
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", s3_endpoint)
    return f"s3://{name}"


# ----------------------------------------------------------------------------- test tiers
# A test is slow because of the real processes it starts, so its markers come from what it
# uses, never from a hand-written mark: a fixture that starts one of them (SLOW_FIXTURES, also
# through other fixtures), or a helper it calls (SLOW_HELPERS, also through the module's own
# functions).  `make test-fast` (-m "not slow") then runs none of them.  A test that starts one
# without either fails (the guard below), so a new test cannot slip into the fast tier.
TIER_MARKERS = ("workflow", "prefect", "slurm", "browser", "kills", "numba")

# fixture name -> what it starts.  Only the fixtures that start something are listed: a fixture
# built on them (demo_store, real_store, cryoem_version, ...) asks for one of them, and pytest's
# closure of a test's fixtures carries the marker to every test that uses it.
SLOW_FIXTURES: dict[str, tuple[str, ...]] = {
    "snakemake": ("workflow",),
    "prefect_server": ("prefect",),
    "prefect_api": ("prefect",),
    "ephemeral_prefect": ("prefect",),
    "ephemeral_prefect_session": ("prefect",),
    "binds_cli": ("workflow", "prefect"),
    "chromium": ("browser",),
    "slurm": ("slurm",),
}

# helper (module, name) -> what it starts; a test (or a function of its module that it calls)
# naming one of these is marked
SLOW_HELPERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("pipelines.run.workflow", "run_workflow"): ("workflow",),
    ("pipelines.run.workflow", "start_workflow"): ("workflow",),
    ("pipelines.run.runner", "stage"): ("workflow",),
    ("pipelines.run.runner", "run"): ("workflow", "prefect"),
    ("binds_testing", "run_stage"): ("workflow",),
    ("binds_testing", "binds"): ("workflow", "prefect"),
    # not a process of the four, but slow each: SIGKILL loops of real publishers and copiers
    # (a minute or more), and numba code compiled anew in every process: pynndescent's (its
    # kernels take functions as arguments: not cacheable, ~1 min) and UMAP's fuzzy simplicial
    # set, which scanpy's neighbors (the clustering step) runs: ~9 s with a warm cache, ~35 s
    # on a fresh clone
    ("binds_testing", "kill_when"): ("kills",),
    ("pipelines.modalities.transcriptomics.singlecell", "_csr_matrix_pynndescent"): ("numba",),
    ("pipelines.modalities.transcriptomics.singlecell", "cluster"): ("numba",),
    ("pipelines.modalities.transcriptomics.singlecell", "cluster_cells"): ("numba",),
    ("pipelines.modalities.transcriptomics.singlecell", "process_single_cell"): ("numba",),
}


# a test that may build a shared store (demo_store: every demo modality) has this long, setup
# included (pytest's `timeout` is 900 s)
SHARED_BUILD_TIMEOUT_S = 1800


def _slow_helper_objects() -> dict[int, tuple[str, ...]]:
    import importlib

    found: dict[int, tuple[str, ...]] = {}
    for (module, name), marks in SLOW_HELPERS.items():
        obj = getattr(importlib.import_module(module), name, None)
        if obj is not None:
            found[id(obj)] = marks
    return found


def _names_used(code, seen: set) -> set[str]:
    """Global names a code object (with its nested functions, lambdas, comprehensions) uses."""
    if id(code) in seen:
        return set()
    seen.add(id(code))
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_used(const, seen)
    return names


def _marks_of_function(func, helpers: dict[int, tuple[str, ...]]) -> set[str]:
    """Markers of the slow helpers ``func`` calls, directly or through functions of its module."""
    import inspect

    func = inspect.unwrap(func)
    module_globals = getattr(func, "__globals__", {})
    marks: set[str] = set()
    todo, seen_funcs, seen_code = [func], set(), set()
    while todo:
        f = todo.pop()
        if id(f) in seen_funcs or not hasattr(f, "__code__"):
            continue
        seen_funcs.add(id(f))
        marks |= _marks_of_local_imports(f.__code__, helpers)
        for name in _names_used(f.__code__, seen_code):
            obj = f.__globals__.get(name, module_globals.get(name))
            if obj is None:
                continue
            if id(obj) in helpers:
                marks |= set(helpers[id(obj)])
            elif inspect.isfunction(obj) and obj.__globals__ is f.__globals__:
                todo.append(obj)  # a helper of the test's own module
            elif inspect.ismodule(obj):  # `tx.cluster_cells`: a helper reached as an attribute
                for attr in f.__code__.co_names:
                    target = getattr(obj, attr, None)
                    if target is not None and id(target) in helpers:
                        marks |= set(helpers[id(target)])
    return marks


def _marks_of_local_imports(code, helpers: dict[int, tuple[str, ...]]) -> set[str]:
    """Markers of the slow helpers a function imports inside its body (``from m import h``
    in a test: the name is then a local, not a global the walk above finds); a helper is
    known by the object, whichever module re-exports it."""
    import dis
    import importlib

    marks: set[str] = set()
    module = None
    for ins in dis.get_instructions(code):
        if ins.opname == "IMPORT_NAME":
            module = ins.argval
        elif ins.opname == "IMPORT_FROM" and module is not None:
            try:
                target = getattr(importlib.import_module(module), ins.argval, None)
            except ImportError:
                continue
            if target is not None and id(target) in helpers:
                marks |= set(helpers[id(target)])
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            marks |= _marks_of_local_imports(const, helpers)
    return marks


def _fixture_closure(item, names) -> dict[str, list]:
    """``names`` and every fixture they use, as pytest resolves them for ``item`` (name -> its
    definitions): also a fixture a parametrized one asks for by name
    (``request.getfixturevalue(request.param)``)."""
    manager = item.session._fixturemanager
    seen: dict[str, list] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = list(manager.getfixturedefs(name, item) or ())
        for fixturedef in seen[name]:
            todo += list(fixturedef.argnames)
    return seen


# tryfirst: pytest-xdist's worker reads the xdist_group marks in its own hook of this name, and
# its plugin is registered after this conftest, so it ran first and found none
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    helpers = _slow_helper_objects()
    fixture_marks: dict[int, set[str]] = {}  # a fixture's helpers, read once per definition

    def own_marks(name: str, fixturedef) -> set[str]:
        if id(fixturedef) not in fixture_marks:
            found = set(SLOW_FIXTURES.get(name, ()))
            if not fixturedef.func.__module__.startswith("_pytest"):
                found |= _marks_of_function(fixturedef.func, helpers)
            fixture_marks[id(fixturedef)] = found
        return fixture_marks[id(fixturedef)]

    builds: dict[str, list[str]] = {}
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        if callspec is not None:
            names |= {v for v in callspec.params.values() if isinstance(v, str)}
        closure = _fixture_closure(item, names)
        marks: set[str] = set()
        for name, fixturedefs in closure.items():
            for fixturedef in fixturedefs:
                marks |= own_marks(name, fixturedef)
        func = getattr(item, "function", None)
        if func is not None:
            marks |= _marks_of_function(func, helpers)
        marks |= {m.name for m in item.iter_markers() if m.name in TIER_MARKERS}
        for mark in sorted(marks):
            item.add_marker(mark)
        if marks:
            item.add_marker("slow")
        builds[item.nodeid] = _shared_builds(closure, own_marks)
    # one group per test: of the builds it uses, the one most tests share
    users = collections.Counter(name for names in builds.values() for name in names)
    for item in items:
        if names := builds.get(item.nodeid):
            group = max(names, key=lambda n: (users[n], n))
            item.add_marker(pytest.mark.xdist_group(group))
            if getattr(config.option, "loadgroup", False):
                _group_in_node_id(item, group)
            if not item.get_closest_marker("timeout"):  # the first user builds it (a loaded
                item.add_marker(pytest.mark.timeout(SHARED_BUILD_TIMEOUT_S))  # machine: slow)


def _group_in_node_id(item, group: str) -> None:
    """What pytest-xdist's worker does for ``--dist loadgroup``: "@group" after the node id,
    which its scheduler groups by.  xdist 3.8 sets ``item._nodeid``, which pytest 9 no longer
    reads (the id is ``item._id``): without this every worker ran every group's tests, and
    built their shared build (demo_store, real_store, a module's runs) once each."""
    node_id = f"{item.nodeid}@{group}"
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(node_id)
    else:
        item._nodeid = node_id


def _shared_builds(closure: dict[str, list], own_marks) -> list[str]:
    """The session- or module-scoped fixtures in a test's closure that run workflows
    (demo_store, real_store, ...): its xdist group.  `make test` runs with ``--dist
    loadgroup``, so every user of one such build is in the worker that built it (a session
    fixture is built once per worker); the other tests spread over the workers."""

    def slow(name: str, seen: frozenset = frozenset()) -> bool:
        if name in seen:
            return False
        return any(
            own_marks(name, d) or any(slow(a, seen | {name}) for a in d.argnames)
            for d in closure.get(name, ())
        )

    return sorted(
        name
        for name, fixturedefs in closure.items()
        if name not in SLOW_FIXTURES
        and any(d.scope in ("session", "package", "module") for d in fixturedefs)
        and slow(name)
    )


def _started_by(args) -> str | None:
    """The tier marker of a command line a test is about to start, or None."""
    argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else str(args).split()
    if not argv:
        return None
    prog = Path(argv[0]).name
    words = [Path(a).name for a in argv]
    if "snakemake" in words:
        return "workflow"
    for i, word in enumerate(words):  # binds run ..., python -m pipelines.cli run ...
        if word in ("binds", "pipelines.cli") and argv[i + 1 : i + 2] in (
            ["run"],
            ["demo"],
            ["watch"],
            ["serve"],
        ):
            return "workflow"
    if "uvicorn" in words or ("prefect" in words and "server" in words):
        return "prefect"
    if prog.startswith(("chromium", "chrome", "google-chrome")):
        return "browser"
    if prog in ("sbatch", "srun", "salloc", "scancel", "squeue", "sacct", "scontrol"):
        return "slurm"
    return None


class _TierGuard:
    """While a test not marked slow runs, starting Snakemake, ``binds run``, a Prefect server,
    Chromium or Slurm fails it, naming what to use instead."""

    def __init__(self, item):
        self.item = item
        self.started: list[str] = []

    def __enter__(self):
        import subprocess

        self._original = subprocess.Popen._execute_child
        guard = self

        def execute_child(popen, args, *a, **kw):
            what = _started_by(args)
            if what is not None:
                guard.started.append(f"{what}: {args!r}"[:300])
                pytest.fail(guard.message(), pytrace=False)
            return guard._original(popen, args, *a, **kw)

        subprocess.Popen._execute_child = execute_child
        return self

    def __exit__(self, *exc):
        import subprocess

        subprocess.Popen._execute_child = self._original

    def message(self) -> str:
        return (
            f"{self.item.nodeid} is in the fast tier but started {self.started[0]}; get it "
            "through a fixture that marks the test (tests/conftest.py SLOW_FIXTURES: "
            "binds_cli, snakemake, prefect_server, chromium, slurm, demo_store, ...) or a "
            "helper in SLOW_HELPERS"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("slow"):
        return (yield)
    with _TierGuard(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if item.get_closest_marker("slow"):
        return (yield)
    with _TierGuard(item) as guard:
        result = yield
    if guard.started:  # the failure was caught on the way (e.g. `except BaseException`)
        pytest.fail(guard.message(), pytrace=False)
    return result


# ----------------------------------------------------------------------------- slow fixtures
# Each fixture below marks the tests that use it (SLOW_FIXTURES): a test asks for what it
# starts, and its tier follows.
BINDS = str(Path(sys.executable).parent / "binds")
PREFECT_SERVER_START = [
    sys.executable,
    "-m",
    "prefect",
    "server",
    "start",
    "--host",
    "127.0.0.1",
    "--port",
]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One ``prefect server start`` on a free loopback port for the session (per xdist worker),
    with its own PREFECT_HOME; every `binds run` of the tests talks to it (``binds_cli``,
    ``prefect_api``) instead of booting a temporary server each."""
    from pipelines.orchestrate.monitoring import api_problem, free_port

    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_API_BLOCKS_REGISTER_ON_START="false",  # binds uses no blocks
    )
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(
        [*PREFECT_SERVER_START, str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while api_problem(url, timeout_s=1) is not None:
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(
                f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}"
            )
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture
def prefect_api(prefect_server, monkeypatch) -> str:
    """PREFECT_API_URL of this test = the session's server: `binds run` in this process
    (CliRunner) or in a child process uses it instead of a temporary server."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    return prefect_server


@pytest.fixture(scope="session")
def ephemeral_prefect_session():
    """``ephemeral_prefect`` for a session-scoped build that runs `binds run` in this process:
    no PREFECT_API_URL while it runs, and none left behind (the command exports the URL it
    chose, its temporary server's)."""
    saved = os.environ.pop("PREFECT_API_URL", None)
    yield
    os.environ.pop("PREFECT_API_URL", None)
    if saved is not None:
        os.environ["PREFECT_API_URL"] = saved


@pytest.fixture
def ephemeral_prefect(monkeypatch) -> None:
    """For the few tests of the path a user without a Prefect server takes: no PREFECT_API_URL
    (``_isolated_prefect`` removes the caller's; a command run in-process by an earlier test
    of this worker may have exported the session server's), so `binds run` boots its own
    temporary server. The other tests use ``prefect_api``."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


def run_binds(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 900):
    """``binds <args>`` as its own process (Prefect and Snakemake logging stay out of the test
    session); returns the CompletedProcess."""
    return subprocess.run(
        [BINDS, *map(str, args)],
        capture_output=True,
        text=True,
        env=os.environ.copy() if env is None else env,
        timeout=timeout,
    )


@pytest.fixture
def binds_cli(prefect_api):
    """``binds_cli("run", run_dir, "--store", store, ...)``: `binds` as its own process against
    the session's Prefect server."""
    return run_binds


@pytest.fixture(scope="session")
def snakemake():
    """``snakemake(run_dir, work)``: validate experiment.yaml and run the real workflow into
    ``work/stage`` (binds_testing.run_stage); marks the test ``workflow``."""
    from binds_testing import run_stage

    return run_stage
