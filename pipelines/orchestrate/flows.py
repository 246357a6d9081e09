"""Prefect flow of ``binds run``: validate -> Snakemake (one task run per job) -> publish.

The flow only orders :mod:`pipelines.run.runner`'s steps; :class:`pipelines.orchestrate.monitoring.RunReporter`
reports Snakemake's jobs into it.  What the unit lead sees in the Prefect UI for one run folder:

- a flow run named after the dataset id, tagged ``modality:``, ``request:``, ``access:`` and
  ``unit:`` (set by the caller: ``binds run`` and ``binds serve``), with absolute paths as
  parameters;
- the task runs ``validate``, one per Snakemake job (``<rule>[<wildcards>]``, from the job's
  start to its end, failed with its log tail), and ``publish``;
- the Logs tab: Snakemake's own log lines;
- artifacts keyed per dataset: ``qc-<dataset-id>`` (a table: each QC check with pass/fail,
  each rule with its time and memory, the key figures), ``publish-<dataset-id>`` (a link to the
  published version) and ``report-<dataset-id>`` (markdown: the QC verdict, every check, and a
  link to ``qc/report.html`` a browser opens: :func:`report_link`);
- a version whose QC fails: the flow run ends Completed named "QC failed", tagged ``qc:fail``.

``binds run`` validates and starts Snakemake *before* it imports Prefect (so that Snakemake's
start-up overlaps Prefect's), creates the flow run with two REST calls meanwhile (it is in the
UI at once: :class:`pipelines.orchestrate.monitoring.EarlyFlowRun`) and hands the started run to
:func:`make_flow`, whose engine adopts that flow run (:func:`run_flow`); a served
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
from prefect.artifacts import (
    acreate_link_artifact,
    acreate_markdown_artifact,
    acreate_table_artifact,
)
from prefect.cache_policies import NO_CACHE

from pipelines.orchestrate.monitoring import RunReporter, artifact_key, trace
from pipelines.run import runner
from pipelines.run.runner import Say, StartedRun
from pipelines.store.publish import PublishResult
from pipelines.toolkit.stage import EVENTS_FILE, StagedDataset


def _flow_run_name() -> str:
    """The dataset id (from the run folder's experiment.yaml), else the folder's name."""
    from prefect.runtime import flow_run

    run_dir = Path(str(flow_run.parameters.get("run_dir", "run")))
    try:
        from pipelines.describe.metadata import load_experiment
        from pipelines.orchestrate.service_guard import flow_run_name, served_inbox

        if served_inbox() is not None and run_dir.resolve().parent != served_inbox():
            return "refused"  # read nothing of a folder the service does not own
        exp = load_experiment(run_dir)
        return flow_run_name(exp.data, exp.dataset_id)  # consortium/restricted: a hash
    except Exception:
        return "run"  # never a stranger's folder name


def _started_name(started: StartedRun) -> str:
    from pipelines.orchestrate.service_guard import flow_run_name

    return flow_run_name(started.experiment.data, started.experiment.dataset_id)


# No task-level retries: publish retries transient store faults itself, within a time budget
# (BINDS_PUBLISH_RETRY_S), and bad input (e.g. another access level) is never retried.
@task(
    name="publish", task_run_name="publish", retries=0, cache_policy=NO_CACHE, persist_result=False
)
def publish_task(stage_dir: str, store_url: str | None) -> dict:
    return runner.publish_stage(stage_dir, store_url).to_dict()


async def _qc_artifact(stage: StagedDataset, dataset_id: str) -> None:
    from pipelines.describe.report import qc_rows

    rows = qc_rows(stage)
    if rows:
        await acreate_table_artifact(
            key=artifact_key("qc", dataset_id),
            table=rows,
            description=f"QC of {dataset_id}: checks (pass/fail), rules, key figures",
        )


async def _publish_artifacts(result: dict[str, Any]) -> None:
    from pipelines.orchestrate.service_guard import flow_run_name

    # consortium / restricted: keyed and labelled by the dataset's hash, as the flow run is
    label = flow_run_name({"access": {"level": result["access"]}}, result["dataset_id"])
    verb = "published" if result["created"] else "unchanged"
    what = f"{label} v{result['version']} ({verb}, {result['n_files']} files, {result['bytes']:,} bytes)"
    if result["access"] == "open":
        base = f"{result['store_url'].rstrip('/')}/{result['prefix']}v{result['version']}/"
        link = base if "://" in base else Path(base).resolve().as_uri() + "/"
        await acreate_link_artifact(
            key=artifact_key("publish", label),
            link=link,
            link_text=what,
            description=f"content {result['content_digest']}",
        )
    else:  # a key path names the dataset: who reads Prefect's API gets no link to it
        await acreate_markdown_artifact(
            key=artifact_key("publish", label),
            markdown=f"{what} at the {result['access']} level\n",
            description=f"content {result['content_digest']}",
        )
    await acreate_markdown_artifact(
        key=artifact_key("report", label),
        markdown=report_markdown(
            result, report_link(result) if result["access"] == "open" else None, label=label
        ),
        description="the QC verdict and where the self-contained HTML report is",
    )


#: How long a presigned link to an S3 store's report opens (S3's maximum: 7 days).
REPORT_LINK_S = 7 * 86400


def report_link(result: dict[str, Any]) -> str:
    """A link to the version's qc/report.html that a browser opens from the Prefect UI: the
    data service's (``BINDS_DATA_SERVICE_URL``) when one is configured, a presigned HTTPS link
    for an S3 store, else the file's ``file://`` URL (opens on the machine holding the store)."""
    key = f"{result['prefix']}v{result['version']}/qc/report.html"
    service = os.environ.get("BINDS_DATA_SERVICE_URL", "").rstrip("/")
    if service:
        return f"{service}/{key}"
    url = result["store_url"].rstrip("/")
    if url.startswith("s3://"):
        try:
            from pipelines.store import open_store

            st: Any = open_store(url, read_only=True)
            return str(
                st.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": st.bucket, "Key": st._key(key)},
                    ExpiresIn=REPORT_LINK_S,
                )
            )
        except Exception:  # no credentials to sign with: the plain URL, still informative
            return f"{url}/{key}"
    return Path(f"{url}/{key}").resolve().as_uri()


