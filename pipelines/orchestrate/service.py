"""``binds serve INBOX``: the long-running service of a support unit.

One process holds two things:

- a **Prefect deployment served by this process** (``Runner.add_flow`` + ``Runner.start``, what
  ``flow.serve`` does): the deployment ``binds-run/<name>`` polls the server every 2 s and runs
  each of its flow runs as a subprocess (at most ``limit`` at once).  No work pool or worker
  to set up: the service is one command (and one systemd unit), and a run can also be started
  from the UI or with ``prefect deployment run binds-run/<name> -p run_dir=...``;
- an **inbox watcher** (a thread): each scan takes every complete run folder (see
  :func:`pipelines.orchestrate.inbox.scan`), validates it (bad input is recorded with its reason, no flow
  run), and creates a flow run of the deployment for it.

Restart safety: a flow run is created with the idempotency key ``<folder>:<fingerprint>:<n>``,
so a service that crashed between creating a run and recording it gets the *same* flow run
back instead of a second one.  The inbox state file records ``submitted`` with the flow run id
before waiting for it; after a restart each submitted run is looked up: final -> recorded;
``Crashed``/``Cancelled`` (the service was stopped mid-run) -> submitted again once with the
next key (Snakemake and publishing resume where they stopped); still scheduled or running ->
waited for.  ``limit`` caps the flow runs in flight (watcher and runner both).  Any error of
one folder is recorded for that folder; the service goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from pipelines.orchestrate.inbox import SkipReporter, failure_record, load_state, record, scan

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # submissions of one folder state after crashed/cancelled runs (restarts)


def deployment_name(inbox: Path) -> str:
    return f"inbox-{inbox.resolve().name}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class InboxService:
    """The watcher half of ``binds serve`` (the Runner half is started by :func:`serve`)."""

    def __init__(
        self,
        inbox: Path,
        *,
        deployment_id: UUID,
        store_url: str,
        profile: str,
        cores: int | None,
        settle_s: float,
        interval_s: float,
        limit: int,
        say: Callable[[str], None],
    ) -> None:
        self.inbox = inbox
        self.deployment_id = deployment_id
        self.store_url, self.profile, self.cores = store_url, profile, cores
        self.settle_s, self.interval_s, self.limit = settle_s, interval_s, limit
        self.say = say
        self.skips = SkipReporter(say)
        self.stop = threading.Event()

    # -- one scan
    def scan_once(self, client) -> None:
        self._follow_submitted(client)
        in_flight = sum(
            1 for r in load_state(self.inbox).values() if r.get("status") == "submitted"
        )
        for entry in scan(self.inbox, settle_s=self.settle_s):
            if not entry.ready:
                self.skips(entry)
                continue
            if in_flight >= self.limit:
                self.skips(
                    type(entry)(
                        entry.run_dir,
                        False,
                        "limit",
                        f"waiting: {in_flight} runs in flight (--limit {self.limit})",
                        entry.snapshot,
                    )
                )
                continue
            self.skips.forget(entry.run_dir.name)
            try:
                self._submit(client, entry.run_dir, entry.snapshot.fingerprint, attempt=1)
                self.skips.seen(entry.run_dir.name, "in-flight")
                in_flight += 1
            except Exception as exc:
                rec = failure_record(exc) | {
                    "fingerprint": entry.snapshot.fingerprint,
                    "finished": _now(),
                }
                record(self.inbox, entry.run_dir.name, rec)
                self.skips.seen(entry.run_dir.name, "failed")
                self.say(f"{entry.run_dir.name}: {rec['status']}: {rec['error']}")

    def _submit(self, client, run_dir: Path, fingerprint: str, *, attempt: int) -> None:
        from pipelines.orchestrate.monitoring import run_tags
        from pipelines.orchestrate.service_guard import flow_run_name
        from pipelines.run.runner import check_run_dir

        exp, _ = check_run_dir(run_dir)  # InputError: recorded as invalid, no flow run
        fr = client.create_flow_run_from_deployment(
            self.deployment_id,
            parameters={
                "run_dir": str(run_dir.resolve()),
                "store_url": self.store_url,
                "profile": self.profile,
                "cores": self.cores,
            },
            tags=[*run_tags(exp.data), "inbox"],
            name=flow_run_name(exp.data, exp.dataset_id),
            idempotency_key=f"{run_dir.name}:{fingerprint}:{attempt}",
        )
        record(
            self.inbox,
            run_dir.name,
            {
                "status": "submitted",
                "fingerprint": fingerprint,
                "flow_run_id": str(fr.id),
                "attempt": attempt,
                "started": _now(),
            },
        )
        self.say(
            f"{run_dir.name}: submitted as flow run {fr.name} ({fr.id})"
            + (f", attempt {attempt}" if attempt > 1 else "")
        )

    def _follow_submitted(self, client) -> None:
        for name, rec in list(load_state(self.inbox).items()):
            if rec.get("status") != "submitted":
                continue
            try:
                fr = client.read_flow_run(UUID(rec["flow_run_id"]))
            except Exception as exc:
                self.say(
                    f"{name}: flow run {rec['flow_run_id']} not found ({exc}); submitting again"
                )
                fr = None
            state = fr.state if fr else None
            if state is not None and not state.is_final():
                if not (state.is_running() and _died(rec["flow_run_id"])):
                    continue  # scheduled (the runner takes it) or still running
                from prefect.states import Crashed

                client.set_flow_run_state(
                    fr.id, Crashed(message="its process died (binds serve was killed?)"), force=True
                )
                state = client.read_flow_run(fr.id).state
            run_dir = self.inbox / name
            if fr is None or state.is_crashed() or state.is_cancelled():
                attempt = int(rec.get("attempt", 1)) + 1
                if attempt <= MAX_ATTEMPTS and run_dir.is_dir():
                    why = state.type.value.lower() if state else "lost"
                    self.say(f"{name}: flow run {why} (service stopped mid-run?); resuming")
                    try:
                        self._submit(client, run_dir, rec["fingerprint"], attempt=attempt)
                        self.skips.seen(name, "in-flight")
                    except Exception as exc:
                        record(
                            self.inbox,
                            name,
                            failure_record(exc)
                            | {"fingerprint": rec["fingerprint"], "finished": _now()},
                        )
                    continue
            outcome = _outcome(client, fr)
            record(self.inbox, name, rec | outcome | {"finished": _now()})
            self.skips.seen(name, "failed" if outcome["status"] == "failed" else "done")
            self.say(
                f"{name}: {outcome['status']}"
                + (f": {outcome['error']}" if "error" in outcome else "")
            )

    # -- the loop (a thread)
    def run(self) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            while not self.stop.is_set():
                try:
                    self.scan_once(client)
                except Exception as exc:
                    self.say(
                        f"inbox scan failed: {type(exc).__name__}: {exc}; retrying in "
                        f"{self.interval_s:.0f} s"
                    )
                self.stop.wait(self.interval_s)


def _died(flow_run_id: str) -> bool:
    """A running flow run whose process (on this host) is gone: it died with the service."""
    from pipelines.orchestrate.monitoring import pid_alive, pid_file

    path = pid_file(flow_run_id)
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False  # not started here yet, or not by this host: leave it to Prefect
    if pid_alive(pid):
        return False
    path.unlink(missing_ok=True)
    return True


def _outcome(client, fr) -> dict[str, Any]:
    """published / unchanged (from the run's publish artifact), or failed with the state message."""
    state = fr.state if fr else None
    if state is not None and state.is_completed():
        from prefect.client.schemas.filters import ArtifactFilter

        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id={"any_": [fr.id]}))
        text = " ".join(str(a.data) for a in arts if (a.key or "").startswith("publish-"))
        status = (
            "published"
            if "(published," in text
            else "unchanged"
            if "(unchanged," in text
            else "completed"
        )
        return {"status": status, "flow_run": fr.name}
    message = (state.message if state else "") or "see the flow run's logs"
    return {
        "status": "failed",
        "exit_code": 1,
        "error": message.splitlines()[0][:500],
        "flow_run": fr.name if fr else None,
    }


