"""The replication lag as the data service reports it (``/health``): how many committed versions
the preservation copy (``binds serve-data --replica URL``, kept by ``binds replicate``; at another
S3 site: ``BINDS_COPY_S3_ENDPOINT_URL``) lacks.

Counted in a background thread at most once a minute (one listing of each store; the lagging
versions' manifests for the oldest commit time), whatever the polling rate: ``/health`` answers
at once with the last count (``checking`` before the first one), so a slow or unreachable copy
never makes the service look down.  Counts and an age only: no version, dataset or level is
named (``/health`` answers without a token).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from pipelines.store.base import Store

log = logging.getLogger(__name__)

#: Seconds between two counts.
REFRESH_S = 60.0


class ReplicationStatus:
    def __init__(self, store: Store, replica_url: str, *, refresh_s: float = REFRESH_S) -> None:
        self.store, self.replica_url, self.refresh_s = store, replica_url, refresh_s
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {"copy": "checking"}
        self._thread: threading.Thread | None = None

    def status(self) -> dict[str, Any]:
        """The last count: ``{"versions_behind": n, "oldest_behind_hours": h | None,
        "checked": ISO}``, ``{"copy": "unreachable", "checked": ISO}``, or ``{"copy":
        "checking"}`` before the first count ends.  Starts the counting thread."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._keep_counting, name="binds-replication-lag", daemon=True
                )
                self._thread.start()
            return dict(self._status)

    def _keep_counting(self) -> None:
        stop = threading.Event()  # never set: the thread ends with the worker process
        while True:
            status = self.count()
            with self._lock:
                self._status = status
            stop.wait(self.refresh_s)

    def count(self) -> dict[str, Any]:
        """One count, now."""
        from pipelines.store import open_copy
        from pipelines.store.replicate import lag

        now = dt.datetime.now(dt.UTC)
        checked = now.isoformat(timespec="seconds")
        try:
            behind = lag(self.store, open_copy(self.replica_url))
        except Exception as err:  # any failure of the copy is a status, never a 500
            log.warning("replication lag: the copy cannot be read (%s)", type(err).__name__)
            return {"copy": "unreachable", "checked": checked}
        hours = None
        if behind.oldest_created:
            oldest = dt.datetime.fromisoformat(behind.oldest_created.replace("Z", "+00:00"))
            hours = round((now - oldest).total_seconds() / 3600, 2)
        return {"versions_behind": behind.count, "oldest_behind_hours": hours, "checked": checked}