def report_markdown(result: dict[str, Any], link: str | None, *, label: str | None = None) -> str:
    """The ``report-<label>`` artifact: the verdict, each failed check, the report link.

    ``label`` names the dataset (its hash for consortium and restricted data); ``link`` None
    (those levels): the report is named by its place in the version, with no key path.
    """
    from pipelines.toolkit.qc import Verdict

    qc = Verdict.from_dict(result["qc"]) if result.get("qc") else None
    lines = [f"### {label or result['dataset_id']} v{result['version']}", ""]
    if qc is not None:
        mark = {"pass": "✅", "fail": "❌"}.get(qc.status, "➖")
        lines += [f"{mark} **{qc.summary()}**", ""]
        if qc.checks:
            lines += ["| check | result | value | criterion | meaning |", "|---|---|---|---|---|"]
            for c in qc.checks:
                detail = c.reason if c.result == "n/a" else c.meaning
                if c.result == "fail":
                    detail += f" **What to do:** {c.on_fail}"
                cells = [c.name, c.result.upper(), c.shown, c.criterion, detail]
                lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
            lines.append("")
    if link:
        lines.append(f"[Open the QC report (HTML)]({link})")
    else:
        lines.append(
            "The QC report (HTML) is the version's `qc/report.html`; on the unit's machine, "
            "`binds show DATASET` prints where (the dataset id is not shown in Prefect at this "
            "access level)."
        )
    return "\n".join(lines) + "\n"


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
        """Process one run folder and publish it; returns the publish result (or the stage dir).

        A version whose QC verdict is FAIL ends in a Completed state named "QC failed" (the
        data are published: QC is the researcher's information, not a reason to withhold
        them) with the tag ``qc:fail``; ``binds run --fail-on-qc`` turns it into exit 3."""
        # a served deployment's flow run is its own process: private files from here on too
        from pipelines.store.filemodes import private_umask

        private_umask()
        if started is None:  # a served deployment: its parameters come from anyone
            from pipelines.orchestrate.service_guard import check_flow_parameters

            check_flow_parameters(
                run_dir,
                store_url=store_url,
                profile=profile,
                cores=cores,
                work_dir=work_dir,
                publish=publish,
            )
        with _pid_recorded():
            result = await _binds_run(
                run_dir,
                store_url=store_url,
                profile=profile,
                cores=cores,
                work_dir=work_dir,
                publish=publish,
                started=started,
                say=say,
            )
        return await _qc_state(result)

    return binds_run


async def _qc_state(result: dict[str, Any]) -> Any:
    """The flow run's final state: plain Completed, or Completed named "QC failed" (tagged
    ``qc:fail``, the failing checks in its message) when the verdict fails."""
    qc = result.get("qc") or {}
    if qc.get("status") != "fail":
        return result
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run
    from prefect.states import Completed

    try:
        async with get_client() as client:
            run = await client.read_flow_run(flow_run.id)
            await client.update_flow_run(run.id, tags=sorted({*run.tags, "qc:fail"}))
    except Exception as exc:  # the tag is a convenience; the state below is what counts
        get_run_logger().warning("could not tag the flow run qc:fail: %s", exc)
    return Completed(name="QC failed", message=qc.get("summary", "QC failed"), data=result)


