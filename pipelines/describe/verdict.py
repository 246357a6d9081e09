"""A version's QC verdict: evaluated from its metrics with its modality's declared checks
(:mod:`pipelines.toolkit.qc` has the checks and the rules), written once as ``qc/verdict.json``
and read back by the report, the run's summary, ``binds show``, the catalog, Prefect and
metadata.jsonld, so that they cannot disagree (docs/qc-verdict.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines import modalities
from pipelines.toolkit.qc import VERDICT_FILE, Verdict, evaluate_checks


def evaluate(modality: str, metrics: Mapping[str, Any]) -> Verdict:
    """The QC verdict of a version of ``modality`` from its ``qc/metrics.json``: the only place
    pass/fail is decided."""
    spec = modalities.spec(modality)
    return evaluate_checks(modality, tuple(spec.qc), metrics, spec.qc_note)


def write_verdict(qc_dir: Path, modality: str, metrics: Mapping[str, Any]) -> Verdict:
    """Evaluate and write ``qc/verdict.json`` (stable bytes: a re-run writes the same file)."""
    verdict = evaluate(modality, metrics)
    qc_dir.mkdir(parents=True, exist_ok=True)
    (qc_dir / VERDICT_FILE).write_text(
        json.dumps(verdict.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return verdict


def read_verdict(qc_dir: Path, modality: str, metrics: Mapping[str, Any]) -> Verdict:
    """The verdict of a stage: what its metrics say now.

    ``qc/verdict.json`` is that verdict written down; a stage whose metrics changed after it was
    written (a stage copied and edited, a metrics file rewritten) is evaluated again, so that
    the report, the catalog and the stored file never tell two verdicts.
    """
    verdict = evaluate(modality, metrics)
    path = qc_dir / VERDICT_FILE
    if path.is_file():
        try:
            stored = Verdict.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError):
            return verdict
        if stored.to_dict() == verdict.to_dict():
            return stored
    return verdict


def refresh_verdict(qc_dir: Path, modality: str, metrics: Mapping[str, Any]) -> Verdict:
    """Rewrite ``qc/verdict.json`` only when it is missing or no longer says what the metrics
    say (publishing calls this before hashing: an up-to-date stage is not touched)."""
    verdict = evaluate(modality, metrics)
    path = qc_dir / VERDICT_FILE
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current != verdict.to_dict():
        write_verdict(qc_dir, modality, metrics)
    return verdict
