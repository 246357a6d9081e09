"""Settings of the screening workflow: the ``screening:`` block of experiment.yaml plus defaults.

The defaults live in one place, ``metadata/schemas/screening.schema.json``, so the schema a user
reads and the values the code uses cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from pipelines.toolkit.params import block_schema, with_defaults


def settings(block: dict[str, Any] | None) -> dict[str, Any]:
    """The screening block with every missing field filled from the schema defaults.

    Nested blocks (``controls``, ``qc``...) are merged key by key, so ``qc: {z_prime_min: 0.3}``
    keeps the default ``cv_max``.
    """
    return with_defaults(block_schema("screening"), block, where="screening")
