"""The replication lag as the data service reports it (``/health``): how many committed versions
the preservation copy (``binds serve-data --replica URL``, kept by ``binds replicate``; at another S3 site:
``BINDS_COPY_S3_ENDPOINT_URL``) lacks.

Counted at most once a minute (one listing of each store; the lagging versions' manifests for
the oldest commit time), whatever the polling rate, and never longer than one request waits:
a copy that cannot be listed is reported as unreachable.  Counts and an age only: no version,
dataset or level is named (``/health`` answers without a token).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from pipelines.store.base import Store

log = logging.getLogger(__name__)

#: Seconds a computed lag is reused.
REFRESH_S = 60.0


class ReplicationStatus:
    def __init__(self, store: Store, replica_url: str, *, refresh_s: float = REFRESH_S) -> None:
        self.store, self.replica_url, self.refresh_s = store, replica_url, refresh_s
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._status: dict[str, Any] = {}

    def status(self) -> dict[str, Any]:
        """``{"versions_behind": n, "oldest_behind_hours": h | None, "checked": ISO}``, or
        ``{"copy": "unreachable", "checked": ISO}``."""
        with self._lock:
            if time.monotonic() - self._at >= self.refresh_s:
                self._status = self._compute()
                self._at = time.monotonic()
            return dict(self._status)

    def _compute(self) -> dict[str, Any]:
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
