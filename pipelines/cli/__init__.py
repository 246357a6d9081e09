"""``binds``: process instrument runs into the curated store, and read the store.

Exit codes: 0 success; 1 a failed run (a rule crashed, the store unreachable, verification
found damage); 2 invalid input or usage (reported as ``file: where: problem (hint)`` lines).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from pipelines.cli import render
from pipelines.cli.render import err, human_bytes, out
from pipelines.describe.metadata import ACCESS_LEVELS, MODALITIES
from pipelines.errors import BindsError, InputError, Problem, RunError
from pipelines.orchestrate.monitoring import IMPORT_THREAD as _IMPORT_THREAD  # noqa: F401
from pipelines.orchestrate.monitoring import import_in_background, wait_for_background_import

EXIT_CODES = "Exit codes: 0 success; 1 failed run (rule crashed, store unreachable, damage found); 2 invalid input or usage."
app = typer.Typer(
    name="binds",
    help="Turn BINDS instrument runs into curated, versioned datasets (OME-Zarr, AnnData-Zarr, Parquet) "
    "in a store: a local folder or s3://bucket/prefix.\n\n"
    "Typical use, right after an experiment:\n\n"
    "  binds init runs/krios-0042 --modality cryoem   # writes experiment.yaml to edit\n\n"
    "  binds validate runs/krios-0042\n\n"
    "  binds run runs/krios-0042 --store s3://binds-curated\n\n" + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

WorkDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Where to stage (default $BINDS_WORK_DIR/<dataset_id> or ./.binds-work/<dataset_id>)."
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        envvar="BINDS_STORE",
        show_envvar=True,
        help="Store URL: a local folder or s3://bucket/prefix (endpoint from BINDS_S3_ENDPOINT_URL or "
        "AWS_ENDPOINT_URL). Default ./store.",
    ),
]


@app.callback()
def _entry() -> None:
    # every file and folder a binds command creates is group-private (pipelines.store.filemodes)
    from pipelines.store.filemodes import private_umask

    private_umask()


def _report(exc: BindsError) -> None:
    if isinstance(exc, InputError):
        err.print(
            f"[bold red]error:[/] invalid input ({len(exc.problems)} problem"
            f"{'s' if len(exc.problems) != 1 else ''}):",
            highlight=False,
        )
        for p in exc.problems:
            err.print(f"  {p}", highlight=False, markup=False)
    else:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        for line in getattr(exc, "details", []):
            err.print(f"  {line}", highlight=False, markup=False)


def handle_errors(func):
    """User errors become their message and exit code; real bugs keep their traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from pipelines.store.base import StoreError

        try:
            return func(*args, **kwargs)
        except BindsError as exc:
            _report(exc)
            raise typer.Exit(exc.exit_code) from None
        except StoreError as exc:
            _report(RunError(str(exc)))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print(
                "interrupted: nothing was committed that is not complete; run the same command to resume"
            )
            raise typer.Exit(130) from None

    return wrapper


