"""The three steps of ``binds run``, as plain functions (the Prefect flow only orders them).

``prepare`` validates everything that can be checked before compute (metadata, raw files)
and writes ``_meta/``; ``stage`` runs the Snakemake workflow; ``publish_stage`` publishes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import modalities
from pipelines.describe.metadata import EXPERIMENT_FILE, Experiment
from pipelines.errors import InputError, Problem
from pipelines.resources import project_root
from pipelines.run import privacy_gate, worklock
from pipelines.run.publishing import PublishResult, publish
from pipelines.run.workflow import RunningWorkflow, start_workflow
from pipelines.store import open_store
from pipelines.store.hashing import sha256_file
from pipelines.toolkit import run_ids
from pipelines.toolkit.inputs import RunFolder, sample_of_files
from pipelines.toolkit.rawfiles import raw_file_problems
from pipelines.toolkit.stage import StagedDataset

log = logging.getLogger(__name__)
FINGERPRINT_FILE = "fingerprint.json"

#: A progress callback: receives a short status line (``binds run`` shows it in its spinner).
Say = Callable[[str], None]


def _quiet(_text: str) -> None:
    pass


def default_work_dir(dataset_id: str) -> Path:
    """``$BINDS_WORK_DIR/<dataset_id>``, else ``./.binds-work/<dataset_id>``: on the same
    (shared) filesystem as the current directory, as Slurm jobs need."""
    base = Path(os.environ.get("BINDS_WORK_DIR", ".binds-work"))
    return (base / dataset_id).resolve()


def work_dir_for(exp: Experiment, work_dir: str | Path | None = None) -> Path:
    """The work folder of a run: ``work_dir`` if given, else :func:`default_work_dir`."""
    return Path(work_dir).resolve() if work_dir else default_work_dir(exp.dataset_id)


@contextlib.contextmanager
def hold_work_dir(
    run_dir: str | Path, work_dir: str | Path | None = None, *, say: Say = _quiet
) -> Iterator[Path]:
    """Hold the lock of the run's work folder (see :mod:`pipelines.run.worklock`) for a ``with``.

    The work folder is named after the dataset id, so experiment.yaml is read (and validated)
    first; invalid metadata raises :class:`InputError` before anything is locked.
    """
    exp = privacy_gate.load_experiment_withheld(Path(run_dir))  # errors quote no identifier
    with worklock.hold(work_dir_for(exp, work_dir), on_wait=say) as work:
        yield work


def check_run_dir(run_dir: str | Path) -> tuple[Experiment, list[Path]]:
    """Validate experiment.yaml and the raw files; every problem at once. Nothing is written.

    Returns the experiment and every file the modality's workflow will read (its input
    resolver: the same list the rules get and ``run.json`` records).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(
            Problem(
                "no such run folder",
                file=str(run_dir),
                hint="give the folder holding the raw files and experiment.yaml",
            )
        )
    exp = privacy_gate.load_experiment_withheld(run_dir)
    module = modalities.get(exp.modality)
    found = module.list_inputs(run_dir, exp.data)
    # the privacy gate first, alone: the other checks' messages may quote a file name
    if gate := privacy_gate.check_run(run_dir, exp.data, experiment_file=exp.path):
        raise InputError(gate)
    problems: list[Problem] = list(found.problems)
    if not found.files and not problems:
        problems.append(
            Problem(
                f"no {exp.modality} raw files found",
                file=str(run_dir),
                hint=f"expected files matching {', '.join(modalities.spec(exp.modality).raw_patterns)}",
            )
        )
    if not problems:  # names, and HDF5 reaching outside, before anything reads the files
        problems += raw_file_problems(run_dir, found.files)
    if not problems:
        try:
            problems += module.preflight(run_dir, exp.data)
        except InputError as err:
            problems += err.problems
    if problems:
        raise InputError(problems)
    return exp, list(found.files)


