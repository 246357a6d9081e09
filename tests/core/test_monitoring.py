"""Monitoring: Snakemake jobs as Prefect task runs, run identity, artifacts, resilience.

Against a real ``prefect server start`` on loopback (one per session) and, for the fault
cases, ``binds run`` as a real subprocess (Ctrl-C is a SIGINT to its process group, as a
terminal sends it).  Reading back goes through the Prefect client, as the UI does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.describe.jobs import benchmark_figures
from pipelines.modalities import get as get_modality
from pipelines.orchestrate.monitoring import free_port

REPO = Path(__file__).resolve().parents[2]
BINDS = [sys.executable, "-m", "pipelines.cli"]


@pytest.fixture(scope="module")
def screening_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "screen-0006"
    get_modality("screening").make_demo_run(run_dir)
    return run_dir


def _read_run(
    api_url: str, flow_run_name: str, *, expect_tasks: int, timeout_s: float = 60
) -> dict:
    """The newest flow run of that name with its task runs, logs and artifacts, once the
    server has recorded ``expect_tasks`` task runs in a final state (events are asynchronous)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        FlowRunFilter,
        LogFilter,
        TaskRunFilter,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def once() -> dict:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name={"any_": [flow_run_name]})
            )
            assert runs, f"no flow run named {flow_run_name}"
            fr = max(runs, key=lambda r: r.created)
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [fr.id]}), task_run_filter=TaskRunFilter()
            )
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id={"any_": [fr.id]}))
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id={"any_": [fr.id]})
            )
            return {"flow_run": fr, "tasks": tasks, "logs": logs, "artifacts": arts}

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        deadline = time.monotonic() + timeout_s
        while True:
            got = asyncio.run(once())
            final = [t for t in got["tasks"] if t.state and t.state.is_final()]
            if len(final) >= expect_tasks and got["flow_run"].state.is_final():
                return got
            assert time.monotonic() < deadline, (
                f"{len(final)} of {expect_tasks} task runs final: {[t.name for t in got['tasks']]}"
            )
            time.sleep(0.5)


