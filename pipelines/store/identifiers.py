"""The identifiers a store key is made of: access level, modality name, dataset id.

They live here, at the bottom, because the key layout (:mod:`pipelines.store.layout`) needs
them and the store imports nothing above itself; :mod:`pipelines.describe.metadata` re-exports them for
the experiment checks.  Which modalities exist is the registry's business
(:mod:`pipelines.modalities`): the store only insists that a name is a safe key segment.
"""

from __future__ import annotations

import re

from pipelines.errors import InputError, Problem

#: the top-level folders of a store, most open first (an audience that may read a level may
#: read every level before it)
ACCESS_LEVELS = ("open", "consortium", "restricted")
#: a lower-case slug: one key segment, no "..", at most 100 characters
DATASET_ID = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,99}$")
#: a modality name as a key segment (the registry decides which names exist)
MODALITY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def validate_dataset_id(dataset_id: str) -> str:
    """Return ``dataset_id`` if it is a safe slug, else raise :class:`InputError`."""
    if not isinstance(dataset_id, str) or not DATASET_ID.match(dataset_id):
        raise InputError(
            Problem(
                f"{dataset_id!r} is not a valid dataset id",
                where="dataset_id",
                hint="lower-case letters, digits, '.', '_' and '-', no '/' or '..', at most 100 characters",
            )
        )
    return dataset_id


def default_dataset_id(request_id: str, modality: str) -> str:
    """The dataset id of a run whose experiment.yaml gives none: ``<request_id>-<modality>``,
    slugged."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", f"{request_id}-{modality}".lower()).strip("-.")
    return validate_dataset_id(re.sub(r"\.{2,}", ".", slug)[:100])
