"""The one QC verdict of a version: every place that says pass or fail derives from it.

Each modality declares its checks once, as data, in its ``ModalitySpec.qc`` (a tuple of
:class:`QcCheck`: name, metric, unit, threshold, direction, what it means, what to do when it
fails).  :func:`evaluate_checks` (through :func:`pipelines.describe.verdict.evaluate`) turns ``qc/metrics.json`` into a :class:`Verdict`; ``binds run``
writes it once per version as ``qc/verdict.json`` (:data:`VERDICT_FILE`) and the report, the
run's summary, ``binds show``, the catalog's ``qc_pass`` / ``qc_failed``, the Prefect flow run
and ``metadata.jsonld`` all read that verdict (or evaluate the same metrics with the same
function), so they cannot disagree.

Rules of the verdict (docs/qc-verdict.md):

- a check whose figure is absent or not applicable is ``n/a`` with the reason, never a blank;
- the verdict is ``fail`` when any check fails, ``pass`` when none fails and at least one
  passed, ``n/a`` when no check could be evaluated (e.g. a map without half maps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

VERDICT_FILE = "verdict.json"  # in the version's qc/ folder
VERDICT_FORMAT = "binds-qc-verdict/1"

Direction = Literal[">=", "<=", "=="]
#: A figure: a number, or the reason it is not applicable (text), or None (not measured).
Figure = float | str | None


@dataclass(frozen=True, slots=True)
class QcCheck:
    """One declared QC check of a modality.

    ``metric`` names the ``qc/metrics.json`` key it reads (``value`` derives the figure when it
    is a ratio or a flag: it returns a number, a text saying why the check does not apply, or
    None when the figure is absent).  ``threshold`` is a number or the name of a metric holding
    it (cryo-EM: the expected resolution given in experiment.yaml).
    """

    name: str
    metric: str
    unit: str
    threshold: float | str
    direction: Direction
    #: One line for the researcher: what the figure says about the data.
    meaning: str
    #: One line for staff: what to do when it fails.
    on_fail: str
    value: Callable[[Mapping[str, Any]], Figure] | None = None
    #: Significant digits the figure is shown with.
    digits: int = 3
    #: Why the check is n/a when its figure is absent (default: "<metric> not measured").
    absent: str = ""
    #: Text shown for a value (e.g. a 0/1 flag as "crossed" / "never crossed").
    labels: Mapping[float, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    metric: str
    result: Literal["pass", "fail", "n/a"]
    value: float | None
    threshold: float | None
    unit: str
    direction: str
    shown: str  # the value with its unit, rounded (or the label)
    criterion: str  # e.g. "<= 30 %"
    meaning: str
    on_fail: str
    reason: str = ""  # why n/a

    @property
    def passed(self) -> bool | None:
        return {"pass": True, "fail": False, "n/a": None}[self.result]

    def line(self) -> str:
        """``name: value (criterion): meaning`` for a terminal or a log."""
        if self.result == "n/a":
            return f"{self.name}: n/a ({self.reason})"
        return f"{self.name}: {self.shown} (needs {self.criterion}): {self.meaning}"


@dataclass(frozen=True, slots=True)
class Verdict:
    modality: str
    status: Literal["pass", "fail", "n/a"]
    checks: tuple[CheckResult, ...]
    #: A note shown in the verdict line (e.g. screening: plates without usable controls).
    note: str = ""

    @property
    def passed(self) -> bool | None:
        return {"pass": True, "fail": False, "n/a": None}[self.status]

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.result == "fail"]

    def summary(self) -> str:
        """The verdict line: ``QC FAIL: 1 of 3 checks failed (ion suppression)``."""
        n = len(self.checks)
        if self.status == "fail":
            names = ", ".join(c.name for c in self.failed)
            text = f"QC FAIL: {len(self.failed)} of {n} checks failed ({names})"
        elif self.status == "pass":
            done = sum(c.result == "pass" for c in self.checks)
            text = f"QC PASS: {done} of {n} checks passed" + (
                f", {n - done} n/a" if done < n else ""
            )
        elif n:
            text = f"QC n/a: none of the {n} checks applies to this version"
        else:
            text = "QC n/a: no pass/fail criteria for this modality"
        return f"{text}; {self.note}" if self.note else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": VERDICT_FORMAT,
            "modality": self.modality,
            "status": self.status,
            "qc_pass": self.passed,
            "failed": [c.name for c in self.failed],
            "summary": self.summary(),
            "note": self.note,
            "checks": [
                {
                    "name": c.name,
                    "metric": c.metric,
                    "result": c.result,
                    "value": c.value,
                    "unit": c.unit,
                    "threshold": c.threshold,
                    "direction": c.direction,
                    "shown": c.shown,
                    "criterion": c.criterion,
                    "meaning": c.meaning,
                    "on_fail": c.on_fail,
                    "reason": c.reason,
                }
                for c in self.checks
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        checks = tuple(
            CheckResult(**{k: c[k] for k in CheckResult.__dataclass_fields__ if k in c})
            for c in d.get("checks", [])
        )
        return cls(d.get("modality", ""), d.get("status", "n/a"), checks, d.get("note", ""))


def number(metrics: Mapping[str, Any], key: str) -> float | None:
    """``metrics[key]`` as a float, or None when absent or not a finite number."""
    v = metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def ratio(
    metrics: Mapping[str, Any], part: str, whole: str, *, scale: float = 100.0, none: str = ""
) -> Figure:
    """``part / whole * scale``; ``none`` (the n/a reason) when ``whole`` is 0, None when absent."""
    p, w = number(metrics, part), number(metrics, whole)
    if p is None or w is None:
        return None
    if w == 0:
        return none or f"{whole} is 0"
    return p / w * scale


def rounded(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits (integers as they are): 2.399952914 -> 2.40."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if float(x).is_integer() and abs(x) < 10**digits * 10:
        return f"{int(x):,}"
    places = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{places}f}"


def with_unit(text: str, unit: str) -> str:
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("%", "°") else f"{text} {unit}"


def evaluate_checks(
    modality: str,
    declared: tuple[QcCheck, ...],
    metrics: Mapping[str, Any],
    note: Callable[[Mapping[str, Any]], str] | None = None,
) -> Verdict:
    """The verdict of ``metrics`` under ``declared`` checks (see the module's rules)."""
    results = []
    for chk in declared:
        raw: Figure = chk.value(metrics) if chk.value else metrics.get(chk.metric)
        if isinstance(raw, bool):
            raw = float(raw)
        threshold = (
            number(metrics, chk.threshold) if isinstance(chk.threshold, str) else chk.threshold
        )
        criterion = (
            f"{chk.direction} {with_unit(rounded(threshold, chk.digits), chk.unit)}"
            if threshold is not None
            else f"{chk.direction} {chk.threshold}"
        )
        if chk.labels and threshold is not None and threshold in chk.labels:
            criterion = chk.labels[threshold]
        base = dict(
            name=chk.name,
            metric=chk.metric,
            unit=chk.unit,
            direction=chk.direction,
            criterion=criterion,
            meaning=chk.meaning,
            on_fail=chk.on_fail,
        )
        if isinstance(raw, str) or raw is None or (isinstance(raw, float) and math.isnan(raw)):
            reason = raw if isinstance(raw, str) else (chk.absent or f"{chk.metric} not measured")
            results.append(
                CheckResult(
                    result="n/a",
                    value=None,
                    threshold=threshold,
                    shown="n/a",
                    reason=reason,
                    **base,
                )
            )
            continue
        value = float(raw)
        if threshold is None:
            results.append(
                CheckResult(
                    result="n/a",
                    value=value,
                    threshold=None,
                    shown=with_unit(rounded(value, chk.digits), chk.unit),
                    reason=f"no threshold: {chk.threshold} not given",
                    **base,
                )
            )
            continue
        ok = {
            ">=": value >= threshold,
            "<=": value <= threshold,
            "==": value == threshold,
        }[chk.direction]
        shown = chk.labels.get(value) or with_unit(rounded(value, chk.digits), chk.unit)
        results.append(
            CheckResult(
                result="pass" if ok else "fail",
                value=value,
                threshold=threshold,
                shown=shown,
                **base,
            )
        )
    if any(r.result == "fail" for r in results):
        status: Literal["pass", "fail", "n/a"] = "fail"
    elif any(r.result == "pass" for r in results):
        status = "pass"
    else:
        status = "n/a"
    return Verdict(modality, status, tuple(results), note(metrics) if note else "")
