"""A publisher lease kept in the store itself: one publisher of a dataset at a time, from any machine.

``_leases/<sha256 of the lower-cased dataset id>.json`` holds ``holder`` (a random token),
``host``, ``pid``, ``acquired`` and ``expires`` (Unix seconds).  The key is a hash, so the lease
prefix reveals no dataset id, and publishers of every level share it with nothing but get,
put-if-absent and delete.

* **Acquire**: put-if-absent of the lease.  When it exists and has not expired, wait (polling)
  for its holder to finish; the local ``.binds-work`` lock only serialised runs of one folder.
* **Renew**: a thread rewrites the (still unexpired) lease every third of its lifetime.  A publisher that finds its lease gone or held by someone else has *lost* it, and
  stops before it writes anything more (:meth:`Lease.check`).
* **Take over** an expired lease (its holder was killed): first win the put-if-absent of
  ``_leases/<hash>.<old holder token>.takeover`` (only one taker can), re-read the lease, and
  only if it still names the dead holder delete it and acquire as usual.  The marker stays, so
  a late second taker can never delete the new holder's lease.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from pipelines.store.base import Store, StoreError

log = logging.getLogger(__name__)

LEASES_DIR = "_leases"
#: seconds a lease lives without renewal (a killed holder's lease is free after this)
DEFAULT_TTL_S = 60.0
#: seconds a publisher waits for another publisher of the same dataset before giving up
DEFAULT_WAIT_S = 3600.0


def dataset_hash(dataset_id: str) -> str:
    """sha256 of the lower-cased dataset id: the key of its lease and registry entry."""
    return hashlib.sha256(dataset_id.strip().lower().encode()).hexdigest()


def lease_key(dataset_id: str) -> str:
    return f"{LEASES_DIR}/{dataset_hash(dataset_id)}.json"


class LeaseLost(StoreError):
    """Another publisher holds the lease now: stop writing (what was written stays uncommitted)."""


class Lease:
    """The lease of one dataset, held by this process while publishing.

    Use as a context manager; ``ttl_s`` defaults to ``BINDS_LEASE_TTL_S`` or 60 s, ``wait_s``
    (how long to wait for another holder) to ``BINDS_LEASE_WAIT_S`` or 3600 s.
    """

    def __init__(
        self,
        store: Store,
        dataset_id: str,
        *,
        ttl_s: float | None = None,
        wait_s: float | None = None,
        poll_s: float = 0.25,
        on_wait: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.key = lease_key(dataset_id)
        self.ttl_s = ttl_s or float(os.environ.get("BINDS_LEASE_TTL_S", DEFAULT_TTL_S))
        self.wait_s = (
            wait_s
            if wait_s is not None
            else float(os.environ.get("BINDS_LEASE_WAIT_S", DEFAULT_WAIT_S))
        )
        self.poll_s = poll_s
        self.on_wait = on_wait
        self.clock = clock
        self.holder = uuid.uuid4().hex
        self.lost = False
        self.took_over = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the lease object ------------------------------------------------------------------
    def _body(self) -> bytes:
        now = self.clock()
        return (
            json.dumps(
                {
                    "format": "binds-lease",
                    "holder": self.holder,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "acquired": round(now, 3),
                    "expires": round(now + self.ttl_s, 3),
                }
            )
            + "\n"
        ).encode()

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.get(self.key))
        except KeyError:
            return None
        except ValueError:  # a torn or foreign object: treat as expired garbage
            return {"holder": "unreadable", "expires": 0}

    # -- acquire / renew / release -----------------------------------------------------------
    def acquire(self) -> Lease:
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            if self.store.put_if_absent(self.key, self._body()):
                self._start_renewing()
                return self
            current = self._read()
            if current is None:
                continue  # released meanwhile: try again at once
            if float(current.get("expires", 0)) < self.clock():
                self._take_over(str(current.get("holder")))
                continue
            if time.monotonic() > deadline:
                raise StoreError(
                    "another publisher of this dataset has held the store lease for longer "
                    f"than {self.wait_s:.0f} s (host {current.get('host')}, pid "
                    f"{current.get('pid')}); try again later"
                )
            if not told and self.on_wait:
                self.on_wait(
                    f"waiting for another publisher of this dataset (host {current.get('host')}, "
                    f"pid {current.get('pid')}) to finish"
                )
                told = True
            time.sleep(self.poll_s)

    def _take_over(self, dead_holder: str) -> None:
        """Remove the expired lease of ``dead_holder``, if we are the one taker allowed to."""
        marker = f"{self.key[: -len('.json')]}.{_token(dead_holder)}.takeover"
        if not self.store.put_if_absent(marker, self._body()):
            time.sleep(self.poll_s)  # another taker won: it acquires next, we wait as usual
            return
        current = self._read()
        if current is not None and str(current.get("holder")) == dead_holder:
            log.warning(
                "taking over the expired store lease of host %s pid %s",
                current.get("host"),
                current.get("pid"),
            )
            self.store.delete(self.key)
            self.took_over = True

    def renew(self) -> None:
        """Extend the lease; marks it lost (and raises) when someone else holds it now."""
        current = self._read()
        if current is None or current.get("holder") != self.holder:
            self.lost = True
            raise LeaseLost("the store lease of this dataset was taken over by another publisher")
        if float(current.get("expires", 0)) <= self.clock():
            # expired: a taker may be removing it right now; never write over its lease
            self.lost = True
            raise LeaseLost("the store lease of this dataset expired before it was renewed")
        # an unexpired lease of ours is written by nobody else (others only put-if-absent, or
        # take over after expiry): a plain overwrite renews it without a gap a waiter could use
        self.store.put(self.key, self._body())

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless we still hold the lease (called before each write step)."""
        if self.lost:
            raise LeaseLost("the store lease of this dataset was lost; nothing more is written")
        current = self._read()
        if current is None or current.get("holder") != self.holder:
            self.lost = True
            raise LeaseLost("the store lease of this dataset was taken over by another publisher")
        if float(current.get("expires", 0)) < self.clock() + self.ttl_s / 3:
            self.renew()

    def _start_renewing(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.ttl_s / 3):
                try:
                    self.renew()
                except LeaseLost:
                    log.error("lost the store lease of this dataset")
                    return
                except StoreError as err:  # transient: the next round tries again
                    log.warning("could not renew the store lease: %s", err)

        self._thread = threading.Thread(target=loop, name="binds-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lost:
            return
        try:
            current = self._read()
            if current is not None and current.get("holder") == self.holder:
                self.store.delete(self.key)
        except StoreError as err:  # it expires by itself
            log.warning("could not release the store lease: %s", err)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _token(holder: str) -> str:
    """A key-safe form of a holder token (it is ours, but never trust what was read)."""
    return hashlib.sha256(holder.encode()).hexdigest()[:32]
