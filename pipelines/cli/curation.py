"""Curator commands: ``binds move`` (a dataset to another access level, recorded in the ledgers)
and ``binds adopt`` (the versions of a store published before the ledger existed)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli import StoreOpt, app, handle_errors, out, render


@app.command("move")
@handle_errors
def move(
    dataset: Annotated[str, typer.Argument(help="The dataset id to move (every version).")],
    to: Annotated[
        str, typer.Option("--to", help="The new access level: open, consortium or restricted.")
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why (goes into both levels' ledgers), e.g. 'consent narrowed, ticket 812'.",
        ),
    ],
    store: StoreOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Curators: move a dataset to another access level: copy every version (checked against
    its manifest and the ledger), verify the copy, record a move in both levels' ledgers, move
    the catalog rows, then remove the old keys. Killed anywhere: run the same command again.

    Needs read and write on both levels (a curator's credentials, not a publisher's).

    Example: binds move binds-2026-0042-cryoem --to restricted --reason "consent narrowed (ticket 812)" --store s3://binds-curated
    """
    from dataclasses import asdict

    from pipelines.describe.catalog import remove_catalog_rows
    from pipelines.run.publishing import index_version
    from pipelines.store import open_store
    from pipelines.store.move import move_dataset

    st = open_store(store)
    result = move_dataset(
        st,
        dataset,
        to,
        reason=reason,
        catalog_index=index_version(st),
        remove_rows=remove_catalog_rows,
    )
    if json_out:
        render.print_json(asdict(result), coloured=True)
        return
    out.print(
        f"moved: {result.dataset_id} v{', v'.join(map(str, result.versions)) or '-'} "
        f"{result.from_level} -> {result.to_level} ({result.copied_files} files copied, "
        f"{result.removed_objects} old objects removed); the reason is in both ledgers",
        highlight=False,
    )


@app.command("adopt")
@handle_errors
def adopt(
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why (goes into every adopt entry), e.g. 'store from binds 0.4, verified 2026-12-03'.",
        ),
    ],
    store: StoreOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Curators: record in the ledger the versions published before the ledger existed.

    Runs `binds verify` over the store first; a version whose only finding is "committed but
    not recorded" gets an `adopt` entry with the reason (its dataset registered to the request
    its manifest names, its catalog row written when missing). A version with any other finding
    (a file that does not match its manifest, a manifest that contradicts its key path) is NOT
    adopted: it is listed, exit 1. Running it again adopts nothing new.

    Needs read and write on every level (a curator's credentials).

    Example: binds adopt --reason "store from before the ledger, checked 2026-12-03 (ticket 901)" --store s3://binds-curated
    """
    from dataclasses import asdict

    from pipelines.run.publishing import index_version
    from pipelines.store import open_store
    from pipelines.store.adopt import adopt_store

    st = open_store(store)
    if not reason.strip():
        raise typer.BadParameter("give the reason for the ledger", param_hint="--reason")
    result = adopt_store(st, reason=reason, catalog_index=index_version(st))
    if json_out:
        render.print_json(asdict(result), coloured=True)
    else:
        out.print(
            f"adopted {len(result.adopted)} version(s) into the ledger, registered "
            f"{len(result.registered)} dataset(s)",
            highlight=False,
        )
        for line in result.refused:
            out.print(f"  not adopted: {line}", highlight=False)
        for level in result.unreadable:
            out.print(
                f"  not checked: level {level} (these credentials cannot list it)", highlight=False
            )
    if not result.ok:
        raise typer.Exit(1)
