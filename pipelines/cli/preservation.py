"""Preservation commands: ``binds replicate`` (a second copy) and ``binds export --bagit``;
the fixity sweep and the replication lag of ``binds verify`` (``--sweep``, ``--copy``) run here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import app, err, handle_errors, out, render
from pipelines.cli.render import human_bytes
from pipelines.errors import InputError, Problem, RunError


def _open_pair(source: str | None, to: str):
    from pipelines.store import open_store, store_url

    src_url = store_url(source)
    if _same_place(src_url, to):
        raise InputError(
            Problem(
                f"--to names the store being copied ({to})",
                where="--to",
                hint="a preservation copy lives in another bucket, site or folder",
            )
        )
    return open_store(src_url, read_only=True), open_copy(to, read_only=False)


def _same_place(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


@app.command("replicate")
@handle_errors
def replicate_cmd(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The copy: a folder or s3://bucket/prefix (endpoint: BINDS_COPY_S3_ENDPOINT_URL, "
            "else the same as the source's).",
        ),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            "--store",
            "-s",
            envvar="BINDS_STORE",
            show_envvar=True,
            help="The store to copy (default ./store).",
        ),
    ] = None,
    watch: Annotated[
        float | None,
        typer.Option(help="Keep the copy in step: replicate again every SECONDS (until Ctrl-C)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=128, help="Objects copied at once (S3 requests in flight).")
    ] = 16,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    read_back: Annotated[
        bool,
        typer.Option(
            "--read-back",
            help="Also read every copied object back from the copy and check its sha256 "
            "(one more transfer per object; S3 servers already check each PUT's MD5 and sha256).",
        ),
    ] = False,
) -> None:
    """Copy every committed version, the ledgers, the catalog and the registry to a second store.

    Only committed versions (manifest present) are copied; each object is checked against its
    manifest's sha256 before it is written, and the copy is made sure to hold those bytes (S3:
    the server checks the PUT's Content-MD5 and sha256 checksum, and its answer's ETag is
    checked; --read-back: read back as well); the copy's manifest.json is written last. Nothing is deleted from the copy. Killed at any point: run it again, it
    resumes and sends nothing twice. Exit 1 when an object could not be copied faithfully
    (a damaged source object is reported, never copied).

    Examples:

      binds replicate --from s3://binds-curated --to s3://binds-copy

      binds replicate --from ./store --to /mnt/tape-staging/binds --watch 900

    Cron (every 15 minutes): */15 * * * * binds replicate --from s3://binds-curated --to
    s3://binds-copy

    Exit codes: 0 the copy holds every committed version; 1 an object could not be copied
    faithfully, or a store failed; 2 invalid arguments (--to the source itself, a bad URL).
    """
    from pipelines.store.replicate import replicate
    from pipelines.store.replicate import watch as watch_loop

    src, dest = _open_pair(source, to)

    def show(report) -> None:
        if json_out:
            render.print_json(report.to_dict(), indent=None)
        else:
            for p in report.problems:
                out.print(p, highlight=False, markup=False)
            out.print(
                f"{report.versions} committed version(s): {report.versions_copied} copied, "
                f"{report.versions_present} already in the copy; {report.objects_copied} "
                f"object(s) sent ({human_bytes(report.bytes_copied)}), {report.objects_kept} kept "
                f"from an interrupted copy; {report.other_copied} ledger/catalog/registry "
                "object(s) updated"
                + (
                    f"; {report.objects_resent} write(s) sent again (the copy refused or got "
                    "other bytes)"
                    if report.objects_resent
                    else ""
                ),
                highlight=False,
            )
        if report.unreadable:
            err.print(
                f"not copied: {', '.join(report.unreadable)} (not readable with these credentials)",
                highlight=False,
                markup=False,
            )

    if watch is not None:
        if watch <= 0:
            raise InputError(Problem("must be more than 0 seconds", where="--watch"))
        watch_loop(src, dest, interval_s=watch, on_round=show, workers=workers, read_back=read_back)
        return
    report = replicate(src, dest, workers=workers, read_back=read_back)
    show(report)
    if not report.ok:
        raise RunError(f"replication incomplete: {len(report.problems)} problem(s)")


def open_copy(url: str, *, read_only: bool = True, option: str = "--to"):
    """A copy named on the command line (:func:`pipelines.store.open_copy`); a bad URL is named
    by the option it came from, not --store."""
    from pipelines.store import open_copy as open_store_copy

    try:
        return open_store_copy(url, read_only=read_only)
    except InputError as exc:
        raise InputError(
            [Problem(p.message, where=option, hint=p.hint) for p in exc.problems]
        ) from None


@app.command("export")
@handle_errors
def export_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset id, e.g. binds-2026-0042-cryoem.")],
    version: Annotated[int, typer.Option(min=1, help="The version to export.")],
    bagit: Annotated[
        Path, typer.Option("--bagit", help="A new (or empty) folder to write the bag into.")
    ],
    store: Annotated[
        str | None,
        typer.Option("--store", "-s", envvar="BINDS_STORE", help="Store URL (default ./store)."),
    ] = None,
    source_organization: Annotated[
        str | None,
        typer.Option(help="bag-info Source-Organization (default: the metadata's support unit)."),
    ] = None,
) -> None:
    """Write one committed version as a BagIt 1.0 bag (sha256 + sha512 manifests) for deposit.

    Every file is checked against the version's manifest while it is read; bag-info.txt names
    the dataset id, request id, version, access level and source organisation. A version you may
    not read (another level, held under embargo) is refused like one that does not exist.

    Example: binds export binds-2026-0042-cryoem --version 2 --bagit deposit/krios-0042-v2

    Check it with: bagit.py --validate deposit/krios-0042-v2

    Exit codes: 0 bag written; 1 a stored object does not match its manifest (no bag is left);
    2 no readable committed version, or the folder is not empty.
    """
    from pipelines.describe.bagit_export import export_bag
    from pipelines.store import open_store

    st = open_store(store, read_only=True)
    path = export_bag(st, dataset, version, bagit, source_organization=source_organization)
    out.print(f"bag written: {path}", highlight=False)


def run_sweep(
    store: str | None,
    *,
    sample: float | None,
    older_than: int | None,
    repair_from: str | None,
    json_out: bool,
) -> None:
    """``binds verify --sweep``: check, log, repair; exit 1 when damage stays unrepaired."""
    from pipelines.describe.embargo import today as store_today
    from pipelines.store import open_store
    from pipelines.store.fixity import sweep

    if sample is not None and not 0 < sample <= 100:
        raise InputError(Problem(f"{sample} is not a percentage in (0, 100]", where="--sample"))
    if older_than is not None and older_than < 0:
        raise InputError(Problem("must be 0 or more days", where="--older-than"))
    st = open_store(store)  # the sweep appends to <level>/_fixity/ (and repairs)
    copy = open_copy(repair_from, option="--repair-from") if repair_from else None
    with err.status("fixity sweep: reading objects"):
        report = sweep(
            st,
            sample_percent=sample,
            older_than_days=older_than,
            repair_from=copy,
            today=store_today(),  # BINDS_NOW when set (a curator's dry run, the tests)
        )
    if json_out:
        render.print_json(report.to_dict(), indent=None)
    else:
        for line in report.damaged:
            out.print(f"damaged: {line}", highlight=False, markup=False)
        for key in report.repaired:
            out.print(f"repaired: {key}", highlight=False, markup=False)
        for line in report.unrepaired:
            out.print(f"NOT repaired: {line}", highlight=False, markup=False)
    if report.unreadable:
        err.print(
            f"not checked: {', '.join(report.unreadable)} (not readable with these credentials)",
            highlight=False,
            markup=False,
        )
    summary = (
        f"{report.checked} object(s) checked ({human_bytes(report.bytes)}), {len(report.damaged)} "
        f"damaged, {len(report.repaired)} repaired; {report.events} event(s) logged in "
        f"{len(report.log_keys)} fixity log object(s)"
    )
    if not report.ok:
        raise RunError(
            f"fixity sweep: {len(report.unrepaired)} object(s) damaged and not repaired; {summary}",
            details=[
                "see README 'Preservation: when a sweep fails': repair from the copy with "
                "--repair-from URL, or restore from the deposit",
            ],
        )
    if not json_out:
        out.print(f"ok: {summary}", highlight=False)


def run_lag(store: str | None, copy_url: str, *, max_lag_hours: float) -> None:
    """``binds verify --copy URL``: the committed versions not yet in the copy."""
    import datetime as dt

    from pipelines.store import open_store
    from pipelines.store.replicate import lag

    st = open_store(store, read_only=True)
    behind = lag(st, open_copy(copy_url, option="--copy"))
    for prefix in behind.versions:
        out.print(f"not yet in the copy: {prefix}", highlight=False, markup=False)
    if not behind.count:
        out.print(f"copy in step: every committed version is in {copy_url}", highlight=False)
        return
    age_h = 0.0
    if behind.oldest_created:
        created = dt.datetime.fromisoformat(behind.oldest_created.replace("Z", "+00:00"))
        age_h = (dt.datetime.now(dt.UTC) - created).total_seconds() / 3600
    text = f"replication lag: {behind.count} version(s), the oldest committed {age_h:.1f} h ago"
    if age_h > max_lag_hours:
        raise RunError(
            f"{text} (more than --max-lag-hours {max_lag_hours:g})",
            details=["is `binds replicate` running (cron / systemd timer)? see README"],
        )
    out.print(text, highlight=False)


__all__ = ["open_copy", "run_lag", "run_sweep"]