def _setup_logging(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # the level of the handler, not only of the root logger: Prefect's run loggers (INFO, for
    # the API) propagate here and would otherwise print every Snakemake line on the terminal
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
        if not verbose:  # Prefect's records go to its API (the UI); binds reports failures itself
            handler.addFilter(lambda record: not record.name.startswith("prefect"))


def _bytes_progress(label: str) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


# ----------------------------------------------------------------------------------- init
@app.command()
@handle_errors
def init(
    run_dir: Annotated[
        Path, typer.Argument(help="Run folder with the raw instrument files, e.g. runs/krios-0042.")
    ],
    modality: Annotated[
        str, typer.Option("--modality", "-m", help=f"One of: {', '.join(MODALITIES)}.")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing experiment.yaml.")
    ] = False,
) -> None:
    """Write a commented experiment.yaml template listing the raw files found.

    Example: binds init runs/krios-0042 --modality cryoem
    """
    from pipelines.describe.templates import experiment_template

    if modality not in MODALITIES:
        raise InputError(
            Problem(
                f"unknown modality {modality!r}",
                where="--modality",
                hint=f"one of {', '.join(MODALITIES)}",
            )
        )
    if not run_dir.is_dir():
        raise InputError(Problem("no such run folder", file=str(run_dir)))
    target = run_dir / "experiment.yaml"
    if target.exists() and not force:
        raise InputError(
            Problem(
                "experiment.yaml already exists",
                file=str(target),
                hint="edit it, or pass --force to overwrite",
            )
        )
    target.write_text(experiment_template(run_dir, modality))
    out.print(f"wrote {target}: edit the EDIT fields, then run: binds validate {run_dir}")


# ----------------------------------------------------------------------------------- validate
@app.command()
@handle_errors
def validate(
    run_dir: Annotated[
        Path, typer.Argument(help="Run folder holding experiment.yaml and the raw files.")
    ],
) -> None:
    """Check experiment.yaml and the raw files; nothing is written.

    Every problem is listed with its file, YAML path or place in the file, and a hint.

    Example: binds validate runs/krios-0042
    """
    from pipelines.run.runner import check_run_dir

    exp, raw = check_run_dir(run_dir)
    for note in exp.notes:
        out.print(f"note: {note}", highlight=False, markup=False)
    out.print(
        f"ok: {exp.path} is valid ({exp.modality}, dataset {exp.dataset_id}, "
        f"access {exp.access}); {len(raw)} raw file(s)",
        highlight=False,
    )


# ----------------------------------------------------------------------------------- prepare
@app.command()
@handle_errors
def prepare(
    run_dir: Annotated[
        Path, typer.Argument(help="Run folder holding experiment.yaml and the raw files.")
    ],
    work_dir: WorkDirOpt = None,
    profile: Annotated[
        str,
        typer.Option(help="Profile of the printed Snakemake command: local, slurm, or a folder."),
    ] = "local",
) -> None:
    """Validate a run folder and write its stage's _meta/ (experiment.json, run.json), without
    running anything; print the Snakemake command that builds the stage.

    For HPC operators who run Snakemake themselves; `binds publish STAGE` publishes the result.

    Example: binds prepare runs/krios-0042 --work-dir /shared/scratch/binds/krios-0042 --profile slurm
    """
    import shlex

    from pipelines.run import runner
    from pipelines.run.workflow import snakemake_command

    with runner.hold_work_dir(run_dir, work_dir):
        exp, stage = runner.prepare(run_dir, work_dir=work_dir)
    cmd = snakemake_command(
        run_dir=Path(run_dir).resolve(), stage=stage, modality=exp.modality, profile=profile
    )
    out.print(f"staged metadata in {stage.meta_dir}; build the stage with:", highlight=False)
    out.print(" ".join(shlex.quote(c) for c in cmd), highlight=False, markup=False, soft_wrap=True)
    out.print(f"then: binds publish {stage.root} --store URL", highlight=False, markup=False)


# ----------------------------------------------------------------------------------- run
#: ``binds run --fail-on-qc``: the exit code of a run whose QC verdict is FAIL.
QC_FAILED_EXIT = 3


@app.command()
@handle_errors
def run(
    run_dir: Annotated[Path, typer.Argument(help="Run folder (raw files + experiment.yaml).")],
    store: StoreOpt = None,
    profile: Annotated[
        str,
        typer.Option(help="Snakemake profile: local, slurm, kubernetes, aws-batch, or a folder."),
    ] = "local",
    cores: Annotated[
        int | None, typer.Option(help="Cores for the local executor (default: all).")
    ] = None,
    work_dir: WorkDirOpt = None,
    publish: Annotated[
        bool, typer.Option("--publish/--no-publish", help="Publish after staging.")
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect and workflow logs.")
    ] = False,
    fail_on_qc: Annotated[
        bool,
        typer.Option(
            "--fail-on-qc",
            help=f"Exit {QC_FAILED_EXIT} when the version's QC verdict is FAIL (it is still "
            "published); without it a QC failure is reported and the exit is 0.",
        ),
    ] = False,
    lang: Annotated[
        str | None,
        typer.Option(
            "--lang",
            envvar="BINDS_REPORT_LANG",
            help="Language of the QC report to send the researcher: en or ja (a unit sets "
            "BINDS_REPORT_LANG once).",
        ),
    ] = None,
) -> None:
    """Validate, process (Snakemake, inside a Prefect flow) and publish one run folder.

    The run ends with the QC verdict and every failed check (value, threshold, meaning).
    Exit codes: 0 done, 1 run failed, 2 bad input, 3 QC failed (with --fail-on-qc).

    Examples:

      binds run runs/krios-0042 --fail-on-qc --lang ja    # exit 3 on a QC failure; report in Japanese

      binds run runs/krios-0042                          # into ./store

      binds run runs/krios-0042 --store s3://binds-curated --cores 8

      binds run runs/krios-0042 --profile slurm --no-publish   # stage on the cluster
    """
    from pipelines.orchestrate.monitoring import trace
    from pipelines.run import runner

    trace("cli: run")
    _report_language(lang)
    _setup_logging(verbose)
    _quiet_prefect(verbose)
    with _prefect_session() as session, _status(f"processing {run_dir}") as status:
        with runner.hold_work_dir(run_dir, work_dir, say=status.update):
            # validation, then Snakemake starts, all before Prefect is imported: bad input is
            # exit 2 within a second, and Snakemake's start-up overlaps Prefect's import
            parameters = {  # the flow's, as its flow run records them: absolute paths
                "run_dir": str(run_dir.resolve()),
                "store_url": _absolute_store(store),
                "profile": profile,
                "cores": cores,
                "work_dir": str(work_dir.resolve()) if work_dir else None,
                "publish": publish,
            }
            result = _start_and_report(session, parameters, status)
    trace("prefect flushed")
    _print_publish(result, json_out)
    if fail_on_qc and (result.get("qc") or {}).get("status") == "fail":
        raise typer.Exit(QC_FAILED_EXIT)


def _start_and_report(session: Any, parameters: dict[str, Any], status: Any) -> dict[str, Any]:
    """:func:`runner.start_run`, then the started run reported into a Prefect flow run.

    The flow run is created as soon as the run folder is valid, with two REST calls in a thread
    (no Prefect import; it is in the UI at once, :class:`pipelines.orchestrate.monitoring.EarlyFlowRun`),
    while the raw files are hashed and Snakemake starts; Prefect's engine, imported meanwhile,
    takes it over.  With a temporary server (still booting) the engine creates it, as before.
    Whatever stops the command before the engine ends the run ends it too (never Running)."""
    from pipelines.orchestrate.monitoring import FlowRunOpener, trace
    from pipelines.run import runner

    opener = FlowRunOpener(session, parameters)
    try:
        started = runner.start_run(
            parameters["run_dir"],
            work_dir=parameters["work_dir"],
            store_url=parameters["store_url"],
            check_store=parameters["publish"],
            profile=parameters["profile"],
            cores=parameters["cores"],
            say=status.update,
            on_valid=opener.start,
        )
        trace("snakemake started")
        if started.unchanged is not None:  # decided from the fingerprint: no workflow
            if (early := opener.result()) is not None:
                early.end("COMPLETED", "unchanged since its last publication: nothing recomputed")
            return started.unchanged
        return _run_in_prefect(session, started, parameters, opener.result(), status)
    except BaseException as exc:
        opener.close_if_open(exc)
        raise


def _run_in_prefect(
    session: Any, started: Any, parameters: dict[str, Any], early: Any, status: Any
) -> dict[str, Any]:
    """The started run reported into a Prefect flow run (``early``, an
    :class:`~pipelines.orchestrate.monitoring.EarlyFlowRun` the engine takes over, or None: the engine
    creates one); its result."""
    from pipelines.orchestrate.monitoring import run_tags, trace

    _yield_to_the_workflow()
    try:
        session.choose()  # PREFECT_API_URL is set before Prefect is imported
        # the import overlaps the temporary server's boot
        importing = import_in_background("pipelines.orchestrate.flows")
        session.ready()
        importing.done.wait()
        trace("prefect imported, API ready")
        from prefect import tags

        from pipelines.orchestrate.flows import make_flow, run_flow

        with tags(*run_tags(started.experiment.data)):
            result = run_flow(
                make_flow(started, say=status.update),
                flow_run=early.record if early else None,
                **parameters,
            )
        trace("flow returned")
    finally:
        try:
            started.staging.stop()  # Ctrl-C before the flow, Prefect failed: stop Snakemake
        finally:
            wait_for_background_import()
    return result


#: How much lower than Snakemake's the ``binds run`` process's CPU priority is while it reports.
MONITOR_NICE = 10
#: Set by :func:`main`: the process is the ``binds`` command's own.  Only then may a command
#: change process-wide state that outlives it (a priority cannot be raised back): an in-process
#: caller of :data:`app` (a test, a notebook) keeps its own.
_OWN_PROCESS = {"value": False}


def _report_language(lang: str | None) -> None:
    """Refuse an unknown report language (exit 2); the flow's publish reads the setting."""
    from pipelines.describe.report_i18n import LANGUAGES

    if lang is None:
        return
    if lang.lower() not in LANGUAGES:
        raise InputError(
            Problem(f"unknown report language {lang!r}", where="--lang", hint="en or ja")
        )
    os.environ["BINDS_REPORT_LANG"] = lang.lower()


def _yield_to_the_workflow() -> None:
    """Lower this process's CPU priority once Snakemake (started at the caller's) runs: from
    here on binds only reports (Prefect's import and flow engine: 2-3 CPU s while Snakemake
    starts), and on a busy machine that work must not delay the jobs.  Publishing, after
    Snakemake, runs at the same priority: alone on the machine it is as fast; beside other work
    it is polite."""
    import contextlib

    if not _OWN_PROCESS["value"]:
        return
    with contextlib.suppress(OSError):  # a platform without nice: run at the same priority
        os.nice(MONITOR_NICE)


def _prefect_session():
    from pipelines.orchestrate.monitoring import PrefectSession

    return PrefectSession(warn=lambda text: err.print(text, highlight=False, markup=False))


def _absolute_store(store: str | None) -> str:
    """Store URL as recorded in the flow run: absolute, so the run says where it published."""
    from pipelines.store import store_url

    url = store_url(store)
    return url if "://" in url else str(Path(url).expanduser().resolve())


def _report_url(result: dict[str, Any]) -> str | None:
    """Where the version's qc/report.html is (None for a version published without one)."""
    from pipelines.store import open_store

    key = f"{result['prefix']}v{result['version']}/qc/report.html"
    try:
        if not open_store(result["store_url"], read_only=True).exists(key):
            return None
    except Exception:
        return None
    return f"{result['store_url'].rstrip('/')}/{key}"


class _status:
    """A spinner whose text follows the run (validate, snakemake steps, MiB uploaded)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.status = err.status(label)

    def __enter__(self):
        self.status.__enter__()
        return self

    def update(self, text: str) -> None:
        self.status.update(f"{self.label}: {text}")

    def __exit__(self, *exc):
        return self.status.__exit__(*exc)


def _quiet_prefect(verbose: bool) -> None:
    from pipelines.orchestrate.monitoring import prefect_environment

    prefect_environment(quiet=not verbose)


def _print_publish(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        if result.get("published", True) and "prefix" in result:
            result = result | {"report": _report_url(result)}
        render.print_json(result, default=str, coloured=True)
        return
    if not result.get("published", True):
        out.print(
            f"staged at {result['stage_dir']} (not published): binds publish {result['stage_dir']} --store URL"
        )
        _print_run_verdict(result)
        return
    verb = "published" if result["created"] else "unchanged"
    report = _report_url(result)
    out.print(
        f"{verb}: {result['dataset_id']} v{result['version']} -> "
        f"{result['store_url']}/{result['prefix']}v{result['version']}/ "
        f"({result['n_files']} files, {result['bytes']:,} bytes)",
        highlight=False,
    )
    for note in result.get("notes", []):
        out.print(f"  {note}", highlight=False)
    if report:
        out.print(f"  report: {report}", highlight=False)
    _print_run_verdict(result)


def _print_run_verdict(result: dict[str, Any]) -> None:
    from pipelines.toolkit.qc import Verdict

    if result.get("qc"):
        _print_verdict(Verdict.from_dict(result["qc"]))


# ----------------------------------------------------------------------------------- publish
@app.command("publish")
@handle_errors
def publish_cmd(
    staged_dir: Annotated[
        Path,
        typer.Argument(
            help="A staged dataset folder (data/, qc/, _meta/), e.g. .binds-work/binds-2026-0042-cryoem/stage."
        ),
    ],
    store: StoreOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    curator_override: Annotated[
        str | None,
        typer.Option(
            "--curator-override",
            metavar="REASON",
            help="Curators only: add this version although the dataset belongs to another "
            "request or came from another run folder; the reason goes into the ledger.",
        ),
    ] = None,
) -> None:
    """Publish (or resume publishing) a staged dataset: upload, verify, commit, catalog.

    Identical content already published creates no new version. A dataset belongs to the
    request (and run folder) that first published it; other requests are refused (exit 2).

    Examples:

      binds publish .binds-work/binds-2026-0042-cryoem/stage --store s3://binds-curated

      binds publish STAGE --curator-override "grid re-imaged; replaces session 1 (ticket 812)"
    """
    from pipelines.run.runner import publish_stage

    with _bytes_progress("uploading") as prog:
        task = prog.add_task("upload", total=None)
        result = publish_stage(
            staged_dir,
            store,
            progress=lambda done, total: prog.update(task, completed=done, total=total),
            curator_override=curator_override,
        )
    from pipelines.describe.verdict import read_verdict
    from pipelines.toolkit.stage import StagedDataset

    stage = StagedDataset(Path(staged_dir).resolve())
    verdict = read_verdict(stage.qc_dir, result.modality, stage.metrics)
    _print_publish(result.to_dict() | {"qc": verdict.to_dict()}, json_out)


# ----------------------------------------------------------------------------------- catalog
@app.command()
@handle_errors
def catalog(
    store: StoreOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON array for scripts (same as --format json).")
    ] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="table, json, or dcat (DCAT-AP 3 Turtle for catalogues and the RDF portal).",
        ),
    ] = "table",
    modality: Annotated[str | None, typer.Option(help="Only this modality.")] = None,
    access: Annotated[
        str | None, typer.Option(help="Only this access level (open, consortium, restricted).")
    ] = None,
    request_id: Annotated[str | None, typer.Option(help="Only this support request.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset id.")] = None,
    organism: Annotated[
        str | None, typer.Option(help="Only samples of this NCBITaxon id, e.g. NCBITaxon:9606.")
    ] = None,
    tissue: Annotated[str | None, typer.Option(help="Only this UBERON id.")] = None,
    cell_type: Annotated[str | None, typer.Option(help="Only this CL id.")] = None,
    compound: Annotated[
        str | None, typer.Option(help="Only this CHEBI / PUBCHEM.COMPOUND id.")
    ] = None,
    licence: Annotated[
        str | None, typer.Option(help="Only this SPDX licence id, e.g. CC-BY-4.0.")
    ] = None,
    instrument: Annotated[str | None, typer.Option(help="Only this instrument model.")] = None,
    qc: Annotated[
        str | None, typer.Option(help="pass or fail: only versions whose QC gate passed / failed.")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="Any column: column=value, column=a,b (any of), column>=x, column<=x (numbers, dates); "
            "repeatable. Columns: docs/formats/store.md."
        ),
    ] = None,
    for_level: Annotated[
        str,
        typer.Option(
            "--for",
            help="--format dcat: the audience; only levels it may see are exported "
            "(open: open only; consortium: open + consortium; restricted: all).",
        ),
    ] = "open",
    base_url: Annotated[
        str | None,
        typer.Option(help="--format dcat: prefix of dataset IRIs (default BINDS_BASE_URL)."),
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="Only the newest version of each dataset.")
    ] = False,
    samples: Annotated[
        bool,
        typer.Option(
            "--samples",
            help="One row per sample and version instead (sample id, "
            "organism, tissue, cell type, compound, dataset).",
        ),
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Rewrite the catalog rows of the versions the ledgers record first; a manifest "
            "that differs from its ledger entry, or a missing version, is reported (exit 1).",
        ),
    ] = False,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact",
            help="Write each level's catalog snapshot first (publishers do it every "
            "BINDS_CATALOG_COMPACT_EVERY=100 rows; idempotent, safe beside publishers).",
        ),
    ] = False,
) -> None:
    """List the committed dataset versions (one row per version), newest first; select by
    organism, tissue, cell type, compound, licence, instrument, QC and any figure.

    Examples:

      binds catalog --store ./demo-store

      binds catalog --organism NCBITaxon:9606 --qc pass --where "z_prime_median>=0.5" --json

      binds catalog --modality cryoem --where "resolution_angstrom<=3.5" --where "acquired>=2026-01-01"

      binds catalog --store s3://binds-curated --format dcat --for open > catalog.ttl

      binds catalog --samples --where "compounds=CHEBI:15377" --json   # join samples across modalities

      binds catalog --rebuild          # after a crash between commit and catalog row

      binds catalog --compact --json > /dev/null   # fold the recent rows into the snapshots
    """
    from pipelines.access.catalog_schema import SAMPLE_KEYS
    from pipelines.describe.catalog import sample_rows, select_table
    from pipelines.store import open_store

    _check_catalog_options(access=access, modality=modality, fmt=fmt, for_level=for_level, qc=qc)
    extra = _where_filters(where)
    levels = _catalog_levels(access=access, fmt=fmt, for_level=for_level)
    st = open_store(store, read_only=not (rebuild or compact))
    if rebuild:
        _rebuild_catalog(st)
    if compact:
        _compact_catalog(st)
    filters = {
        "modality": modality,
        "request_id": request_id,
        "dataset_id": dataset,
        "organisms": organism,
        "tissues": tissue,
        "cell_types": cell_type,
        "compounds": compound,
        "licence": licence,
        "instrument_model": instrument,
        "qc_pass": None if qc is None else qc == "pass",
        **extra,
    }
    try:
        selected = select_table(st, levels=levels, latest=latest, **filters)
    except KeyError as exc:
        raise InputError(Problem(str(exc).strip('"'), where="--where")) from None
    as_json = json_out or fmt == "json"
    if fmt == "dcat":
        from pipelines.describe.dcat import catalog_turtle

        turtle = catalog_turtle(
            selected.to_pandas(), store=st, levels=levels, audience=for_level, base=base_url
        )
        sys.stdout.write(turtle)
    elif samples and as_json:
        render.print_json(sample_rows(selected.to_pandas()))
    elif samples:
        columns = (*SAMPLE_KEYS, "dataset_id", "version", "modality")
        render.print_table(
            (_sample_cells(r, columns) for r in sample_rows(selected.to_pandas())),
            columns=columns,
            title=f"samples in {st.url}",
        )
    elif as_json:
        render.print_arrow_json(selected)
    else:
        render.print_table(
            (_catalog_cells(r) for r in selected.to_pandas().itertuples()),
            columns=CATALOG_COLUMNS,
            title=f"catalog of {st.url}",
            empty=f"no datasets in {st.url}",
        )


def _check_catalog_options(
    *, access: str | None, modality: str | None, fmt: str, for_level: str, qc: str | None
) -> None:
    """Refuse an unknown level, modality, format, audience or QC outcome (exit 2)."""
    if access and access not in ACCESS_LEVELS:
        raise InputError(
            Problem(
                f"unknown access level {access!r}", where="--access", hint=", ".join(ACCESS_LEVELS)
            )
        )
    if modality and modality not in MODALITIES:
        raise InputError(
            Problem(
                f"unknown modality {modality!r}", where="--modality", hint=", ".join(MODALITIES)
            )
        )
    if fmt not in ("table", "json", "dcat"):
        raise InputError(
            Problem(f"unknown format {fmt!r}", where="--format", hint="table, json or dcat")
        )
    if for_level not in ACCESS_LEVELS:
        raise InputError(
            Problem(f"unknown level {for_level!r}", where="--for", hint=", ".join(ACCESS_LEVELS))
        )
    if qc not in (None, "pass", "fail"):
        raise InputError(Problem(f"unknown --qc {qc!r}", where="--qc", hint="pass or fail"))


def _catalog_levels(*, access: str | None, fmt: str, for_level: str) -> list[str]:
    """The levels to read: ``--access``'s, or all; for DCAT only those ``--for`` may see."""
    levels = [access] if access else list(ACCESS_LEVELS)
    if fmt != "dcat":
        return levels
    from pipelines.describe.dcat import audience_levels  # rdflib: imported for DCAT only

    return audience_levels(levels, for_level)  # never export a level the audience may not see


def _where_filters(where: list[str] | None) -> dict[str, Any]:
    """The ``--where`` conditions as catalog filters (a malformed one: exit 2)."""
    from pipelines.access.catalog_schema import parse_where

    try:
        return parse_where(where or [])
    except ValueError as exc:
        raise InputError(Problem(str(exc), where="--where")) from None


def _rebuild_catalog(st: Any) -> None:
    """``--rebuild``: the catalog rows rewritten from the ledgers; what it could not repair is
    listed, and fails the command."""
    from pipelines.describe.catalog import rebuild_catalog
    from pipelines.progress import counting

    with counting("reading the manifests") as advance:
        stats = rebuild_catalog(st, progress=advance)
    err.print(f"catalog rebuilt from the ledgers: {stats['rows']} rows")
    for problem in stats["problems"]:  # reported, never rewritten or deleted
        out.print(problem, highlight=False, markup=False)
    if stats["problems"]:
        raise RunError(
            f"{len(stats['problems'])} problem(s) the rebuild did not repair: see `binds verify`"
        )


def _compact_catalog(st: Any) -> None:
    """``--compact``: each level's snapshot written, one line each on stderr."""
    from pipelines.describe.catalog import compact_catalog

    for done in compact_catalog(st):
        err.print(
            f"{done['catalog']}: snapshot {done['snapshot']} ({done['rows']} rows, "
            f"{done['folded']} new)",
            highlight=False,
            markup=False,
        )


#: The columns of ``binds catalog``'s table, one row per version.
CATALOG_COLUMNS = (
    "dataset_id",
    "version",
    "modality",
    "access",
    "organisms",
    "title",
    "created",
    "qc",
    "size",
)


def _catalog_cells(r: Any) -> list[str]:
    """One catalog row (a DataFrame tuple) as the cells of :data:`CATALOG_COLUMNS`."""
    qc_text = (
        "" if r.qc_pass is None or r.qc_pass != r.qc_pass else ("pass" if r.qc_pass else "FAIL")
    )
    return [
        r.dataset_id,
        f"v{r.version}",
        r.modality,
        r.access,
        ", ".join(r.organisms or []),
        r.title or "",
        str(r.created)[:19],
        qc_text,
        human_bytes(r.bytes),
    ]


def _sample_cells(r: dict[str, Any], columns: Sequence[str]) -> list[str]:
    return [str(r[c]) if r[c] is not None else "" for c in columns]


# ----------------------------------------------------------------------------------- show
@app.command()
@handle_errors
def show(
    dataset: Annotated[str, typer.Argument(help="Dataset id, e.g. binds-2026-0042-cryoem.")],
    version: Annotated[
        int | None, typer.Option(help="Version number (default: the newest).")
    ] = None,
    store: StoreOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Show one dataset version: where it is, its files, QC figures and metadata.

    Example: binds show binds-2026-0042-cryoem --version 2 --store ./demo-store
    """
    from pipelines.describe.catalog import read_catalog
    from pipelines.store import open_store

    st = open_store(store, read_only=True)
    df = read_catalog(st).to_pandas()
    df = df[df["dataset_id"] == dataset]
    if df.empty:
        raise InputError(
            Problem(
                f"no dataset {dataset!r} in {st.url}",
                where="DATASET",
                hint="list them with: binds catalog",
            )
        )
    if version is not None:
        df = df[df["version"] == version]
        if df.empty:
            raise InputError(Problem(f"{dataset} has no version {version}", where="--version"))
    row = df.sort_values("version").iloc[-1]
    manifest = json.loads(st.get(row["path"] + "manifest.json"))
    if json_out:
        render.print_json(manifest)
        return
    out.print(
        f"[bold]{manifest['dataset_id']}[/] v{manifest['version']}  ({manifest['modality']}, {manifest['access']})"
    )
    out.print(f"  title:    {manifest['title']}", highlight=False)
    out.print(f"  request:  {manifest['request_id']}", highlight=False)
    out.print(f"  created:  {manifest['created']}")
    out.print(f"  location: {st.url}/{row['path']}", highlight=False)
    out.print(
        f"  content:  {manifest['content_digest']}  ({manifest['n_files']} files, {human_bytes(manifest['bytes'])})"
    )
    out.print("  data:     " + ", ".join(row["data_paths"]), highlight=False)
    for label, col in (
        ("organisms", "organisms"),
        ("tissues", "tissues"),
        ("cell types", "cell_types"),
        ("compounds", "compounds"),
    ):
        if row[col] is not None and len(row[col]):
            out.print(f"  {label + ':':<9} " + ", ".join(row[col]), highlight=False)
    for label, col in (
        ("licence", "licence"),
        ("acquired", "acquired"),
        ("instrument", "instrument_model"),
        ("unit", "support_unit"),
        ("metadata", "metadata_path"),
    ):
        if row[col] is not None and row[col] == row[col]:
            out.print(f"  {label + ':':<9} {row[col]}", highlight=False)
    _print_verdict(_stored_verdict(st, row["path"], manifest), indent="  ")
    for doc in manifest.get("documents", []):
        if doc["path"].endswith("report.html"):
            out.print(
                f"  report:   {st.url}/{row['path']}{doc['path']}  (QC report to send, "
                f"{human_bytes(doc['size'])})",
                highlight=False,
            )
    if manifest.get("qc"):
        out.print("  qc:")
        for k, v in sorted(manifest["qc"].items()):
            out.print(f"    {k}: {v}", highlight=False)


def _stored_verdict(st: Any, prefix: str, manifest: dict[str, Any]) -> Any:
    """The version's qc/verdict.json (evaluated from its metrics for a version without one)."""
    from pipelines.describe.verdict import evaluate
    from pipelines.toolkit.qc import VERDICT_FILE, Verdict

    if any(f["path"] == f"qc/{VERDICT_FILE}" for f in manifest.get("files", [])):
        try:
            return Verdict.from_dict(json.loads(st.get(f"{prefix}qc/{VERDICT_FILE}")))
        except Exception:
            pass
    return evaluate(manifest["modality"], manifest.get("qc") or {})


def _print_verdict(verdict: Any, *, indent: str = "") -> None:
    """The verdict line, then each failed check: value, threshold, meaning, what to do."""
    colour = {"pass": "green", "fail": "bold red"}.get(verdict.status, "yellow")
    # soft_wrap: one line per check, whatever the terminal's width (scripts grep them)
    out.print(f"{indent}[{colour}]{verdict.summary()}[/]", highlight=False, soft_wrap=True)
    for c in verdict.failed:
        out.print(
            f"{indent}  FAIL {c.name}: {c.shown} (needs {c.criterion}): {c.meaning}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        out.print(
            f"{indent}       what to do: {c.on_fail}", highlight=False, markup=False, soft_wrap=True
        )


# ----------------------------------------------------------------------------------- verify
@app.command()
@handle_errors
def verify(
    dataset: Annotated[
        str | None, typer.Argument(help="Only this dataset id (default: every dataset).")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Only this version.")] = None,
    store: StoreOpt = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            envvar="BINDS_LEDGER_MIRROR",
            show_envvar=True,
            help="Also compare the ledgers with their mirror (a file of 'level seq sha256' "
            "lines, or a second store URL).",
        ),
    ] = None,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="Fixity sweep instead: re-read objects, append one event per check to "
            "<level>/_fixity/ (README 'Preservation').",
        ),
    ] = False,
    sample: Annotated[
        float | None,
        typer.Option(help="--sweep: read only today's slice of a rotation of PERCENT %."),
    ] = None,
    older_than: Annotated[
        int | None,
        typer.Option(help="--sweep: only objects whose last passed check is older than DAYS."),
    ] = None,
    repair_from: Annotated[
        str | None,
        typer.Option(help="--sweep: restore damaged objects from this copy (after checking it)."),
    ] = None,
    copy: Annotated[
        str | None,
        typer.Option(help="Report the replication lag: committed versions not yet in this copy."),
    ] = None,
    max_lag_hours: Annotated[
        float, typer.Option(help="--copy: exit 1 when a version waits longer than this.")
    ] = 24.0,
    json_out: Annotated[bool, typer.Option("--json", help="--sweep: the report as JSON.")] = False,
) -> None:
    """Check that every committed version is what its level's ledger recorded, byte for byte.

    Checks every file's size and sha256 against its manifest; the manifest's sha256 against
    the ledger entry of its commit and the catalog row; the content digest recomputed; the
    manifest's dataset id, version and level against its key path; every ledger entry has its
    version, every version its entry and catalog row; the ledger chain unbroken; in a bucket
    with Object Lock, every committed object under retention. Reads each object once.

    Exit 1 and one line per finding (the version's key prefix, then what is wrong):

      consortium/cryoem/ds1/v2/: manifest sha256 3f1a... differs from the ledger's 9b2c...

      open/cryoem/ds1/v1/: recorded in the ledger (entry 4) but the whole version deleted

      open/_ledger/000000000003.json: chain broken: its 'prev' is not the sha256 of ...

    Findings are explained in docs/formats/store.md.

    Examples:

      binds verify --store ./demo-store

      binds verify binds-2026-0042-cryoem --store s3://binds-curated

      binds verify --store s3://binds-curated --mirror /srv/witness/binds-ledger.txt

      binds verify --sweep --sample 1.2 --repair-from s3://binds-copy --store s3://binds-curated

      binds verify --copy s3://binds-copy --store s3://binds-curated

    --sweep exits 0 when clean or everything was repaired, 1 when damage stays unrepaired
    (README "For operators: preservation"); --copy exits 1 when a version waits longer than
    --max-lag-hours.
    """

    if copy is not None:
        return preservation.run_lag(store, copy, max_lag_hours=max_lag_hours)
    if sweep or repair_from or sample is not None or older_than is not None:
        return preservation.run_sweep(
            store, sample=sample, older_than=older_than, repair_from=repair_from, json_out=json_out
        )
    from pipelines.store import open_store
    from pipelines.store.verify import verify as verify_store

    st = open_store(store, read_only=True)
    with err.status("verifying checksums"):
        report = verify_store(st, dataset_id=dataset, version=version, mirror=mirror)
    if dataset and report.versions == 0:
        raise InputError(
            Problem(
                f"no committed version of {dataset!r} in {st.url}",
                where="DATASET",
                hint="list them with: binds catalog",
            )
        )
    if report.unreadable:  # level names only: what is in them is not ours to say
        err.print(
            f"not checked: level(s) {', '.join(report.unreadable)} (not readable with these "
            "credentials)",
            highlight=False,
            markup=False,
        )
    for p in report.problems:
        out.print(p, highlight=False, markup=False)
    summary = (
        f"{report.versions} version(s), {report.files} files, {human_bytes(report.bytes)}, "
        f"{report.ledger_entries} ledger entries checked"
    )
    if not report.ok:
        raise RunError(f"verification failed: {len(report.problems)} problem(s) in {summary}")
    out.print(f"ok: {summary}")