def _git_describe() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(project_root()), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@functools.cache
def code_digest() -> str:
    """sha256 over the processing code (the package, the workflows, the schemas).

    Part of a stage's fingerprint: outputs staged by other code are never reused, so a renamed
    or dropped output of an older workflow cannot linger in a new version.
    """
    root = project_root()
    pkg = Path(__file__).resolve().parent
    files = sorted(
        {
            *pkg.rglob("*.py"),
            *(root / "workflows").rglob("*"),
            root / "Snakefile",
            *(root / "metadata").rglob("*.json"),
        }
    )
    h = hashlib.sha256()
    for f in files:
        if f.is_file() and "__pycache__" not in f.parts:
            rel = f.relative_to(root) if f.is_relative_to(root) else f.relative_to(pkg.parent)
            h.update(f"{rel.as_posix()}\n".encode())  # the same in every clone
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def stage_fingerprint(exp: Experiment, inputs: list[dict[str, Any]]) -> str:
    """What the staged outputs depend on: the input files (names, sizes, sha256), the modality
    and its block of parameters, the code.  Other metadata (title, licence, samples ...) reach
    only the rules that take them as params, which Snakemake reruns when they change."""
    basis = {
        "modality": exp.modality,
        "block": exp.data.get(exp.modality) or {},
        "inputs": [[i["name"], i["size"], i["sha256"]] for i in inputs],
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def _fresh_stage(work: Path, fingerprint: str) -> StagedDataset:
    """The stage of ``work`` for ``fingerprint``: kept when it was made from the same inputs
    (a resumed run), else moved aside and deleted, so nothing a previous run left can be
    published.  A kill at any point leaves either the old stage or none (``.discarded-*``
    folders are removed by the next run)."""
    stage = StagedDataset(work / "stage")
    marker = stage.meta_dir / FINGERPRINT_FILE
    for old in work.glob(".discarded-*"):
        shutil.rmtree(old, ignore_errors=True)
    if stage.root.exists():
        try:
            same = json.loads(marker.read_text()).get("fingerprint") == fingerprint
        except (OSError, ValueError):
            same = False
        if same:
            return stage
        trash = work / f".discarded-{uuid.uuid4().hex[:12]}"
        log.info("inputs changed since %s was staged: starting a fresh stage", stage.root)
        stage.root.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    stage.meta_dir.mkdir(parents=True, exist_ok=True)
    return stage


def prepare(
    run_dir: str | Path,
    *,
    work_dir: str | Path | None = None,
    store_url: str | None = None,
    check_store: bool = False,
    say: Say = _quiet,
    on_valid: Callable[[Experiment], None] | None = None,
) -> tuple[Experiment, StagedDataset]:
    """Validate the run folder and write ``<work>/stage/_meta/{experiment,run,fingerprint}.json``.

    With ``check_store`` the store is checked to be reachable and writable first (seconds, not
    after the compute).  The caller holds the work folder's lock (:func:`pipelines.run.worklock.hold`).
    ``on_valid`` is called once the run folder passed every check (the privacy gate first),
    before the raw files are hashed (``binds run`` creates its Prefect flow run then).
    """
    run_dir = Path(run_dir).resolve()
    say(f"validating {run_dir.name}")
    exp, raw = check_run_dir(run_dir)
    if on_valid is not None:
        on_valid(exp)
    if check_store:
        say("checking the store")
        open_store(store_url).check_writable()
    work = work_dir_for(exp, work_dir)
    with ThreadPoolExecutor(max_workers=4) as pool:
        hashes = list(pool.map(sha256_file, raw))
    folder = RunFolder(run_dir)
    inputs = [
        {"name": folder.rel(p), "size": p.stat().st_size, "sha256": h}
        for p, h in zip(raw, hashes, strict=True)
    ]
    fingerprint = stage_fingerprint(exp, inputs)
    stage = _fresh_stage(work, fingerprint)
    stage.write_meta("experiment.json", exp.data)  # atomic: a kill never leaves half a file
    if run_ids.applies(exp.data):
        # human data: the run ids the raw files go by everywhere (run.json, hence the report,
        # metadata and RO-Crate too), and the files they stand for, kept in _meta/ only
        by_path = {Path(os.path.abspath(p)): i for p, i in zip(raw, inputs, strict=True)}
        ids = _run_ids_of(run_dir, exp, raw)
        stage.write_meta(run_ids.RUN_IDS_FILE, _run_id_record(run_dir, exp, ids, by_path))
        named = {p: rid for rid, p in ids.items()}
        inputs = [i | {"name": named.get(p, i["name"])} for p, i in by_path.items()]
    from importlib.metadata import version

    stage.write_meta(
        "run.json",
        {
            "run_dir": str(run_dir),
            "modality": exp.modality,
            "dataset_id": exp.dataset_id,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "workflow": f"binds-pipelines {version('binds-pipelines')}"
            + (f" ({g})" if (g := _git_describe()) else ""),
            "inputs": [
                *inputs,
                {
                    "name": EXPERIMENT_FILE,
                    "size": exp.path.stat().st_size,
                    "sha256": sha256_file(exp.path),
                },
            ],
        },
    )
    # written last: a stage without it (killed above) is never reused
    stage.write_meta(FINGERPRINT_FILE, {"fingerprint": fingerprint})
    return exp, stage


def _run_ids_of(run_dir: Path, exp: Experiment, raw: list[Path]) -> dict[str, Path]:
    """Run id -> raw file: the modality's own choice (metabolomics: its mzML runs, the order of
    its workflow's wildcards) or every raw file the workflow reads."""
    module = modalities.get(exp.modality)
    if callable(hook := getattr(module, "run_ids", None)):
        return {rid: Path(os.path.abspath(p)) for rid, p in hook(run_dir, exp.data).items()}
    return run_ids.run_ids(Path(os.path.abspath(p)) for p in raw)


def _run_id_record(
    run_dir: Path, exp: Experiment, ids: dict[str, Path], inputs: dict[Path, dict[str, Any]]
) -> dict[str, Any]:
    """``_meta/run_ids.json``: run id -> the raw file (name, sha256), and each sample's run ids
    (what its ``files`` named: the metadata list those instead of the names or globs)."""
    of_file = sample_of_files(run_dir, exp.data, inputs, modality=exp.modality, problems=[])
    samples: dict[str, list[str]] = {}
    for rid, p in ids.items():
        if (sid := of_file.get(p)) is not None:
            samples.setdefault(sid, []).append(rid)
    folder = RunFolder(run_dir)
    return {
        "run_ids": {
            rid: {"name": folder.rel(p), "sha256": inputs[p]["sha256"] if p in inputs else None}
            for rid, p in ids.items()
        },
        "samples": samples,
    }


def stage(
    run_dir: str | Path,
    stage: StagedDataset,
    *,
    modality: str,
    profile: str = "local",
    cores: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    say: Say = _quiet,
) -> StagedDataset:
    """Run the modality's Snakemake workflow into ``stage``."""
    start_stage(
        run_dir,
        stage,
        modality=modality,
        profile=profile,
        cores=cores,
        on_progress=on_progress,
        say=say,
    ).wait()
    return stage


class StagingRun:
    """The running workflow of :func:`start_stage`; :meth:`wait` records ``staged`` in run.json."""

    def __init__(self, stage: StagedDataset, workflow: RunningWorkflow) -> None:
        self.stage = stage
        self.workflow = workflow

    def wait(self) -> StagedDataset:
        self.workflow.wait()
        # the one QC verdict (qc/verdict.json) belongs to the stage the workflow produced:
        # written here, once, so that publishing never changes what it hashes
        if (self.stage.qc_dir / "metrics.json").is_file():
            from pipelines.describe.verdict import write_verdict

            write_verdict(
                self.stage.qc_dir, self.stage.experiment.get("modality", ""), self.stage.metrics
            )
        info = self.stage.run_info
        info["staged"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.stage.write_meta("run.json", info)
        return self.stage

    def stop(self) -> None:
        self.workflow.stop()


def start_stage(
    run_dir: str | Path,
    stage: StagedDataset,
    *,
    modality: str,
    profile: str = "local",
    cores: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    events: Path | None = None,
    say: Say = _quiet,
) -> StagingRun:
    """Start the modality's Snakemake workflow into ``stage`` (``events``: its job events, see
    :func:`pipelines.run.workflow.start_workflow`) and return at once."""

    def steps(done: int, total: int) -> None:
        say(f"snakemake: {done} of {total} steps done")
        if on_progress:
            on_progress(done, total)

    say("snakemake: starting the workflow")
    workflow = start_workflow(
        run_dir=run_dir,
        stage=stage,
        modality=modality,
        profile=profile,
        cores=cores,
        on_progress=steps,
        events=events,
    )
    return StagingRun(stage, workflow)


@dataclass
class StartedRun:
    """A run folder validated, its stage prepared and its workflow started (:func:`start_run`).

    ``unchanged``: the run folder is exactly what was last published to the store (same raw
    files, metadata and code): the publish result, and no workflow was started (``staging``
    is then a no-op)."""

    experiment: Experiment
    stage: StagedDataset
    validated: tuple[float, float]  # Unix times: validation started, ended
    staging: StagingRun | _NotStarted
    unchanged: dict[str, Any] | None = None

    @property
    def events(self) -> Path:
        return self.stage.events_file


def start_run(
    run_dir: str | Path,
    *,
    work_dir: str | Path | None = None,
    store_url: str | None = None,
    check_store: bool = False,
    profile: str = "local",
    cores: int | None = None,
    say: Say = _quiet,
    on_valid: Callable[[Experiment], None] | None = None,
) -> StartedRun:
    """:func:`prepare` (``on_valid``: see there), then :func:`start_stage` with the job events
    in ``_meta/``; returns while Snakemake runs.  The caller holds the work folder's lock
    (:func:`hold_work_dir`)."""
    t0 = time.time()
    exp, staged = prepare(
        run_dir,
        work_dir=work_dir,
        store_url=store_url,
        check_store=check_store,
        say=say,
        on_valid=on_valid,
    )
    t1 = time.time()
    if check_store:  # about to publish: an unchanged run folder is answered here, in seconds
        said = already_published(exp, staged, store_url)
        if said is not None:
            say("unchanged since its last publication")
            return StartedRun(exp, staged, (t0, t1), _NotStarted(staged), unchanged=said)
    staging = start_stage(
        run_dir,
        staged,
        modality=exp.modality,
        profile=profile,
        cores=cores,
        events=staged.events_file,
        say=say,
    )
    return StartedRun(exp, staged, (t0, t1), staging)


#: ``_meta/published.json``: what the stage was last published as (the fast "unchanged" answer)
PUBLISHED_FILE = "published.json"


class _NotStarted:
    """The :class:`StagingRun` of an unchanged run folder: nothing runs."""

    def __init__(self, stage: StagedDataset) -> None:
        self.stage = stage

    def wait(self) -> StagedDataset:
        return self.stage

    def stop(self) -> None:
        pass


def _publication_key(stage: StagedDataset) -> dict[str, Any] | None:
    """What decides "unchanged": the stage's fingerprint (raw files, parameters, code) and the
    whole experiment metadata (a licence or title edit is a new version)."""
    from pipelines.store.publish import experiment_sha256

    try:
        fingerprint = json.loads((stage.meta_dir / FINGERPRINT_FILE).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None
    return {"fingerprint": fingerprint, "experiment_sha256": experiment_sha256(stage.experiment)}


def already_published(
    exp: Experiment, stage: StagedDataset, store_url: str | None
) -> dict[str, Any] | None:
    """The last publish result of this stage when the run folder is unchanged since and that
    version is still the newest in the store, else None (then the workflow runs as usual).

    Decided from the fingerprint before Snakemake starts: two small reads of the store."""
    try:
        rec = json.loads((stage.meta_dir / PUBLISHED_FILE).read_text())
    except (OSError, ValueError):
        return None
    key = _publication_key(stage)
    if key is None or rec.get("key") != key:
        return None
    result = rec.get("result") or {}
    store = open_store(store_url, read_only=True)
    if rec.get("store_url") != store.url or not result.get("prefix"):
        return None
    version = int(result["version"])
    try:
        manifest = json.loads(store.get(f"{result['prefix']}v{version}/manifest.json"))
        newer = store.exists(f"{result['prefix']}v{version + 1}/manifest.json")
    except Exception:  # any doubt: run the workflow and let the publish decide
        return None
    if newer or manifest.get("content_digest") != result.get("content_digest"):
        return None
    from pipelines.describe.verdict import read_verdict

    qc = read_verdict(stage.qc_dir, exp.modality, stage.metrics).to_dict()
    return result | {
        "created": False,
        "uploaded_files": 0,
        "uploaded_bytes": 0,
        "stage_dir": str(stage.root),
        "published": True,
        "qc": qc,
        "notes": [
            f"unchanged since its last publication as v{result.get('version')}: "
            "nothing was recomputed, no new version"
        ],
    }


def _remember_publication(stage: StagedDataset, store_url: str, result: PublishResult) -> None:
    key = _publication_key(stage)
    if key is not None:
        stage.write_meta(
            PUBLISHED_FILE, {"key": key, "store_url": store_url, "result": result.to_dict()}
        )


def publish_stage(
    stage_dir: str | Path,
    store_url: str | None,
    *,
    progress: Callable[[int, int], None] | None = None,
    say: Say = _quiet,
    curator_override: str | None = None,
) -> PublishResult:
    def uploaded(done: int, total: int) -> None:
        say(f"publishing: {done / 2**20:,.1f} of {total / 2**20:,.1f} MiB uploaded")
        if progress:
            progress(done, total)

    stage = StagedDataset(Path(stage_dir).resolve())
    with worklock.hold(stage.root.parent, on_wait=say):  # re-entrant inside `binds run`
        say("publishing: hashing the staged files")
        store = open_store(store_url)
        result = publish(stage, store, progress=uploaded, curator_override=curator_override)
        _remember_publication(stage, store.url, result)
        return result
