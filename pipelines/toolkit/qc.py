"""QC checks for the report and the ``qc-<dataset-id>`` artifact.

Each modality declares its own criteria (``ModalitySpec.qc_checks``: ``qc/metrics.json`` ->
a list of :class:`Check`), so a new modality brings its pass/fail rules with it instead of
adding a branch to the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Check:
    """One QC check: ``passed`` is None when the figure it needs is absent."""

    name: str
    passed: bool | None
    value: str
    rule: str  # what passing means


def check(name: str, passed: bool | None, value: Any, rule: str) -> Check:
    """A :class:`Check` whose value is shown as text (``n/a`` when the figure is absent)."""
    return Check(name, passed, "n/a" if value is None else str(value), rule)


def number(metrics: dict[str, Any], key: str) -> float | None:
    """``metrics[key]`` as a float, or None when absent or not a number (booleans are not)."""
    v = metrics.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