# ----------------------------------------------------------------------------------- usage
def _day(text: str | None, where: str):
    import datetime as dt

    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(
            Problem(
                f"{text!r} is not a date",
                where=where,
                hint="write it as YYYY-MM-DD, e.g. 2026-11-01",
            )
        ) from None


@app.command()
@handle_errors
def usage(
    store: StoreOpt = None,
    request: Annotated[
        str | None,
        typer.Option("--request", "-r", help="Only this support request, e.g. BINDS-2026-0042."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="First day of the period (YYYY-MM-DD; default: the first version)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Last day of the period, inclusive (YYYY-MM-DD; default: now)."),
    ] = None,
    by: Annotated[
        str, typer.Option(help="One row per: request, unit (support unit) or month.")
    ] = "request",
    csv_out: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="Billing lines as CSV (request_id, service, quantity, unit, period, support_unit).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="The rows as JSON.")] = False,
    levels: Annotated[
        str | None,
        typer.Option(
            help="Only these access levels, comma-separated (e.g. open,consortium). Without it, "
            "a level the store refuses to list fails the command (exit 1): a short bill is an error."
        ),
    ] = None,
) -> None:
    """What each support request used: core-hours, GPU-hours, peak memory, stored GB and
    GB-months to date, instrument runs; from the catalog and each version's _meta/usage.json.

    Compute and instrument runs count in the period their version was published; storage
    accrues from publication to the end of the period. An instrument run is counted by its raw
    files (name, size, sha256; experiment.yaml left out): re-publishing the same files after a
    metadata fix (a licence, a title) is a new version, not a second run. --csv prints one billing line per
    request, service (compute, gpu, storage, instrument) and period, for a facility billing
    import (iLab, PPMS).

    Examples:

      binds usage --store s3://binds-curated

      binds usage --request BINDS-2026-0042 --since 2026-11-01 --until 2026-11-30

      binds usage --by month --since 2026-01-01 --csv > charges-2026.csv

    Exit codes: 0 success; 1 store unreachable, or a level not readable (the report is
    printed, without it; --levels bills only the levels named); 2 invalid option (a date, --by).
    """
    import datetime as dt

    from pipelines.describe.usage import billing_csv, billing_lines, usage_report, version_usage
    from pipelines.store import open_store

    first, last = _usage_period(by=by, since=since, until=until)
    chosen = _usage_levels(levels)
    st = open_store(store, read_only=True)
    unreadable: list[str] = []
    versions = version_usage(st, request=request, levels=chosen, unreadable=unreadable)
    if unreadable:  # said before the report, and the exit code says it too
        err.print(
            f"could not read the catalog of level(s) {', '.join(unreadable)} in {st.url}: "
            "their usage is not in this report"
            + ("" if levels else " (bill only what you may read with --levels)"),
            highlight=False,
            markup=False,
        )
    if request and not versions:
        raise InputError(
            Problem(
                f"no version of request {request!r} in {st.url}",
                where="--request",
                hint="list them with: binds catalog",
            )
        )
    rows = usage_report(
        versions, since=first, until=(last + dt.timedelta(days=1)) if last else None, by=by
    )
    if csv_out:
        sys.stdout.write(billing_csv(billing_lines(rows, by=by)))
    elif json_out:
        render.print_json(rows, default=str)
    else:
        render.print_table(
            (_usage_cells(r, by=by) for r in rows),
            columns=(by, *USAGE_COLUMNS),
            title=f"usage in {st.url}",
            empty=f"no usage in {st.url} for that period",
        )
    if unreadable:
        raise typer.Exit(1)


