"""A curator adopts the versions of a store written before the ledger existed.

Stores published by binds before the ledger and the registry (issue 21) hold committed versions
that no ledger entry records: ``binds verify`` reports each as "committed but not recorded".
Adoption records them once, as they are now, after checking them:

1. one ``binds verify`` pass over the levels reads every version (every byte against its
   manifest, the manifest against its key path, the content digest recomputed);
2. a version is adopted only when its single finding is "not recorded": under the dataset's
   lease, an ``adopt`` entry (with the curator's reason) is appended to its level's ledger, the
   dataset is registered to the request its manifest names when the registry does not know it,
   and a missing catalog row is written;
3. every other finding is reported and that version is left unrecorded (exit 1), so damage is
   never sealed into the ledger as if it were the original.

Running it again adopts nothing new: each step checks first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pipelines.store import layout, ledger, registry
from pipelines.store.base import Store
from pipelines.store.identifiers import ACCESS_LEVELS
from pipelines.store.lease import Lease
from pipelines.store.verify import verify

log = logging.getLogger(__name__)

#: the verify finding adoption exists to clear (pipelines.store.verify)
NOT_RECORDED = "committed but not recorded in the"
_VERSION = re.compile(r"^([^/\s]+/[^/\s]+/[^/\s]+/v\d+/)")


@dataclass(slots=True)
class AdoptResult:
    adopted: list[str] = field(default_factory=list)  # version prefixes now recorded
    registered: list[str] = field(default_factory=list)  # dataset ids registered
    refused: list[str] = field(default_factory=list)  # findings that kept a version out
    unreadable: list[str] = field(default_factory=list)  # levels these credentials cannot list

    @property
    def ok(self) -> bool:
        return not self.refused


def adopt_store(
    store: Store,
    *,
    reason: str,
    levels: Iterable[str] = ACCESS_LEVELS,
    catalog_index: Callable[[dict[str, Any], bytes], None] | None = None,
) -> AdoptResult:
    """Record every committed, intact, unrecorded version of ``levels`` in its level's ledger."""
    reason = reason.strip()
    if not reason:
        raise ValueError("adoption needs a reason (it goes into the ledger)")
    report = verify(store, levels=levels)
    result = AdoptResult(unreadable=list(report.unreadable))
    findings: dict[str, list[str]] = {}
    for problem in report.problems:
        # findings start with the version folder or a key inside it (a file, the manifest)
        m = _VERSION.match(problem)
        if m:
            findings.setdefault(m.group(1), []).append(problem)
    for vprefix, whats in sorted(findings.items(), key=lambda kv: _version_order(kv[0])):
        if not any(NOT_RECORDED in w for w in whats):
            continue
        others = [w for w in whats if NOT_RECORDED not in w]
        if others:
            result.refused += others
            continue
        _adopt_version(store, vprefix, reason, catalog_index, result)
    return result


def _version_order(vprefix: str) -> tuple[str, int]:
    """Versions of a dataset in number order (v10 after v9): the ledger keeps that order."""
    head, _, tail = vprefix.rstrip("/").rpartition("/")
    n = layout.parse_version(tail)
    return (head, n if n is not None else -1)


def _adopt_version(
    store: Store,
    vprefix: str,
    reason: str,
    catalog_index: Callable[[dict[str, Any], bytes], None] | None,
    result: AdoptResult,
) -> None:
    level, modality, did, vname = vprefix.rstrip("/").split("/")
    n = layout.parse_version(vname)
    assert n is not None, vprefix  # verify names version folders only
    raw = store.get(vprefix + layout.MANIFEST)
    manifest = json.loads(raw)
    with Lease(store, did, on_wait=lambda text: log.info("%s", text)):
        # a publisher may have recorded it since
        if ledger.record_arrival(
            store,
            level,
            {
                "kind": "adopt",
                "dataset_id": did,
                "version": n,
                "modality": modality,
                "manifest_sha256": hashlib.sha256(raw).hexdigest(),
                "content_digest": manifest.get("content_digest"),
                "request_id": manifest.get("request_id"),
                "reason": reason,
            },
        ):
            result.adopted.append(vprefix)
        request_id = manifest.get("request_id")
        if request_id and registry.lookup(store, did) is None:
            registry.bind(store, did, str(request_id), level, modality)
            result.registered.append(did)
        if catalog_index is not None and not store.exists(
            layout.catalog_key(level, modality, did, n)
        ):
            catalog_index(manifest, raw)
