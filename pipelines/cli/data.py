"""``binds serve-data`` (the GA4GH DRS data service) and ``binds audit verify|show``."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli import app, err, handle_errors, out

AuthOpt = Annotated[
    str,
    typer.Option(
        "--auth",
        help="The auth YAML: issuers, audience, visas, link_seconds, audit (docs/drs.md).",
    ),
]

audit_app = typer.Typer(help="The data service's audit trail: verify the chain, list reads.")
app.add_typer(audit_app, name="audit")


@app.command("serve-data")
@handle_errors
def serve_data(
    auth: AuthOpt,
    store: Annotated[
        str | None,
        typer.Option(
            "--store", "-s", envvar="BINDS_STORE", help="Store URL: a folder or s3://bucket/prefix."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind (keep loopback behind a TLS proxy).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    replica: Annotated[
        str | None,
        typer.Option(
            envvar="BINDS_REPLICA_URL",
            help="The preservation copy kept by `binds replicate --to URL`: /health reports "
            "how many committed versions it lacks (counted in the background at most once a minute).",
        ),
    ] = None,
) -> None:
    """Serve the store read-only as GA4GH DRS 1.5 (bearer tokens, passports, signed links).

    Example::

      binds serve-data --store s3://binds-curated --auth /etc/binds/data-auth.yaml --port 8080 \
          --replica s3://binds-curated-copy

    Then: GET http://127.0.0.1:8080/ga4gh/drs/v1/service-info, /catalog, /health.
    """
    from pipelines.dataservice.server import check, serve
    from pipelines.store import store_url

    url = store_url(store)
    check(url, auth)  # a bad auth file or an unreadable store: exit 2 / 1 before binding
    err.print(f"serving {url} as GA4GH DRS at http://{host}:{port}/ga4gh/drs/v1", highlight=False)
    serve(url, auth, host=host, port=port, workers=workers, replica_url=replica)


@audit_app.command("verify")
@handle_errors
def audit_verify(auth: AuthOpt) -> None:
    """Check the hash chain of the audit log; exit 1 naming the first broken line.

    Example: binds audit verify --auth /etc/binds/data-auth.yaml
    """
    from pipelines.dataservice.audit import verify
    from pipelines.dataservice.policy import load_auth
    from pipelines.errors import RunError

    cfg = load_auth(auth)
    report = verify(cfg.audit)
    if not report.ok:
        raise RunError(
            f"audit chain broken at line {report.broken_at}: {report.problem}",
            details=["nothing was repaired; keep the file as evidence"],
        )
    out.print(f"audit chain intact: {report.lines} entries", highlight=False)


@audit_app.command("show")
@handle_errors
def audit_show(
    auth: AuthOpt,
    dataset: Annotated[
        str | None, typer.Option(help="Only decisions about this dataset id.")
    ] = None,
) -> None:
    """Who read what and when, as CSV (one row per decision).

    Example: binds audit show --auth /etc/binds/data-auth.yaml --dataset binds-2026-0042-screening
    """
    import csv
    import sys

    from pipelines.dataservice.audit import FIELDS, read_entries
    from pipelines.dataservice.policy import load_auth

    cfg = load_auth(auth)
    writer = csv.DictWriter(sys.stdout, fieldnames=list(FIELDS), extrasaction="ignore")
    writer.writeheader()
    for entry in read_entries(cfg.audit):
        if dataset is None or entry.get("dataset") == dataset:
            # cells are ids, times and fixed reasons; a leading = + - @ is neutralised anyway
            writer.writerow({k: _cell(entry.get(k)) for k in FIELDS})


def _cell(value):
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