def _usage_period(*, by: str, since: str | None, until: str | None) -> tuple[Any, Any]:
    """The first and last day of ``--since`` / ``--until`` (None: open-ended); an unknown
    ``--by``, a bad date or an empty period is exit 2."""
    from pipelines.describe.usage import GROUPINGS

    if by not in GROUPINGS:
        raise InputError(
            Problem(f"unknown grouping {by!r}", where="--by", hint=", ".join(GROUPINGS))
        )
    first, last = _day(since, "--since"), _day(until, "--until")
    if first and last and last < first:
        raise InputError(Problem(f"--until {last} is before --since {first}", where="--until"))
    return first, last


def _usage_levels(levels: str | None) -> list[str]:
    """``--levels`` as a list (default: every level); an unknown one is exit 2."""
    chosen = [x.strip() for x in levels.split(",") if x.strip()] if levels else list(ACCESS_LEVELS)
    if bad := [x for x in chosen if x not in ACCESS_LEVELS]:
        raise InputError(
            Problem(
                f"unknown access level {bad[0]!r}", where="--levels", hint=", ".join(ACCESS_LEVELS)
            )
        )
    return chosen


#: The columns of ``binds usage``'s table after the first (the grouping: request, unit, month).
USAGE_COLUMNS = (
    "period",
    "versions",
    "instrument runs",
    "core-hours",
    "GPU-hours",
    "peak memory",
    "stored GB",
    "GB-months",
)


