"""Who owns a dataset id, and where it lives: ``_registry/<sha256 of the lower-cased id>.json``.

Written once (put-if-absent) at a dataset's first publication, shared by all levels and keyed
only by hashes; its body holds hashes too (``owner``: sha256 of the request id, ``place``:
sha256 of id, level and modality), so a publisher of ``open`` who reads it learns nothing of a
``restricted`` dataset, and a publish never lists or reads another level to find a clash.

* A later version must come from the same request (the id exactly as first published); a
  curator may override, with a reason that goes into the ledger.
* One place per dataset: the same id at another level or modality is refused, with a message
  that does not say where the other one is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pipelines.store.base import Store
from pipelines.store.lease import dataset_hash

REGISTRY_DIR = "_registry"
REGISTRY_FORMAT = "binds-registry"


def registry_key(dataset_id: str) -> str:
    return f"{REGISTRY_DIR}/{dataset_hash(dataset_id)}.json"


def owner_hash(request_id: str) -> str:
    return hashlib.sha256(request_id.strip().encode()).hexdigest()


def place_hash(dataset_id: str, level: str, modality: str) -> str:
    return hashlib.sha256(f"{dataset_id.lower()}\n{level}\n{modality}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Binding:
    owner: str  # sha256 of the owner request id
    place: str  # sha256 of (dataset id, level, modality)

    def owned_by(self, request_id: str) -> bool:
        return self.owner == owner_hash(request_id)

    def at(self, dataset_id: str, level: str, modality: str) -> bool:
        return self.place == place_hash(dataset_id, level, modality)


def body(dataset_id: str, request_id: str, level: str, modality: str) -> bytes:
    doc: dict[str, Any] = {
        "format": REGISTRY_FORMAT,
        "format_version": 1,
        "dataset": dataset_hash(dataset_id),
        "owner": owner_hash(request_id),
        "place": place_hash(dataset_id, level, modality),
    }
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def lookup(store: Store, dataset_id: str) -> Binding | None:
    try:
        doc = json.loads(store.get(registry_key(dataset_id)))
    except KeyError:
        return None
    return Binding(owner=str(doc.get("owner")), place=str(doc.get("place")))


def bind(store: Store, dataset_id: str, request_id: str, level: str, modality: str) -> Binding:
    """Register the dataset (first publication); return the binding that holds afterwards."""
    if store.put_if_absent(registry_key(dataset_id), body(dataset_id, request_id, level, modality)):
        return Binding(owner_hash(request_id), place_hash(dataset_id, level, modality))
    found = lookup(store, dataset_id)
    assert found is not None  # put-if-absent failed: it exists
    return found


def rebind(store: Store, dataset_id: str, request_id: str, level: str, modality: str) -> None:
    """A curator's move: the same owner, a new place (delete, then put-if-absent)."""
    store.delete(registry_key(dataset_id))
    store.put_if_absent(registry_key(dataset_id), body(dataset_id, request_id, level, modality))