class _pid_recorded:
    """``<PREFECT_HOME>/binds-flow-runs/<flow run id>.pid`` while this flow run runs."""

    def __enter__(self):
        from prefect.runtime import flow_run

        from pipelines.orchestrate.monitoring import pid_file

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
        if started.unchanged is not None:  # decided from the fingerprint: nothing ran
            reporter.step("validate", started=started.validated[0], finished=started.validated[1])
            return started.unchanged
        reporter.console_log = stage.snakemake_log
        reporter.step("validate", started=started.validated[0], finished=started.validated[1])
        try:
            with reporter.following(started.events):
                started.staging.wait()
                trace("snakemake exited")
        finally:
            started.staging.stop()  # a no-op once it ended; else (an exception) stop it
        trace("jobs reported")
        verdict = _write_verdict(stage)
        if verdict.status == "fail":
            logger.warning(verdict.summary())
            for c in verdict.failed:
                logger.warning("FAIL %s", c.line())
        await _qc_artifact(stage, _started_name(started))  # a hash unless open
        trace("qc artifact")
        qc = verdict.to_dict()
        if not publish:
            return {"stage_dir": str(stage.root), "published": False, "qc": qc}
        result = publish_task(str(stage.root), store_url)
    result = result | {"stage_dir": str(stage.root), "published": True, "qc": qc}
    await _publish_artifacts(result)
    return result


def _write_verdict(stage: StagedDataset) -> Any:
    """qc/verdict.json of the stage once Snakemake ended (the publish writes the same bytes)."""
    from pipelines.describe.verdict import write_verdict

    if not (stage.qc_dir / "metrics.json").is_file():  # the workflow failed: no verdict
        from pipelines.toolkit.qc import Verdict

        return Verdict(stage.experiment.get("modality", ""), "n/a", ())
    return write_verdict(stage.qc_dir, stage.experiment.get("modality", ""), stage.metrics)


def _start(reporter: RunReporter, **how: Any) -> StartedRun:
    """:func:`runner.start_run` inside the flow; bad input fails the ``validate`` task run."""
    t0 = time.time()
    try:
        return runner.start_run(**how)
    except Exception as exc:
        reporter.step("validate", started=t0, finished=time.time(), failed=str(exc))
        raise


class InboxRejected(Exception):
    """The run folder's problems, as the failure of its ``binds-inbox-rejected`` flow run."""


@flow(name="binds-inbox-rejected", flow_run_name="{folder}", log_prints=True, persist_result=False)
def inbox_rejected(folder: str, problems: list[str]) -> None:
    """A folder the inbox refused (bad input): a failed flow run with every problem, so it is
    seen in the Prefect UI next to the runs (before, it was only in the inbox's state file)."""
    logger = get_run_logger()
    for problem in problems:
        logger.error(problem)
    raise InboxRejected(f"{len(problems)} problem(s): " + "; ".join(problems))


def record_rejection(folder: str, problems: list[str]) -> None:
    """Run :func:`inbox_rejected` (tagged ``inbox:rejected``); never raises."""
    from prefect import tags

    try:
        with tags("inbox:rejected"):
            inbox_rejected(folder, problems, return_state=True)
    except Exception as exc:  # the inbox's own record stays the reference
        import logging

        logging.getLogger(__name__).warning("could not record the rejection in Prefect: %s", exc)


def run_flow(
    binds_flow: Flow, run_dir: str, *, flow_run: dict[str, Any] | None = None, **parameters: Any
) -> dict:
    """Run a :func:`make_flow` flow to its end from synchronous code; the flow's result.

    ``flow_run``: a flow run already in the API (the server's record of it: ``binds run``
    creates it before importing Prefect, :class:`pipelines.orchestrate.monitoring.EarlyFlowRun`), which
    Prefect's engine adopts (as it does a deployment's run) instead of creating one."""
    if flow_run is None:
        return asyncio.run(binds_flow(run_dir, **parameters))
    from prefect.client.schemas.objects import FlowRun
    from prefect.flow_engine import run_flow as run_in_engine

    existing = FlowRun.model_validate(flow_run)
    return asyncio.run(
        run_in_engine(binds_flow, flow_run=existing, parameters={"run_dir": run_dir, **parameters})
    )


#: The flow of a served deployment (``binds serve``), of ``binds watch`` and ``binds demo``.
binds_run = make_flow()

__all__ = ["EVENTS_FILE", "PublishResult", "binds_run", "make_flow", "run_flow"]
