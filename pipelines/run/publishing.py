"""Publish a staged dataset: check it, hash it, and commit it as a version of the store.

The store's commit protocol (claim, upload, verify, manifest) is
:func:`pipelines.store.publish.commit_version`; this module gives it what only the layers
above the store know: the experiment metadata, and the documents that describe a version
(``metadata.jsonld``, the QC report, the provenance crate and usage record) and its catalog
row, built once the version number is claimed.

>>> from pipelines.run.publishing import publish
>>> result = publish(StagedDataset(Path(".binds-work/stage")), open_store("./store"))
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipelines.describe.metadata import default_dataset_id, validate_experiment
from pipelines.errors import InputError, Problem, RunError
from pipelines.store.base import Store, StoreError, UploadItem
from pipelines.store.hashing import digests
from pipelines.store.publish import (
    Description,
    Draft,
    PublishResult,
    Submission,
    commit_version,
    content_digest,
    experiment_sha256,
    with_expected_etags,
)
from pipelines.toolkit.stage import StagedDataset

#: the self-contained QC report of every version (pipelines.describe.report), beside the QC files
REPORT_PATH = "qc/report.html"


def publish(
    stage: StagedDataset,
    store: Store,
    *,
    attempts: int | None = None,
    backoff_s: float = 1.0,
    retry_budget_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    now: Callable[[], dt.datetime] | None = None,
    curator_override: str | None = None,
) -> PublishResult:
    """Publish ``stage`` into ``store`` (the protocol: :mod:`pipelines.store.publish`).

    Parameters
    ----------
    attempts
        Tries of the whole (idempotent) protocol on transient store faults, with exponential
        backoff starting at ``backoff_s``; botocore's own per-request retries come first.
        Default ``BINDS_PUBLISH_ATTEMPTS`` or 4.
    retry_budget_s
        No retry starts after this many seconds (default ``BINDS_PUBLISH_RETRY_S`` or 300).
    progress
        Called with (bytes uploaded so far, bytes to upload).
    curator_override
        A curator's reason to add this version although the dataset belongs to another
        request or came from another acquisition session (recorded in the level's ledger).

    Raises
    ------
    InputError
        The stage is incomplete or its metadata invalid, or the dataset belongs to another
        request or session (nothing is written).
    RunError
        The store failed persistently; the staged data stay for the next attempt to resume.
    """
    exp = check_stage(stage)
    if (stage.qc_dir / "verdict.json").is_file():
        # the one QC verdict, stored in the version: `binds run` wrote it after the workflow;
        # a stage whose metrics changed since gets the verdict its metrics give (before
        # hashing). A stage without one is published as it is: every reader evaluates the same
        # metrics with the same rules (pipelines.toolkit.qc), so no output can disagree.
        from pipelines.describe.verdict import refresh_verdict

        refresh_verdict(stage.qc_dir, exp["modality"], stage.metrics)
    if attempts is None:
        attempts = int(os.environ.get("BINDS_PUBLISH_ATTEMPTS", "4"))
    if retry_budget_s is None:
        retry_budget_s = float(os.environ.get("BINDS_PUBLISH_RETRY_S", "300"))
    submission = _submission(stage, exp, store=store, curator_override=curator_override)
    from pipelines.describe.embargo import HeldStore, embargo_until, is_held

    held = is_held(exp)
    if held:  # committed under _embargo/<level>/ until `binds release` moves it (#23)
        store = HeldStore(store)
    try:
        result = commit_version(
            submission,
            store,
            describe=lambda draft: describe_version(stage, exp, draft),
            index=index_version(store),
            attempts=attempts,
            backoff_s=backoff_s,
            retry_budget_s=retry_budget_s,
            progress=progress,
            now=now,
        )
        if held:
            result.notes.append(
                f"under embargo until {embargo_until(exp)}: held under _embargo/, where only "
                "curators read it; `binds release` publishes it at its level on that date"
            )
        return result
    except StoreError as err:
        raise RunError(
            f"publishing to {store.url} failed: {err}",
            details=[
                f"the staged dataset is kept at {stage.root}",
                f"run `binds publish {stage.root} --store {store.url}` to resume "
                "(what was uploaded is not sent again)",
            ],
        ) from err


def _submission(
    stage: StagedDataset, exp: dict[str, Any], *, store: Store, curator_override: str | None
) -> Submission:
    """What the store's commit protocol needs of ``stage``: its files hashed, its identity."""
    items = hash_stage(stage, store)
    return Submission(
        access=exp["access"]["level"],
        modality=exp["modality"],
        dataset_id=exp.get("dataset_id") or default_dataset_id(exp["request_id"], exp["modality"]),
        items=items,
        content_digest=stage_digest(stage, items),
        request_id=exp["request_id"],
        title=exp["title"],
        experiment_sha256=experiment_sha256(exp),
        qc=stage.metrics,
        session=session_of(stage),
        override_reason=(curator_override or "").strip() or None,
    )


def session_of(stage: StagedDataset) -> str | None:
    """The acquisition session a stage comes from: sha256 of its run folder's name.

    The name, not the path: a run folder moved to another disk or machine is the same
    session; two run folders of one request (two grids, two plates) are two sessions, which
    must be two datasets (``dataset_id:``) rather than one replacing the other as "latest".
    """
    run_dir = str(stage.run_info.get("run_dir") or "").rstrip("/\\")
    if not run_dir:
        return None
    name = run_dir.replace("\\", "/").rsplit("/", 1)[-1]
    return hashlib.sha256(name.encode()).hexdigest()


def check_stage(stage: StagedDataset) -> dict[str, Any]:
    """Refuse to publish an incomplete or inconsistent stage; return its experiment metadata."""
    problems: list[Problem] = []
    where = str(stage.root)
    if not stage.root.is_dir():
        raise InputError(
            Problem(
                "no such staged dataset folder",
                file=where,
                hint="give the folder that `binds run` staged (it holds data/, qc/, _meta/)",
            )
        )
    exp = stage.experiment
    if not exp:
        problems.append(
            Problem(
                "missing _meta/experiment.json",
                file=where,
                hint="stage it with `binds run RUN_DIR --no-publish`",
            )
        )
    else:
        bad, _ = validate_experiment(exp, file=f"{where}/_meta/experiment.json")
        problems += bad
    if not stage.data_dir.is_dir() or not any(stage.data_dir.iterdir()):
        problems.append(
            Problem(
                "data/ is missing or empty",
                file=where,
                hint="the workflow did not finish; re-run `binds run`",
            )
        )
    if not (stage.qc_dir / "metrics.json").is_file():
        problems.append(
            Problem(
                "qc/metrics.json is missing",
                file=where,
                hint="the workflow did not finish; re-run `binds run`",
            )
        )
    if problems:
        raise InputError(problems)
    return exp


def hash_stage(
    stage: StagedDataset, store: Store, *, workers: int = 4, with_etag: bool = False
) -> list[UploadItem]:
    """Size and sha256 of every published file, hashed in parallel (hashlib releases the GIL).

    With ``with_etag`` (and an S3 store) also the ETag S3 will report; the publish computes
    those later, overlapped with the upload, since only the sha256 is needed to claim a version.
    """
    files = stage.published_files()

    def one(entry: tuple[str, Path]) -> UploadItem:
        rel, path = entry
        size, sha, _ = digests(path)
        assert sha is not None  # asked for (sha256=True)
        return UploadItem(key=rel, path=path, size=size, sha256=sha)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        items = list(pool.map(one, files))
    return with_expected_etags(items, store, workers=workers) if with_etag else items


def stage_digest(stage: StagedDataset, items: list[UploadItem]) -> str:
    """The content digest a publish of ``stage`` (hashed as ``items``) commits under."""
    return content_digest(
        [{"path": it.key, "size": it.size, "sha256": it.sha256} for it in items],
        experiment=stage.experiment,
    )


def describe_version(stage: StagedDataset, experiment: dict[str, Any], draft: Draft) -> Description:
    """The documents of the version ``draft`` names: metadata.jsonld, the QC report to send the
    researcher, the provenance crate and the usage record (with its manifest summary)."""
    from pipelines.describe.jsonld import build_metadata
    from pipelines.describe.provenance import version_documents
    from pipelines.describe.report import render_report

    metadata = build_metadata(
        stage=stage,
        experiment=experiment,
        dataset_id=draft.dataset_id,
        version=draft.version,
        files=draft.files,
        created=draft.created,
        content_digest=draft.content_digest,
    )
    meta_bytes = (
        json.dumps(metadata, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    ).encode()
    report = render_report(
        stage=stage,
        dataset_id=draft.dataset_id,
        version=draft.version,
        files=draft.files,
        content_digest=draft.content_digest,
        created=draft.created,
        location=draft.location,
    )
    extra = version_documents(
        stage=stage,
        experiment=experiment,
        dataset_id=draft.dataset_id,
        version=draft.version,
        files=draft.files,
        created=draft.created,
        metadata_bytes=meta_bytes,
    )
    return Description(
        metadata=meta_bytes,
        documents=[(REPORT_PATH, report), *extra.documents],
        usage=extra.usage_summary,
    )


def index_version(store: Store) -> Callable[[dict[str, Any], bytes], None]:
    """Writes the catalog row of a committed version (step 6 of the protocol)."""
    from pipelines.describe.catalog import catalog_row, write_catalog_row

    def index(manifest: dict[str, Any], manifest_bytes: bytes) -> None:
        sha = hashlib.sha256(manifest_bytes).hexdigest()
        write_catalog_row(store, catalog_row(manifest, manifest_sha256=sha))

    return index
