"""Screening plates: reader exports / cellHTS2 screens -> normalised wells, plate QC, hits,
dose-response fits.

Public API (the workflow rules call these; see ``workflows/screening/``):

``read_batch``          a batch of raw plate files -> one long Parquet, wells validated
``score_screen``        normalisation, robust z, B-score, plate QC, replicate summary, hits
``fit_dose_response``   batched 4PL fits per compound
``process_screen``      both of the above, as one workflow job
``make_plots``          heatmaps, Z' per plate, score distribution, dose-response curves
``write_metrics``       ``qc/metrics.json``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.errors import InputError, Problem
from pipelines.modalities import ModalitySpec, lazy_exports
from pipelines.toolkit.qc import Check, check, number

DESCRIPTION = (
    "Screening plates (96/384/1536 wells): cellHTS2 screens, reader grid exports or long "
    "tables -> normalised wells, plate QC (Z'), hits and 4PL dose-response fits"
)
# every extension the readers take (readers.TABLE_EXTENSIONS; a test keeps the two equal),
# matched case-insensitively: Windows readers write .CSV
RAW_PATTERNS: tuple[str, ...] = tuple(
    f"**/*{ext}" for ext in (".csv", ".tsv", ".txt", ".tab", ".xlsx", ".parquet")
)


def qc_checks(metrics: dict[str, Any]) -> list[Check]:
    """The report's pass/fail of a screen: every plate passes, every dose-response fit converges."""
    fail = number(metrics, "plates_qc_fail")
    checks = [
        check(
            "plate QC (Z')",
            None if fail is None else fail == 0,
            f"{metrics.get('plates_qc_pass')} pass, {metrics.get('plates_qc_fail')} fail",
            "every plate reading passes its Z' / signal-to-background criteria",
        )
    ]
    n, ok = number(metrics, "n_dose_response_fits"), number(metrics, "n_dose_response_fits_ok")
    if n:
        checks.append(
            check(
                "dose-response fits",
                ok == n,
                f"{ok:.0f} of {n:.0f} converged",
                "every curve fit converges",
            )
        )
    return checks


MODALITY = ModalitySpec(
    name="screening",
    description=DESCRIPTION,
    technique="high-throughput screening",
    raw_patterns=RAW_PATTERNS,
    software=("pandas", "openpyxl", "scipy", "matplotlib"),
    qc_checks=qc_checks,
)

__all__ = [
    "DESCRIPTION",
    "MODALITY",
    "RAW_PATTERNS",
    "Inputs",
    "batch_count",
    "fit_dose_response",
    "list_inputs",
    "make_demo_run",
    "make_plots",
    "preflight",
    "process_screen",
    "read_batch",
    "resolve",
    "score_screen",
    "settings",
    "write_metrics",
]


# Each Snakemake job is a fresh Python process: import only what the job's function needs
# (matplotlib and pandas cost seconds on a loaded node), so names resolve on first use.
_LAZY = {
    "make_demo_run": "demo",
    "Inputs": "inputs",
    "batch_count": "inputs",
    "resolve": "inputs",
    "list_inputs": "inputs",
    "make_plots": "plots",
    "settings": "config",
    "fit_dose_response": "steps",
    "read_batch": "steps",
    "score_screen": "steps",
    "write_metrics": "steps",
    "process_screen": "steps",
}


__getattr__ = lazy_exports(__name__, _LAZY)


def preflight(run_dir: Path, experiment: dict[str, Any]) -> list[Problem]:
    """Cheap checks before any compute: the inputs resolve, every file the plate list names
    exists and is not empty, the plate configuration and plate map parse.  Never raises."""
    run_dir = Path(run_dir)
    from pipelines.modalities.screening import readers
    from pipelines.modalities.screening.inputs import resolve

    block = experiment.get("screening") or {}
    try:
        found = resolve(run_dir, block)
    except InputError as err:
        return list(err.problems)
    problems: list[Problem] = []
    for unit in found.units:
        name = readers.rel(unit.file, run_dir)
        where = f"plate {unit.plate}, replicate {unit.replicate}" if unit.plate else None
        if not unit.file.is_file():
            problems.append(
                Problem(
                    "file not found",
                    file=name,
                    where=where,
                    hint="check the file name in the plate list (names are case-sensitive)",
                )
            )
        elif unit.file.stat().st_size == 0:
            problems.append(Problem("the file is empty", file=name, where=where))
    for path, reader in (
        (found.plate_config, readers.read_plate_config),
        (found.plate_map, readers.read_plate_map),
        (found.screen_log, readers.read_screen_log),
    ):
        if path is not None:
            try:
                reader(path, root=run_dir)
            except InputError as err:
                problems.extend(err.problems)
    return problems
