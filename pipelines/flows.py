"""Prefect flow of ``binds run``: validate -> Snakemake (one task run per job) -> publish.

The flow only orders :mod:`pipelines.runner`'s steps; :class:`pipelines.monitoring.RunReporter`
reports Snakemake's jobs into it.  What the unit lead sees in the Prefect UI for one run folder:

- a flow run named after the dataset id, tagged ``modality:``, ``request:``, ``access:`` and
  ``unit:`` (set by the caller: ``binds run`` and ``binds serve``), with absolute paths as
  parameters;
- the task runs ``validate``, one per Snakemake job (``<rule>[<wildcards>]``, from the job's
  start to its end, failed with its log tail), and ``publish``;
- the Logs tab: Snakemake's own log lines;
- artifacts keyed per dataset: ``qc-<dataset-id>`` (a table: each QC check with pass/fail,
  each rule with its time and memory, the key figures), ``publish-<dataset-id>`` (a link to the
  published version) and ``report-<dataset-id>`` (a link to its ``qc/report.html``).

``binds run`` validates and starts Snakemake *before* it imports Prefect (so that Snakemake's
start-up overlaps Prefect's) and hands the started run to :func:`make_flow`; a served
deployment (``binds serve``) runs :data:`binds_run`, which does the same steps itself.  Either
way the workflow runs without Prefect: Prefect records what it did.

The flow is ``async`` although its steps block: Prefect's synchronous flow engine joins its
heartbeat thread when the flow ends, which sleeps in 1 s steps (0.5 s added to every run on
average, 0.6 s measured); the async engine lets the daemon thread end with the process.  From
synchronous code run it with :func:`run_flow`.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger, task
from prefect.artifacts import acreate_link_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import runner
from pipelines.monitoring import RunReporter, artifact_key, trace
from pipelines.runner import EVENTS_FILE, Say, StartedRun
from pipelines.staging import StagedDataset
from pipelines.store.publish import PublishResult


def _flow_run_name() -> str:
    """The dataset id (from the run folder's experiment.yaml), else the folder's name."""
    from prefect.runtime import flow_run

    run_dir = Path(str(flow_run.parameters.get("run_dir", "run")))
    try:
        from pipelines.metadata import load_experiment
        from pipelines.service_guard import flow_run_name, served_inbox

        if served_inbox() is not None and run_dir.resolve().parent != served_inbox():
            return "refused"  # read nothing of a folder the service does not own
        exp = load_experiment(run_dir)
        return flow_run_name(exp.data, exp.dataset_id)  # consortium/restricted: a hash
    except Exception:
        return "run"  # never a stranger's folder name


def _started_name(started: StartedRun) -> str:
    from pipelines.service_guard import flow_run_name

    return flow_run_name(started.experiment.data, started.experiment.dataset_id)


# No task-level retries: publish retries transient store faults itself, within a time budget
# (BINDS_PUBLISH_RETRY_S), and bad input (e.g. another access level) is never retried.
@task(
    name="publish", task_run_name="publish", retries=0, cache_policy=NO_CACHE, persist_result=False
)
def publish_task(stage_dir: str, store_url: str | None) -> dict:
    return runner.publish_stage(stage_dir, store_url).to_dict()


async def _qc_artifact(stage: StagedDataset, dataset_id: str) -> None:
    from pipelines.report import qc_rows

    rows = qc_rows(stage)
    if rows:
        await acreate_table_artifact(
            key=artifact_key("qc", dataset_id),
            table=rows,
            description=f"QC of {dataset_id}: checks (pass/fail), rules, key figures",
        )


async def _publish_artifacts(result: dict[str, Any]) -> None:
    from pipelines.service_guard import flow_run_name

    # consortium / restricted: keyed and labelled by the dataset's hash, as the flow run is
    label = flow_run_name({"access": {"level": result["access"]}}, result["dataset_id"])
    base = f"{result['store_url'].rstrip('/')}/{result['prefix']}v{result['version']}/"
    link = base if "://" in base else Path(base).resolve().as_uri() + "/"
    verb = "published" if result["created"] else "unchanged"
    await acreate_link_artifact(
        key=artifact_key("publish", label),
        link=link,
        link_text=f"{label} v{result['version']} ({verb}, "
        f"{result['n_files']} files, {result['bytes']:,} bytes)",
        description=f"content {result['content_digest']}",
    )
    await acreate_link_artifact(
        key=artifact_key("report", label),
        link=link + "qc/report.html",
        link_text=f"QC report of {label} v{result['version']}",
        description="self-contained HTML: what was measured, pass/fail, figures, "
        "files, how to cite",
    )


def _quiet(_text: str) -> None:
    pass


def make_flow(started: StartedRun | None = None, *, say: Say = _quiet) -> Flow:
    """The ``binds-run`` flow.  With ``started`` (validated, Snakemake running: what
    :func:`runner.start_run` returns; ``binds run``) it reports that run instead of starting
    one: call it with the same arguments.  ``say`` receives the progress lines (a spinner)."""

    @flow(
        name="binds-run",
        flow_run_name=_started_name(started) if started else _flow_run_name,
        log_prints=True,
        persist_result=False,
    )
    async def binds_run(
        run_dir: str,
        store_url: str | None = None,
        profile: str = "local",
        cores: int | None = None,
        work_dir: str | None = None,
        publish: bool = True,
    ) -> dict:
        """Process one run folder and publish it; returns the publish result (or the stage dir)."""
        # a served deployment's flow run is its own process: private files from here on too
        from pipelines.store.filemodes import private_umask

        private_umask()
        if started is None:  # a served deployment: its parameters come from anyone
            from pipelines.service_guard import check_flow_parameters

            check_flow_parameters(
                run_dir,
                store_url=store_url,
                profile=profile,
                cores=cores,
                work_dir=work_dir,
                publish=publish,
            )
        with _pid_recorded():
            return await _binds_run(
                run_dir,
                store_url=store_url,
                profile=profile,
                cores=cores,
                work_dir=work_dir,
                publish=publish,
                started=started,
                say=say,
            )

    return binds_run


class _pid_recorded:
    """``<PREFECT_HOME>/binds-flow-runs/<flow run id>.pid`` while this flow run runs."""

    def __enter__(self):
        from prefect.runtime import flow_run

        from pipelines.monitoring import pid_file

        self.path = pid_file(str(flow_run.id))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{os.getpid()}\n")
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


async def _binds_run(
    run_dir: str,
    *,
    store_url: str | None,
    profile: str,
    cores: int | None,
    work_dir: str | None,
    publish: bool,
    started: StartedRun | None,
    say: Say,
) -> dict:
    # the work folder's lock is held from validation to the commit: one run per folder at a time
    # (re-entrant: binds run took it before validating)
    trace("flow run begun")
    logger = get_run_logger()
    with runner.hold_work_dir(run_dir, work_dir, say=say):
        reporter = RunReporter(logger)
        if started is None:  # a served deployment: validate and start here
            started = _start(
                reporter,
                run_dir=run_dir,
                work_dir=work_dir,
                store_url=store_url,
                check_store=publish,  # the store is checked before any compute
                profile=profile,
                cores=cores,
                say=say,
            )
        stage = started.stage
        reporter.console_log = stage.meta_dir / "snakemake.log"
        reporter.step("validate", started=started.validated[0], finished=started.validated[1])
        try:
            with reporter.following(started.events):
                started.staging.wait()
                trace("snakemake exited")
        finally:
            started.staging.stop()  # a no-op once it ended; else (an exception) stop it
        trace("jobs reported")
        await _qc_artifact(stage, _started_name(started))  # a hash unless open
        trace("qc artifact")
        if not publish:
            return {"stage_dir": str(stage.root), "published": False}
        result = publish_task(str(stage.root), store_url)
    await _publish_artifacts(result)
    return result | {"stage_dir": str(stage.root), "published": True}


def _start(reporter: RunReporter, **how: Any) -> StartedRun:
    """:func:`runner.start_run` inside the flow; bad input fails the ``validate`` task run."""
    t0 = time.time()
    try:
        return runner.start_run(**how)
    except Exception as exc:
        reporter.step("validate", started=t0, finished=time.time(), failed=str(exc))
        raise


def run_flow(binds_flow: Flow, run_dir: str, **parameters: Any) -> dict:
    """Run a :func:`make_flow` flow to its end from synchronous code; the flow's result."""
    return asyncio.run(binds_flow(run_dir, **parameters))


#: The flow of a served deployment (``binds serve``), of ``binds watch`` and ``binds demo``.
binds_run = make_flow()

__all__ = ["EVENTS_FILE", "PublishResult", "binds_run", "make_flow", "run_flow"]
