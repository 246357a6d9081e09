"""``binds policy``: the S3 policies of every role, scoped to the store's prefixes."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipelines.cli import StoreOpt, app, handle_errors, out, render
from pipelines.errors import InputError, Problem


@app.command("policy")
@handle_errors
def policy_cmd(
    store: StoreOpt = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help='One object {role: {"iam": <policy>, "bucket": <statements>}}.'
        ),
    ] = False,
    account: Annotated[
        str,
        typer.Option(help="AWS account id named in the bucket statements' principals."),
    ] = "ACCOUNT_ID",
) -> None:
    """Print least-privilege S3 policies for the roles publisher-open, publisher-consortium,
    publisher-restricted, reader-open, reader-consortium, reader-all, curator and service.

    Each role gets an IAM policy (attach it to the role's user or role) and bucket-policy
    statements naming arn:aws:iam::ACCOUNT:role/binds-<role>; both are scoped by key prefix
    (object ARNs per prefix, s3:prefix conditions on ListBucket). README, "Access levels".

    Examples:

      binds policy --store s3://binds-curated/unit-a

      binds policy --store s3://binds-curated --json --account 123456789012 > policies.json
    """
    from pipelines.store import store_url
    from pipelines.store.policy import bucket_policy, policies

    url = store_url(store)
    if not url.startswith("s3://"):
        raise InputError(
            Problem(
                f"{url!r} is not an S3 store",
                where="--store",
                hint="policies are for s3://bucket/prefix; a local store is protected by a unix "
                "group per unit (README, Access levels)",
            )
        )
    docs = policies(url, account=account)
    if json_out:
        render.print_json(docs)
        return
    for role, doc in docs.items():
        out.print(f"# IAM policy of role {role}", highlight=False, markup=False)
        out.print(json.dumps(doc["iam"], indent=2), highlight=False, markup=False)
    out.print("# bucket policy (every role; plain HTTP refused)", highlight=False, markup=False)
    out.print(
        json.dumps(bucket_policy(url, account=account), indent=2), highlight=False, markup=False
    )


@app.command("release")
@handle_errors
def release_cmd(
    store: StoreOpt = None,
    now: Annotated[
        str | None,
        typer.Option(help="Release as of this day (YYYY-MM-DD; default today, UTC, or BINDS_NOW)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="What was released, as JSON.")] = False,
) -> None:
    """Publish every version held under embargo whose date has come at its access level.

    Moves without recomputing: copy, check every file against the manifest's sha256, commit the
    manifest, write the level's catalog row, then delete the held copy. Run it daily (cron or a
    systemd timer) with the curator's or the service's credentials; an interrupted release is
    completed by the next one.

    Example: binds release --store s3://binds-curated
    """
    import dataclasses
    import datetime as dt

    from pipelines.describe.embargo import release
    from pipelines.store import open_store

    on = None
    if now is not None:
        try:
            on = dt.date.fromisoformat(now)
        except ValueError:
            raise InputError(
                Problem(f"{now!r} is not a date", where="--now", hint="YYYY-MM-DD")
            ) from None
    done = release(open_store(store), on=on)
    if json_out:
        render.print_json([dataclasses.asdict(r) for r in done])
        return
    for r in done:
        out.print(
            f"released {r.dataset_id} v{r.version} at {r.access} (embargo until {r.embargo_until}, "
            f"{r.files} files)",
            highlight=False,
            markup=False,
        )
    if not done:
        out.print("nothing to release", highlight=False)
