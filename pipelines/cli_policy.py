"""``binds policy``: the S3 policies of every role, scoped to the store's prefixes."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from pipelines.cli import StoreOpt, app, handle_errors, out
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
    from pipelines.policy import bucket_policy, policies
    from pipelines.store import store_url

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
        sys.stdout.write(json.dumps(docs, indent=2) + "\n")
        return
    for role, doc in docs.items():
        out.print(f"# IAM policy of role {role}", highlight=False, markup=False)
        out.print(json.dumps(doc["iam"], indent=2), highlight=False, markup=False)
    out.print("# bucket policy (every role; plain HTTP refused)", highlight=False, markup=False)
    out.print(
        json.dumps(bucket_policy(url, account=account), indent=2), highlight=False, markup=False
    )
