"""Settings of the screening workflow: the ``screening:`` block of experiment.yaml plus defaults.

The defaults live in one place, ``metadata/schemas/screening.schema.json``, so the schema a user
reads and the values the code uses cannot drift apart.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pipelines.resources import metadata_dir


@cache
def _schema() -> dict[str, Any]:
    return json.loads((metadata_dir() / "schemas" / "screening.schema.json").read_text())


def _defaults(schema: dict[str, Any]) -> Any:
    if schema.get("type") == "object" and "properties" in schema:
        return {k: _defaults(v) for k, v in schema["properties"].items()}
    return schema.get("default")


def settings(block: dict[str, Any] | None) -> dict[str, Any]:
    """The screening block with every missing field filled from the schema defaults.

    Nested blocks (``controls``, ``qc``...) are merged key by key, so ``qc: {z_prime_min: 0.3}``
    keeps the default ``cv_max``.
    """
    out = _defaults(_schema())
    for key, value in (block or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