def _usage_cells(r: dict[str, Any], *, by: str) -> list[str]:
    """One :func:`pipelines.describe.usage.usage_report` row as the table's cells."""
    import datetime as dt

    last_day = (r["period_end"] - dt.timedelta(seconds=1)).date()
    return [
        str(r[by] or "(none)"),
        f"{r['period_start'].date()} .. {last_day}",
        str(r["versions"]),
        str(r["instrument_runs"]),
        f"{r['core_hours']:.3f}",
        f"{r['gpu_hours']:.3f}",
        "" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb'] / 1024:.2f} GiB",
        f"{r['stored_gb']:.3f}",
        f"{r['gb_months']:.4f}",
    ]


# ----------------------------------------------------------------------------------- watch
@app.command()
@handle_errors
def watch(
    inbox: Annotated[
        Path, typer.Argument(help="Folder that receives run folders, e.g. /data/inbox/krios.")
    ],
    store: StoreOpt = None,
    settle: Annotated[
        float,
        typer.Option(
            help="Seconds a folder must stay unchanged before it is taken (copies still running)."
        ),
    ] = 60,
    interval: Annotated[float, typer.Option(help="Seconds between scans.")] = 30,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Scan once, process what is ready, exit (for cron or a Prefect schedule).",
        ),
    ] = False,
    profile: Annotated[str, typer.Option(help="Snakemake profile.")] = "local",
    cores: Annotated[int | None, typer.Option(help="Cores for the local executor.")] = None,
) -> None:
    """Process every run folder dropped into INBOX (experiment.yaml + raw files) and publish it.

    A folder is taken once unchanged for --settle seconds, and processed again only if its
    files change. Outcomes are kept in INBOX/.binds-inbox.json; run folders are never written.

    Examples:

      binds watch /data/inbox/krios --store s3://binds-curated

      binds watch /data/inbox/krios --once --settle 0      # from cron
    """
    _setup_logging(False)
    _quiet_prefect(False)
    if not inbox.is_dir():
        raise InputError(Problem("no such inbox folder", file=str(inbox)))
    from pipelines.orchestrate import inbox as inbox_

    with _prefect_session() as session:
        session.ready()
        inbox_.watch(
            inbox,
            run=inbox_.flow_runner(store_url=_absolute_store(store), profile=profile, cores=cores),
            settle_s=settle,
            interval_s=interval,
            once=once,
            on_event=lambda text: out.print(text, highlight=False, markup=False),
        )