# ----------------------------------------------------------------------------- the logger plugin
def test_logger_plugin_streams_job_events_with_resources_benchmarks_and_errors(tmp_path, snakemake):
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: expand("out/{s}.txt", s=["a", "b"]), "out/bad.txt"\n'
        'rule make:\n    output: "out/{s}.txt"\n    log: "logs/{s}.log"\n    benchmark: "bench/{s}.tsv"\n'
        "    threads: 1\n    resources: mem_mb=123, runtime=4\n"
        '    shell: "echo {wildcards.s} > {output}; echo made > {log}"\n'
        'rule bad:\n    output: "out/bad.txt"\n    log: "logs/bad.log"\n'
        '    shell: "echo boom-in-the-log > {log}; exit 3"\n'
    )
    events = tmp_path / "events.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "--logger",
            "binds",
            "--keep-going",
            "-d",
            str(tmp_path),
            "-s",
            str(tmp_path / "Snakefile"),
        ],
        env=dict(os.environ, BINDS_SNAKEMAKE_EVENTS=str(events)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0  # the bad rule failed
    evs = [json.loads(line) for line in events.read_text().splitlines()]
    infos = {e["jobid"]: e for e in evs if e["event"] == "job_info"}
    made = sorted(
        (e for e in infos.values() if e["rule"] == "make"), key=lambda e: e["wildcards"]["s"]
    )
    assert [e["wildcards"] for e in made] == [{"s": "a"}, {"s": "b"}]
    assert made[0]["threads"] == 1 and made[0]["resources"]["mem_mb"] == 123
    assert made[0]["resources"]["runtime"] == 4
    assert made[0]["log"] == [str(tmp_path / "logs" / "a.log")]
    finished = {e["jobid"] for e in evs if e["event"] == "job_finished"}
    assert {e["jobid"] for e in made} <= finished
    assert benchmark_figures(made[0]["benchmark"]).keys() >= {"cpu_s", "max_rss_mb", "wall_s"}
    errors = [e for e in evs if e["event"] == "job_error"]
    assert [e["rule"] for e in errors] == ["bad"] and errors[0]["log"] == [
        str(tmp_path / "logs" / "bad.log")
    ]
    assert all(e["t"] > 1e9 for e in evs) and any(e["event"] is None and e["msg"] for e in evs)


def test_logger_plugin_is_inert_without_an_events_file(tmp_path, snakemake):
    (tmp_path / "Snakefile").write_text('rule all:\n    output: "x"\n    shell: "touch {output}"\n')
    env = {k: v for k, v in os.environ.items() if k != "BINDS_SNAKEMAKE_EVENTS"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "--logger",
            "binds",
            "-d",
            str(tmp_path),
            "-s",
            str(tmp_path / "Snakefile"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- against a server
def test_run_shows_every_snakemake_job_as_a_task_run(
    prefect_server, screening_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    store, work = tmp_path / "store", tmp_path / "work"
    t0 = time.time()
    out = CliRunner().invoke(
        app,
        [
            "run",
            str(screening_run),
            "--store",
            str(store),
            "--cores",
            "2",
            "--work-dir",
            str(work),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    dataset = result["dataset_id"]
    assert result["report"].endswith(f"{result['prefix']}v1/qc/report.html")

    events = [
        json.loads(line)
        for line in (work / "stage" / "_meta" / "snakemake-events.jsonl").read_text().splitlines()
    ]
    jobs = {e["jobid"]: e for e in events if e["event"] == "job_info"}
    ends = {e["jobid"]: e["t"] for e in events if e["event"] == "job_finished"}
    got = _read_run(prefect_server, dataset, expect_tasks=len(jobs) + 2)

    fr = got["flow_run"]
    assert fr.state.is_completed()
    assert set(fr.tags) >= {
        "modality:screening",
        "request:BINDS-DEMO-0006",
        f"access:{result['access']}",
    }
    assert any(t.startswith("unit:") for t in fr.tags)
    assert fr.parameters["run_dir"] == str(screening_run.resolve())
    assert fr.parameters["store_url"] == str(store.resolve()) and fr.parameters["work_dir"] == str(
        work.resolve()
    )

    by_name = {t.name: t for t in got["tasks"]}
    for jobid, info in jobs.items():
        wc = ",".join(f"{k}={v}" for k, v in info["wildcards"].items())
        name = f"{info['rule']}[{wc}]" if wc else info["rule"]
        task = by_name[name]
        assert task.state.is_completed(), (name, task.state)
        # the task run is stamped with Snakemake's own start and end of the job
        assert abs(task.start_time.timestamp() - info["t"]) < 0.01, name
        assert abs(task.end_time.timestamp() - ends[jobid]) < 0.01, name
        assert f"rule:{info['rule']}" in task.tags
    assert "screening_read_batch[batch=0]" in by_name
    assert {"validate", "publish"} <= set(by_name)
    # the run graph: a job waits for the jobs that made its inputs
    score = by_name["screening_score"]
    assert [i.id for i in score.task_inputs["wait_for"]] == [
        by_name["screening_read_batch[batch=0]"].id
    ]
    assert all(t.start_time.timestamp() >= t0 for t in got["tasks"])

    messages = [log.message for log in got["logs"]]
    assert any(m.startswith("snakemake: ") and "Rule: screening_score" in m for m in messages)
    assert any("benchmark: wall_s" in m and "max_rss_mb" in m for m in messages)

    arts = {a.key: a for a in got["artifacts"]}
    assert {f"qc-{dataset}", f"publish-{dataset}", f"report-{dataset}"} <= set(arts)
    qc = json.loads(arts[f"qc-{dataset}"].data)
    checks = {r["name"]: r["result"] for r in qc if r["section"] == "check"}
    assert checks["plate QC (Z')"] == "PASS"
    assert {r["name"] for r in qc if r["section"] == "rule"} >= {
        "screening_score",
        "screening_metrics",
    }
    assert any(r["name"] == "z_prime_median" for r in qc if r["section"] == "figure")
    assert "qc/report.html" in arts[f"report-{dataset}"].data

    show = CliRunner().invoke(app, ["show", dataset, "--store", str(store)])
    assert show.exit_code == 0 and f"report:   {result['report']}" in show.stdout


def test_failed_rule_is_a_failed_task_run_with_its_log_tail(
    prefect_server, screening_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    monkeypatch.setenv("MPLBACKEND", "no-such-backend")  # the plotting rule's matplotlib refuses it
    out = CliRunner().invoke(app, _run_args(screening_run, tmp_path), catch_exceptions=False)
    assert out.exit_code == 1 and "workflow failed in rule screening_plots" in out.output
    events = (
        (tmp_path / "work" / "stage" / "_meta" / "snakemake-events.jsonl").read_text().splitlines()
    )
    n_jobs = sum(json.loads(line)["event"] == "job_info" for line in events)
    got = _read_run(prefect_server, "binds-demo-0006-screening", expect_tasks=n_jobs + 1)
    assert got["flow_run"].state.is_failed()
    failed = [t for t in got["tasks"] if t.state.is_failed()]
    assert [t.name for t in failed] == ["screening_plots"]
    assert "no-such-backend" in failed[0].state.message or any(
        "no-such-backend" in log.message for log in got["logs"] if log.task_run_id == failed[0].id
    )


# ----------------------------------------------------------------------------- resilience
def test_invalid_input_exits_2_within_2_s_without_importing_prefect(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "experiment.yaml").write_text("schema_version: 1\nmodality: screening\n")
    code = (
        "import time; t0 = time.monotonic()\n"
        "import sys\nfrom pipelines.cli import app\n"
        f"try:\n    app(['run', {str(bad)!r}, '--store', {str(tmp_path / 'store')!r}])\n"
        "except SystemExit as e:\n    rc = e.code\n"
        "print(rc, round(time.monotonic() - t0, 2), 'prefect' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    rc, seconds, prefect_imported = proc.stdout.split()
    assert rc == "2" and "request_id: required field is missing" in proc.stderr
    assert prefect_imported == "False"
    assert float(seconds) <= 2.0, f"invalid input reported after {seconds} s"
    assert not (tmp_path / "store").exists()


def _run_args(run_dir: Path, tmp_path: Path) -> list[str]:
    """``binds run`` of ``run_dir`` into a store and work folder under ``tmp_path``."""
    store, work = tmp_path / "store", tmp_path / "work"
    return ["run", str(run_dir), "--store", str(store), "--cores", "2", "--work-dir", str(work)]


def _start_in_own_session(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``cmd`` in its own session: the test signals its process group, as a terminal does."""
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_dead_api_warns_ctrl_c_exits_130_and_a_rerun_resumes(
    prefect_server, screening_run, tmp_path
):
    """PREFECT_API_URL answers nothing: one warning line and a temporary server.  Ctrl-C while
    a rule runs (SIGINT to the process group, as a terminal does): one line, exit 130, the
    Snakemake lock released.  The same command then completes."""
    store, work = tmp_path / "store", tmp_path / "work"
    dead = f"http://127.0.0.1:{free_port()}/api"
    cmd = [*BINDS, *_run_args(screening_run, tmp_path)]
    proc = _start_in_own_session(cmd, dict(os.environ, PREFECT_API_URL=dead))
    events = work / "stage" / "_meta" / "snakemake-events.jsonl"
    deadline = time.monotonic() + 240
    while not (events.exists() and '"job_info"' in events.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no Snakemake job started"
        time.sleep(0.2)
    # binds reports at a lower CPU priority than the workflow it started (benchmarks/README.md)
    snakemake = [c for c in _children(proc.pid) if "snakemake" in _cmdline(c)]
    assert len(snakemake) == 1, [_cmdline(c) for c in _children(proc.pid)]
    assert _nice(proc.pid) == min(19, _nice(snakemake[0]) + 10)
    assert _nice(snakemake[0]) == os.getpriority(os.PRIO_PROCESS, 0)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 130, err
    assert lines[0].startswith(f"warning: the Prefect API at {dead} does not answer")
    assert lines[1:] == [
        "interrupted: nothing was committed that is not complete; run the same command to resume"
    ]
    assert not list((work / ".snakemake" / "locks").glob("*"))
    assert not store.exists() or not list(store.rglob("manifest.json"))

    trace = tmp_path / "trace"
    rerun = subprocess.run(
        cmd,
        env=dict(os.environ, PREFECT_API_URL=prefect_server, BINDS_TRACE=str(trace)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith("published: binds-demo-0006-screening v1")
    assert "report: " in rerun.stdout
    # Snakemake was started before Prefect was imported (its start-up overlaps Prefect's)
    steps = [line.split(" ", 1)[1] for line in trace.read_text().splitlines()]
    assert steps.index("snakemake started") < steps.index("prefect imported, API ready")


def test_ctrl_c_while_prefect_is_being_imported_is_one_line(
    prefect_server, screening_run, tmp_path
):
    """Ctrl-C after Snakemake started and before Prefect's import (in a thread) ended: one
    line, exit 130.  (Seen once on a loaded machine, with the dead-API case above: an extra
    "Failed to initialize plugins: deadlock detected by _ModuleLock(...)" line, the session's
    flush importing Prefect while the thread still did; the race is not reproducible on
    demand, binds now lets the import end first.)"""
    trace = tmp_path / "trace"
    proc = _start_in_own_session(
        [*BINDS, *_run_args(screening_run, tmp_path)],
        dict(os.environ, PREFECT_API_URL=prefect_server, BINDS_TRACE=str(trace)),
    )
    deadline = time.monotonic() + 120
    while not (trace.exists() and "snakemake started" in trace.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "Snakemake did not start"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    steps = [line.split(" ", 1)[1] for line in trace.read_text().splitlines()]
    assert "prefect imported, API ready" not in steps, "the signal came after the import"
    assert proc.returncode == 130, err
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "interrupted: nothing was committed that is not complete; run the same command to resume"
    ]


def test_a_ctrl_c_inside_thread_start_still_waits_for_the_import(monkeypatch):
    """CI, 2026-12-04: the Ctrl-C landed inside ``Thread.start()`` of the Prefect import, and
    joining the thread that had not run yet raised "cannot join thread before it is started"
    (a traceback, exit 1, instead of the one line and exit 130).  The thread is listed but not
    started here; it starts 0.2 s later and must be waited for."""
    import threading

    from pipelines import cli

    finished = threading.Event()
    importer = threading.Thread(
        target=lambda: (time.sleep(0.3), finished.set()), name=cli._IMPORT_THREAD, daemon=True
    )
    monkeypatch.setattr(threading, "enumerate", lambda: [importer])
    threading.Timer(0.2, importer.start).start()
    cli.wait_for_background_import(timeout_s=30)
    assert finished.is_set()


def test_the_temporary_server_never_outlives_binds(tmp_path, ephemeral_prefect):
    """binds killed with SIGKILL (or by a dropped SSH session): its temporary server goes too."""
    code = (
        "import os, signal\nfrom pipelines.orchestrate.monitoring import TemporaryServer\n"
        "s = TemporaryServer().start()\nprint(s.proc.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PREFECT_HOME=str(tmp_path)),
    )
    assert proc.returncode == -signal.SIGKILL
    server_pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 20
    while Path(f"/proc/{server_pid}").exists() and "zombie" not in _proc_state(server_pid):
        assert time.monotonic() < deadline, "the temporary server outlived its parent"
        time.sleep(0.2)


# one binds process: a temporary server on PREFECT_HOME, "ready" once it answers, then stopped
_ONE_TEMPORARY_SERVER = """
import sys
from pipelines.orchestrate.monitoring import TemporaryServer
server = TemporaryServer().start()
try:
    server.wait_ready()
    print("ready", flush=True)
except RuntimeError as exc:
    print(exc, flush=True)
    sys.exit(1)
finally:
    server.stop()
"""


def test_temporary_servers_started_at_once_on_a_new_prefect_home_all_answer(
    tmp_path, ephemeral_prefect
):
    """Staff start several `binds run` at once on a workstation without a Prefect server (and
    CI's test workers share one PREFECT_HOME): each boots a temporary server on the same SQLite
    database.  On main, servers that migrated the new database together exited with code 3
    ("duplicate column name: labels", CI's failure of 2026-12-04)."""
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ONE_TEMPORARY_SERVER],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [proc.communicate(timeout=300) for proc in procs]
    assert [out.strip() for out, _err in outcomes] == ["ready"] * 3, outcomes


def _children(pid: int) -> list[int]:
    return [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "gone"


def test_a_ctrl_c_inside_join_does_not_end_the_wait_for_the_import(tmp_path, monkeypatch):
    """CI flake (~1 in 3 runs of the Ctrl-C test): the Ctrl-C landed in ``join()`` of the
    Prefect import thread, and Python 3.11 then marks that live thread stopped (bpo-45274's
    recovery), so the exit's wait returned at once and the flush imported Prefect beside the
    thread: "Failed to initialize plugins: deadlock detected by _ModuleLock(...)".  The wait
    and the flush now follow the thread's own ``done`` event."""
    from pipelines.orchestrate import monitoring

    (tmp_path / "binds_slow_import_probe.py").write_text("import time\ntime.sleep(1.5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    t0 = time.monotonic()
    thread = monitoring.import_in_background("binds_slow_import_probe")

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            thread.join()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    monitoring.wait_for_background_import(timeout_s=30)
    assert thread.done.is_set() and time.monotonic() - t0 >= 1.4
    assert not monitoring._importing_now()  # the flush may import Prefect now
