"""What a flow run of ``binds serve`` may be asked to do: only the service decides.

The served deployment accepts flow runs from anyone who can reach the Prefect API (the UI,
``prefect deployment run``, a POST to ``create_flow_run``). Its parameters are therefore input
from a stranger: a flow run of a served deployment processes only a folder *of its inbox*, into
*the service's* store, with *the service's* work folders and Snakemake profile. ``binds serve``
fixes these in its environment (:func:`fix_service`), which the flow-run processes its Prefect
runner starts inherit; :func:`check_flow_parameters` refuses, before anything is read or
computed, a flow run asking for anything else, and logs the refusal (which parameter, never the
value given: it is a stranger's free text).

Runs of ``consortium`` and ``restricted`` data are named in Prefect by a hash of their dataset id
(:func:`flow_run_name`): who can read Prefect's API learns no dataset id, title or request.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from pipelines.errors import RunError

log = logging.getLogger(__name__)

INBOX_ENV = "BINDS_SERVICE_INBOX"
STORE_ENV = "BINDS_SERVICE_STORE"
PROFILE_ENV = "BINDS_SERVICE_PROFILE"
CORES_ENV = "BINDS_SERVICE_CORES"


class RefusedFlowRun(RunError):
    """A flow run asked for something the service did not fix: nothing was read or run."""


def fix_service(inbox: Path, *, store_url: str, profile: str, cores: int | None) -> None:
    """Record what the service decides, for its flow-run processes (environment, inherited)."""
    os.environ[INBOX_ENV] = str(inbox.resolve())
    os.environ[STORE_ENV] = store_url
    os.environ[PROFILE_ENV] = profile
    os.environ[CORES_ENV] = "" if cores is None else str(cores)


def served_inbox() -> Path | None:
    """The inbox of the ``binds serve`` this process runs for, or ``None`` (not served)."""
    value = os.environ.get(INBOX_ENV)
    return Path(value) if value else None


def check_flow_parameters(
    run_dir: str,
    *,
    store_url: str | None,
    profile: str,
    cores: int | None,
    work_dir: str | None,
    publish: bool,
) -> None:
    """Refuse (``RefusedFlowRun``, logged) parameters the service did not fix; no-op when not
    served."""
    inbox = served_inbox()
    if inbox is None:
        return
    refused = []
    try:
        folder = Path(run_dir).resolve(strict=True)  # symlinks followed: no way out by a link
        inside = folder.parent == inbox and folder.is_dir()
    except (OSError, ValueError, TypeError):
        inside = False
    if not inside:
        refused.append("run_dir (only a folder of this service's inbox)")
    if store_url not in (None, os.environ.get(STORE_ENV)):
        refused.append("store_url (fixed by the service)")
    if profile != os.environ.get(PROFILE_ENV, "local"):
        refused.append("profile (fixed by the service)")
    fixed_cores = os.environ.get(CORES_ENV) or None
    if cores is not None and str(cores) != fixed_cores:
        refused.append("cores (fixed by the service)")
    if work_dir is not None:
        refused.append("work_dir (fixed by the service)")
    if not publish:
        refused.append("publish (fixed by the service)")
    if refused:
        log.warning("refused a flow run of the served deployment: %s", "; ".join(refused))
        raise RefusedFlowRun(
            "this flow run was refused: " + "; ".join(refused) + ". Nothing was read or run.",
            details=["drop the run folder into the service's inbox instead"],
        )


def dataset_hash(dataset_id: str) -> str:
    """The first 16 hex digits of sha256 of the lower-cased dataset id (as in ``_registry/``)."""
    return hashlib.sha256(dataset_id.lower().encode()).hexdigest()[:16]


def flow_run_name(experiment: dict[str, Any], dataset_id: str) -> str:
    """The dataset id for open data; ``ds-<hash>`` for consortium and restricted data."""
    level = (experiment.get("access") or {}).get("level")
    return dataset_id if level == "open" else f"ds-{dataset_hash(dataset_id)}"


__all__ = [
    "RefusedFlowRun",
    "check_flow_parameters",
    "dataset_hash",
    "fix_service",
    "flow_run_name",
    "served_inbox",
]