def serve(
    inbox: Path,
    *,
    store_url: str,
    profile: str = "local",
    cores: int | None = None,
    settle_s: float = 60,
    interval_s: float = 30,
    limit: int = 2,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the deployment and watch ``inbox`` until SIGINT/SIGTERM."""
    import asyncio

    from pipelines.orchestrate.monitoring import prefect_environment

    prefect_environment(quiet=False)  # before Prefect is imported (a no-op if binds serve did)

    from prefect.deployments.runner import EntrypointType
    from prefect.runner import Runner

    from pipelines.orchestrate.flows import binds_run
    from pipelines.orchestrate.service_guard import fix_service

    # the flow-run processes the runner starts inherit this: they refuse anything else
    fix_service(inbox, store_url=store_url, profile=profile, cores=cores)
    runner = Runner(
        name=f"binds-serve-{inbox.resolve().name}",
        query_seconds=2,
        limit=limit,
        pause_on_shutdown=False,
    )
    deployment_id = runner.add_flow(
        binds_run,
        name=deployment_name(inbox),
        entrypoint_type=EntrypointType.MODULE_PATH,
        parameters={"store_url": store_url, "profile": profile, "cores": cores},
        tags=["binds-serve"],
        description=f"runs of {inbox.resolve()} (binds serve)",
    )
    say(
        f"serving deployment binds-run/{deployment_name(inbox)} ({deployment_id}); watching {inbox} "
        f"every {interval_s:.0f} s, at most {limit} runs at once"
    )
    service = InboxService(
        inbox,
        deployment_id=deployment_id,
        store_url=store_url,
        profile=profile,
        cores=cores,
        settle_s=settle_s,
        interval_s=interval_s,
        limit=limit,
        say=say,
    )
    watcher = threading.Thread(target=service.run, name="binds-inbox", daemon=True)
    watcher.start()
    try:
        asyncio.run(runner.start())
    finally:
        service.stop.set()
        watcher.join(timeout=10)
