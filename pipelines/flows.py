"""Prefect flow of ``binds run``: validate -> Snakemake (one task run per job) -> publish.

The flow only orders :mod:`pipelines.runner`'s steps; :mod:`pipelines.monitoring` mirrors
Snakemake into it.  What the unit lead sees in the Prefect UI for one run folder:

- a flow run named after the dataset id, tagged ``modality:``, ``request:``, ``access:`` and
  ``unit:`` (set by the caller: ``binds run`` and ``binds serve``), with absolute paths as
  parameters;
- the task runs ``validate``, one per Snakemake job (``<rule>[<wildcards>]``, from the job's
  start to its end, failed with its log tail), and ``publish``;
- the Logs tab: Snakemake's own log lines;
- artifacts keyed per dataset: ``qc-<dataset-id>`` (a table: each QC check with pass/fail,
  each rule with its time and memory, the key figures), ``publish-<dataset-id>`` (a link to the
  published version) and ``report-<dataset-id>`` (a link to its ``qc/report.html``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from pipelines import runner
from pipelines.monitoring import EVENTS_ENV, SnakemakeMonitor, artifact_key
from pipelines.staging import StagedDataset
from pipelines.store.publish import PublishResult

EVENTS_FILE = "snakemake-events.jsonl"  # in <stage>/_meta/: the run's job record


def _flow_run_name() -> str:
    """The dataset id (from the run folder's experiment.yaml), else the folder's name."""
    from prefect.runtime import flow_run

    run_dir = Path(str(flow_run.parameters.get("run_dir", "run")))
    try:
        from pipelines.metadata import load_experiment

        return load_experiment(run_dir).dataset_id
    except Exception:
        return run_dir.name


@task(
    name="validate",
    task_run_name="validate",
    retries=0,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def validate_task(
    run_dir: str, work_dir: str | None, store_url: str | None, publish: bool
) -> dict[str, str]:
    # with publish, the store is checked before any compute (reachable, writable)
    exp, stage = runner.prepare(
        run_dir, work_dir=work_dir, store_url=store_url, check_store=publish
    )
    return {"modality": exp.modality, "dataset_id": exp.dataset_id, "stage_dir": str(stage.root)}


# No task-level retries: publish retries transient store faults itself, within a time budget
# (BINDS_PUBLISH_RETRY_S), and bad input (e.g. another access level) is never retried.
@task(
    name="publish", task_run_name="publish", retries=0, cache_policy=NO_CACHE, persist_result=False
)
def publish_task(stage_dir: str, store_url: str | None) -> dict:
    return runner.publish_stage(stage_dir, store_url).to_dict()


def run_snakemake(
    *, run_dir: str, stage: StagedDataset, modality: str, profile: str, cores: int | None
) -> SnakemakeMonitor:
    """The workflow, with every job mirrored as a task run of the current flow run."""
    logger = get_run_logger()
    events = stage.meta_dir / EVENTS_FILE
    before = os.environ.get(EVENTS_ENV)
    os.environ[EVENTS_ENV] = str(events)  # read by the logger plugin in the Snakemake process
    try:
        with SnakemakeMonitor(
            events, logger, console_log=stage.meta_dir / "snakemake.log"
        ) as monitor:
            runner.stage(run_dir, stage, modality=modality, profile=profile, cores=cores)
    finally:
        if before is None:
            os.environ.pop(EVENTS_ENV, None)
        else:
            os.environ[EVENTS_ENV] = before
    return monitor


def _qc_artifact(stage: StagedDataset, dataset_id: str) -> None:
    from pipelines.report import qc_rows

    rows = qc_rows(stage)
    if rows:
        create_table_artifact(
            key=artifact_key("qc", dataset_id),
            table=rows,
            description=f"QC of {dataset_id}: checks (pass/fail), rules, key figures",
        )


def _publish_artifacts(result: dict[str, Any]) -> None:
    base = f"{result['store_url'].rstrip('/')}/{result['prefix']}v{result['version']}/"
    link = base if "://" in base else Path(base).resolve().as_uri() + "/"
    verb = "published" if result["created"] else "unchanged"
    create_link_artifact(
        key=artifact_key("publish", result["dataset_id"]),
        link=link,
        link_text=f"{result['dataset_id']} v{result['version']} ({verb}, "
        f"{result['n_files']} files, {result['bytes']:,} bytes)",
        description=f"content {result['content_digest']}",
    )
    create_link_artifact(
        key=artifact_key("report", result["dataset_id"]),
        link=link + "qc/report.html",
        link_text=f"QC report of {result['dataset_id']} v{result['version']}",
        description="self-contained HTML: what was measured, pass/fail, figures, "
        "files, how to cite",
    )


@flow(
    name="binds-run",
    flow_run_name=_flow_run_name,
    log_prints=True,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=256),
)  # one thread per running Snakemake job
def binds_run(
    run_dir: str,
    store_url: str | None = None,
    profile: str = "local",
    cores: int | None = None,
    work_dir: str | None = None,
    publish: bool = True,
) -> dict:
    """Process one run folder and publish it; returns the publish result (or the stage dir)."""
    with _pid_recorded():
        return _binds_run(
            run_dir,
            store_url=store_url,
            profile=profile,
            cores=cores,
            work_dir=work_dir,
            publish=publish,
        )


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


def _binds_run(
    run_dir: str,
    *,
    store_url: str | None,
    profile: str,
    cores: int | None,
    work_dir: str | None,
    publish: bool,
) -> dict:
    # the work folder's lock is held from validation to the commit: one run per folder at a time
    with runner.hold_work_dir(run_dir, work_dir):
        prepared = validate_task(run_dir, work_dir, store_url, publish)
        stage = StagedDataset(Path(prepared["stage_dir"]))
        run_snakemake(
            run_dir=run_dir,
            stage=stage,
            modality=prepared["modality"],
            profile=profile,
            cores=cores,
        )
        _qc_artifact(stage, prepared["dataset_id"])
        if not publish:
            return {"stage_dir": str(stage.root), "published": False}
        result = publish_task(str(stage.root), store_url)
    _publish_artifacts(result)
    return result | {"stage_dir": str(stage.root), "published": True}


__all__ = ["EVENTS_FILE", "PublishResult", "binds_run"]
