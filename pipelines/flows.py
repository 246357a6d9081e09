"""Prefect flow of ``binds run``: validate -> snakemake -> publish.

Tasks are thin wrappers of :mod:`pipelines.runner`; states, retries and logs are Prefect's.
Without a configured server Prefect runs in ephemeral mode (a temporary local API): nothing
to start.  With ``PREFECT_API_URL`` set, runs show in that server's UI.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipelines import runner
from pipelines.staging import StagedDataset
from pipelines.store.publish import PublishResult


@task(name="validate", retries=0)
def validate_task(run_dir: str, work_dir: str | None, store_url: str | None, publish: bool) -> tuple[str, str]:
    exp, stage = runner.prepare(run_dir, work_dir=work_dir, store_url=store_url, check_store=publish)
    return exp.modality, str(stage.root)


@task(name="snakemake", retries=0)  # retrying failed jobs is the profile's job (restart-times)
def snakemake_task(run_dir: str, stage_dir: str, modality: str, profile: str, cores: int | None) -> str:
    runner.stage(run_dir, StagedDataset(Path(stage_dir)), modality=modality, profile=profile, cores=cores)
    metrics = StagedDataset(Path(stage_dir)).metrics
    if metrics:
        create_table_artifact(key="qc-metrics", table=[{"metric": k, "value": str(v)} for k, v in sorted(metrics.items())],
                              description=f"QC metrics of {Path(run_dir).name}")
    return stage_dir


# no task-level retries: publish retries transient store faults itself, within a time budget,
# and an InputError (e.g. another access level) must not be retried at all
@task(name="publish", retries=0)
def publish_task(stage_dir: str, store_url: str | None) -> dict:
    result = runner.publish_stage(stage_dir, store_url)
    verb = "published" if result.created else "unchanged"
    create_markdown_artifact(
        key="publish",
        markdown=f"**{verb}** `{result.dataset_id}` v{result.version} -> `{result.store_url}/{result.prefix}v{result.version}/`"
                 f" ({result.n_files} files, {result.bytes} bytes)\n\n" + "\n".join(f"- {n}" for n in result.notes))
    return result.to_dict()


@flow(name="binds-run", log_prints=True)
def binds_run(run_dir: str, store_url: str | None = None, profile: str = "local", cores: int | None = None,
              work_dir: str | None = None, publish: bool = True) -> dict:
    """Process one run folder and publish it; returns the publish result (or the stage dir).

    The work folder's lock is held from validation to the commit: one run per folder at a time.
    """
    with runner.hold_work_dir(run_dir, work_dir):
        modality, stage_dir = validate_task(run_dir, work_dir, store_url, publish)
        snakemake_task(run_dir, stage_dir, modality, profile, cores)
        if not publish:
            return {"stage_dir": stage_dir, "published": False}
        return publish_task(stage_dir, store_url) | {"stage_dir": stage_dir, "published": True}


__all__ = ["binds_run", "PublishResult"]