# ----------------------------------------------------------------------------------- serve
@app.command()
@handle_errors
def serve(
    inbox: Annotated[
        Path, typer.Argument(help="Folder that receives run folders, e.g. /data/inbox/krios.")
    ],
    store: StoreOpt = None,
    settle: Annotated[
        float, typer.Option(help="Seconds a folder must stay unchanged before it is taken.")
    ] = 60,
    interval: Annotated[float, typer.Option(help="Seconds between scans of the inbox.")] = 30,
    limit: Annotated[
        int, typer.Option(min=1, help="Flow runs at once (each runs one Snakemake workflow).")
    ] = 2,
    profile: Annotated[str, typer.Option(help="Snakemake profile of every run.")] = "local",
    cores: Annotated[int | None, typer.Option(help="Cores per run for the local executor.")] = None,
) -> None:
    """Serve the binds-run Prefect deployment and turn every complete run folder in INBOX into a flow run.

    Needs a Prefect server (PREFECT_API_URL, e.g. `prefect server start --host 127.0.0.1`).
    Every skip is reported with its reason; bad folders are recorded (never deleted) in
    INBOX/.binds-inbox.json; a restart neither repeats a finished run nor loses a running one.
    Stop with Ctrl-C or SIGTERM (systemd). See the README's operator section for a unit file.

    Examples:

      PREFECT_API_URL=http://127.0.0.1:4200/api binds serve /data/inbox/krios --store s3://binds-curated

      binds serve /data/inbox/screening --limit 1 --settle 120 --profile slurm
    """
    from pipelines.orchestrate.monitoring import (
        api_problem,
        configured_api_url,
        prefect_environment,
    )

    _setup_logging(False)
    prefect_environment(quiet=False)  # the service's terminal shows Prefect's runner lines
    if not inbox.is_dir():
        raise InputError(Problem("no such inbox folder", file=str(inbox)))
    url = configured_api_url()
    if not url:
        raise InputError(
            Problem(
                "binds serve needs a Prefect server",
                where="PREFECT_API_URL",
                hint="start one with `prefect server start --host 127.0.0.1` and "
                "export PREFECT_API_URL=http://127.0.0.1:4200/api",
            )
        )
    if problem := api_problem(url):
        raise RunError(f"the Prefect API at {url} does not answer ({problem})")
    if not os.environ.get("PREFECT_API_AUTH_STRING"):  # README, Access levels: the service
        err.print(
            "warning: PREFECT_API_AUTH_STRING is not set: a Prefect server without API "
            "authentication lets anyone who reaches it see and start runs",
            highlight=False,
            markup=False,
        )
    from pipelines.orchestrate.service import serve as serve_inbox

    serve_inbox(
        inbox.resolve(),
        store_url=_absolute_store(store),
        profile=profile,
        cores=cores,
        settle_s=settle,
        interval_s=interval,
        limit=limit,
        say=lambda text: out.print(text, highlight=False, markup=False),
    )


