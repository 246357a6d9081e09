"""Screening plates: reader exports / cellHTS2 screens -> normalised wells, plate QC, hits,
dose-response fits.

Public API (the workflow rules call these; see ``workflows/screening/``):

``read_batch``          a batch of raw plate files -> one long Parquet, wells validated
``score_screen``        normalisation, robust z, B-score, plate QC, replicate summary, hits
``fit_dose_response``   batched 4PL fits per compound
``process_screen``      both of the above, as one workflow job: returns the tables
``write_screen``        writes what ``process_screen`` returns (the one writer of the tables)
``make_plots``          heatmaps, Z' per plate, score distribution, dose-response curves
``write_metrics``       ``qc/metrics.json``
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, Problem
from pipelines.modalities import ModalitySpec, lazy_exports
from pipelines.toolkit.qc import Figure, QcCheck, number

DESCRIPTION = (
    "Screening plates (96/384/1536 wells): cellHTS2 screens, reader grid exports or long "
    "tables -> normalised wells, plate QC (Z'), hits and 4PL dose-response fits"
)
# every extension the readers take (readers.TABLE_EXTENSIONS; a test keeps the two equal),
# matched case-insensitively: Windows readers write .CSV
RAW_PATTERNS: tuple[str, ...] = tuple(
    f"**/*{ext}" for ext in (".csv", ".tsv", ".txt", ".tab", ".xlsx", ".parquet")
)


def _failed_fits(m: Mapping[str, Any]) -> Figure:
    n, ok = number(m, "n_dose_response_fits"), number(m, "n_dose_response_fits_ok")
    if n == 0:
        return "no dose-response series in this screen"
    return None if n is None or ok is None else n - ok


def _controls_note(m: Mapping[str, Any]) -> str:
    """The verdict line says when plates had no usable controls (the usual cause of a screen
    where every plate fails: control names that match no well)."""
    bad, n = number(m, "plates_without_controls"), number(m, "n_plate_readings")
    if not bad:
        return ""
    return (
        f"{bad:.0f} of {n or bad:.0f} plate readings have no usable controls (Z' undefined: "
        "check the control names in experiment.yaml against the plate map)"
    )


#: The QC of a screen, declared once (pipelines.toolkit.qc).
QC: tuple[QcCheck, ...] = (
    QcCheck(
        name="plate QC (Z')",
        metric="plates_qc_fail",
        unit="plate readings failed",
        threshold=0,
        direction="<=",
        meaning="every plate reading passes its Z' / signal-to-background / control CV limits: "
        "the assay window separates hits from noise",
        on_fail="see plates.parquet qc_notes per plate; re-run failing plates or fix the "
        "control names / limits in experiment.yaml",
        absent="no plate readings",
    ),
    QcCheck(
        name="dose-response fits",
        metric="n_dose_response_fits_ok",
        unit="fits failed",
        threshold=0,
        direction="<=",
        value=_failed_fits,
        meaning="every 4PL dose-response curve fit converges",
        on_fail="look at the dose-response plots of the failed compounds (too few doses, flat "
        "or noisy curves)",
    ),
)


MODALITY = ModalitySpec(
    name="screening",
    main_data="data/wells.parquet",
    description=DESCRIPTION,
    technique="high-throughput screening",
    raw_patterns=RAW_PATTERNS,
    software=("pandas", "openpyxl", "scipy", "matplotlib"),
    qc=QC,
    qc_note=_controls_note,
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
    "write_screen",
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
    "write_screen": "steps",
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
    contents: set[str] = set()
    for path, reader in (
        (found.plate_config, readers.read_plate_config),
        (found.plate_map, readers.read_plate_map),
        (found.screen_log, readers.read_screen_log),
    ):
        if path is not None:
            try:
                parsed = reader(path, root=run_dir)
            except InputError as err:
                problems.extend(err.problems)
                continue
            if reader is readers.read_plate_config:
                contents |= {rule[2] for rule in parsed.rules}
            elif reader is readers.read_plate_map and "content" in parsed:
                contents |= {str(c) for c in parsed["content"].dropna()}
    if contents and not problems:
        problems += control_problems(block, contents)
    return problems


def control_problems(block: dict[str, Any], contents: set[str]) -> list[Problem]:
    """The control names of ``block`` (and of each channel) against the content names of the
    plate layout: a kind of control no well carries makes every plate fail QC, so it is bad
    input, refused before any compute with the names the layout does hold."""
    from pipelines.modalities.screening.config import settings

    controls = settings(block)["controls"]
    present = {c.lower() for c in contents}
    found = ", ".join(sorted(contents, key=str.lower))
    problems = []
    per_channel = controls.get("channels") or {}
    scopes = [("screening.controls", controls)] + [
        (f"screening.controls.channels.{ch}", {**controls, **ctl})
        for ch, ctl in per_channel.items()
    ]
    for where, ctl in scopes:
        for kind in ("negative", "positive", "inhibitor"):
            names = ctl.get(kind) or []
            if kind == "inhibitor" and not names:
                continue
            if not any(n.lower() in present for n in names):
                problems.append(
                    Problem(
                        f"no well of the plate layout is a {kind} control "
                        f"(names: {', '.join(names) or 'none'})",
                        file="experiment.yaml",
                        where=f"{where}.{kind}",
                        hint=f"content names in the plate layout: {found}",
                    )
                )
    return problems