# ----------------------------------------------------------------------------------- demo
@app.command()
@handle_errors
def demo(
    store: Annotated[
        str, typer.Option("--store", "-s", help="Store to publish into.")
    ] = "./demo-store",
    runs_dir: Annotated[Path, typer.Option(help="Where to write the example run folders.")] = Path(
        "demo-runs"
    ),
    modality: Annotated[
        list[str] | None,
        typer.Option("--modality", "-m", help="Only these modalities (repeatable)."),
    ] = None,
    cores: Annotated[int | None, typer.Option(help="Cores for Snakemake.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Generate realistic example runs for every modality, run them, publish, print the catalog.

    Example: binds demo --store ./demo-store
    """
    from pipelines import modalities as mods

    _setup_logging(verbose)
    _quiet_prefect(verbose)
    chosen = modality or list(MODALITIES)
    for m in chosen:
        if m not in MODALITIES:
            raise InputError(
                Problem(f"unknown modality {m!r}", where="--modality", hint=", ".join(MODALITIES))
            )
    with _prefect_session() as session:
        for m in chosen:
            run_dir = (runs_dir / f"demo-{m}").resolve()
            with err.status(f"writing example {m} run {run_dir}"):
                mods.get(m).make_demo_run(run_dir)
            with _status(f"processing {run_dir}") as status:
                session.ready()
                from pipelines.orchestrate.flows import make_flow, run_flow

                result = run_flow(
                    make_flow(say=status.update),
                    str(run_dir),
                    store_url=_absolute_store(store),
                    cores=cores,
                    work_dir=str((runs_dir / ".work" / m).resolve()),
                )
            _print_publish(result, False)
    catalog(
        store=store,
        json_out=False,
        modality=None,
        access=None,
        request_id=None,
        dataset=None,
        latest=False,
        rebuild=False,
    )


# the command groups in their own modules register on `app` when imported
from pipelines.cli import curation, data, policy, preservation  # noqa: E402,F401


def main() -> None:
    _OWN_PROCESS["value"] = True
    try:
        app()
        code: int | str | None = 0
    except SystemExit as exc:
        code = exc.code
    if "prefect" in sys.modules:
        # Tearing down an interpreter that imported Prefect (and pydantic, sqlalchemy ...)
        # takes 0.3-1 s; everything binds owns is closed by now (Prefect's queues were
        # drained by the session, the temporary server is stopped), so leave at once.
        from pipelines.orchestrate.monitoring import flush_prefect

        flush_prefect()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))
    sys.exit(code)
