"""Metabolomics (LC-MS): mzML -> Parquet spectra and chromatograms, features, targeted quantification.

One run folder is one experiment: every ``*.mzML`` / ``*.mzML.gz`` / ``*.mzML.idx.gz`` in it is a
run (named after its file), converted on its own (one Snakemake job per file), then feature
detection per run, grouping across runs, targeted quantification and QC.  Outputs (see
``docs/formats/metabolomics.md``)::

    data/spectra.parquet/<run>.parquet         one row per spectrum (m/z, intensity list columns)
    data/chromatograms.parquet/<run>.parquet   computed TIC/BPC + the file's own chromatograms
    data/features.parquet                      feature x run matrix (mzTab-M SMF-like)
    data/feature_peaks.parquet                 every run's chromatographic peaks, with SMF_ID
    data/targets.parquet                       targeted quantification (when there are targets)
    qc/tic_bpc.png, qc/target_mass_errors.png, qc/runs.parquet, qc/metrics.json

Modules: :mod:`.mzml` (streaming reader), :mod:`.convert`, :mod:`.features`, :mod:`.targets`,
:mod:`.qc`, :mod:`.demo`, :mod:`.chem`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, Problem
from pipelines.modalities import ModalitySpec
from pipelines.toolkit.inputs import InputSet, RunFolder, sample_of_files
from pipelines.toolkit.params import block_schema, with_defaults
from pipelines.toolkit.qc import Figure, QcCheck, number, ratio

# The processing functions are imported on first use (PEP 562): every Snakemake rule is a
# fresh Python process, and the conversion rule should not pay for matplotlib or psims.
_LAZY = {
    "convert_mzml": "convert",
    "check_readable": "convert",
    "run_name": "convert",
    "run_names": "convert",
    "make_demo_run": "demo",
    "FeatureParams": "features",
    "detect_features": "features",
    "group_features": "features",
    "write_qc": "qc",
    "quantify_targets": "targets",
    "read_targets": "targets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DESCRIPTION = "LC-MS metabolomics: mzML runs -> Parquet spectra/chromatograms, feature matrix, targeted quantification"
# "**/" matches the run folder itself too; .idx.gz is pymzml's indexed gzip
RAW_PATTERNS: tuple[str, ...] = (
    "**/*.mzML",
    "**/*.mzml",
    "**/*.mzML.gz",
    "**/*.mzml.gz",
    "**/*.mzML.idx.gz",
)


def _suppressed_pct(m: Mapping[str, Any]) -> Figure:
    return ratio(m, "n_ion_suppressed_scans", "n_spectra_ms1", none="no MS1 scans")


def _targets_pct(m: Mapping[str, Any]) -> Figure:
    if "targets_detected_fraction" not in m:
        return "no targets listed in experiment.yaml"
    frac = number(m, "targets_detected_fraction")
    return None if frac is None else frac * 100


#: The QC of an LC-MS run set, declared once (pipelines.toolkit.qc).
QC: tuple[QcCheck, ...] = (
    QcCheck(
        name="spectra read",
        metric="n_spectra",
        unit="spectra",
        threshold=1,
        direction=">=",
        meaning="the converter read spectra from every run file",
        on_fail="check the mzML files are complete (re-export them from the instrument software)",
    ),
    QcCheck(
        name="ion suppression",
        metric="n_ion_suppressed_scans",
        unit="%",
        threshold=5,
        direction="<=",
        value=_suppressed_pct,
        digits=2,
        meaning="share of MS1 scans ion-suppressed (a compound filling the trap: ions eluting "
        "then are measured low; runs.parquet says where)",
        on_fail="dilute the sample or shorten the injection and re-run; tell the researcher "
        "which retention times are affected",
    ),
    QcCheck(
        name="targets detected",
        metric="targets_detected_fraction",
        unit="%",
        threshold=80,
        direction=">=",
        value=_targets_pct,
        meaning="share of the listed target compounds found (within 10 ppm) in every run",
        on_fail="check the target list (m/z, adducts, polarity) and the instrument calibration",
    ),
    QcCheck(
        name="target mass error",
        metric="target_max_abs_mass_error_ppm",
        unit="ppm",
        threshold=10,
        direction="<=",
        digits=2,
        meaning="largest |mass error| of the targets found: the mass calibration is good",
        on_fail="recalibrate the mass spectrometer and re-run",
        absent="no targets found to measure a mass error",
    ),
)


MODALITY = ModalitySpec(
    name="metabolomics",
    main_data="data/spectra.parquet",
    description=DESCRIPTION,
    technique="liquid chromatography-mass spectrometry",
    raw_patterns=RAW_PATTERNS,
    software=("pybase64", "deflate", "scipy", "matplotlib"),
    qc=QC,
)
DEFAULT_TARGETS = "targets.csv"
# vendor formats that must be converted to mzML first (a common reason for "no raw files")
_VENDOR_PATTERNS = ("*.raw", "*.RAW", "*.wiff", "*.d", "*.mzXML", "*.mzxml")


def resolve_params(block: dict[str, Any] | None, *, run_dir: str | Path) -> dict[str, Any]:
    """The metabolomics block with every default filled in; ``targets`` becomes an absolute path or None.

    ``targets: null`` (the default) picks up ``targets.csv`` when the run folder has one.
    """
    out = with_defaults(block_schema("metabolomics"), block, where="metabolomics")
    run_dir = Path(run_dir)
    targets = out.get("targets")
    if targets:
        # refuses a path outside the run folder; a missing file is reported by plan_problems
        out["targets"] = str(
            RunFolder(run_dir).reference(targets, where="metabolomics.targets", must_exist=False)
        )
    elif (run_dir / DEFAULT_TARGETS).is_file():
        out["targets"] = str(
            RunFolder(run_dir).reference(DEFAULT_TARGETS, where="targets.csv", file=DEFAULT_TARGETS)
        )
    else:
        out["targets"] = None
    return out


def find_runs(
    run_dir: str | Path,
    *,
    problems: list[Problem] | None = None,
    experiment: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Run name -> mzML file of every run in ``run_dir`` (hidden folders skipped), sorted by name.

    Links leading out of the run folder are left out and reported in ``problems``.  For human
    data (``experiment`` given and :func:`pipelines.toolkit.run_ids.applies`) the names are run
    ids, ``run-001`` ... in file-name order: a raw file name never becomes a store key, a
    Snakemake wildcard (Prefect task-run names, Slurm job comments, log file names).
    """
    found = RunFolder(run_dir).find(RAW_PATTERNS, problems=[] if problems is None else problems)
    from pipelines.modalities.metabolomics.convert import run_names

    if experiment is not None:
        from pipelines.toolkit.run_ids import applies, run_ids

        if applies(experiment):
            return run_ids(found)
    return run_names(sorted(found))


def run_ids(run_dir: str | Path, experiment: dict[str, Any]) -> dict[str, Path]:
    """Run id -> mzML of a human run (what ``_meta/run_ids.json`` records): the workflow's runs."""
    return find_runs(run_dir, experiment=experiment)


def list_inputs(run_dir: str | Path, experiment: dict[str, Any]) -> InputSet:
    """Every file the metabolomics workflow reads (the mzML runs, the targets CSV), and what
    stops it (no runs, a targets file missing or outside the folder)."""
    problems: list[Problem] = []
    runs = find_runs(run_dir, problems=problems, experiment=experiment)
    try:
        params = resolve_params(experiment.get("metabolomics") or {}, run_dir=run_dir)
    except InputError as err:
        return InputSet(files=tuple(sorted(runs.values())), problems=(*problems, *err.problems))
    problems += plan_problems(run_dir, params, runs)
    run_samples(run_dir, experiment, runs, problems=problems)
    files = [*runs.values(), *([Path(params["targets"])] if params["targets"] else [])]
    return InputSet(files=tuple(sorted(p for p in files if p.is_file())), problems=tuple(problems))


def run_samples(
    run_dir: str | Path,
    experiment: dict[str, Any],
    runs: dict[str, Path],
    *,
    problems: list[Problem] | None = None,
) -> dict[str, str | None]:
    """Run name -> the experiment.yaml sample its mzML belongs to (``samples[].files``), or None.

    With one sample and no ``files`` lists, every run is that sample's.  Entries naming a file
    that is not one of the runs are problems (see :func:`pipelines.toolkit.inputs.sample_of_files`).
    """
    of_file = sample_of_files(
        run_dir, experiment, runs.values(), modality="metabolomics", problems=problems
    )
    return {run: of_file.get(Path(os.path.abspath(path))) for run, path in runs.items()}


def plan_problems(
    run_dir: str | Path, params: dict[str, Any], runs: dict[str, Path]
) -> list[Problem]:
    """What stops the workflow before any rule: no mzML files, a named targets file missing.

    Checked when Snakemake reads the workflow (existence only; :func:`preflight` reads the files).
    """
    problems = []
    if not runs:
        problems.append(
            Problem(
                "no mzML files in the run folder",
                file=str(run_dir),
                hint="put the .mzML (or .mzML.gz) files in the run folder",
            )
        )
    if params.get("targets") and not Path(params["targets"]).is_file():
        problems.append(
            Problem(
                "targets file not found",
                file=Path(params["targets"]).name,
                where="metabolomics.targets",
                hint="put it in the run folder or fix metabolomics.targets in experiment.yaml",
            )
        )
    return problems


def preflight(run_dir: Path, experiment: dict) -> list[Problem]:
    """Cheap checks before any compute: mzML files present and readable, targets CSV valid.

    Reads only each file's header (one 4 MiB block); returns every problem, raises nothing.
    """
    from pipelines.modalities.metabolomics.convert import check_readable
    from pipelines.modalities.metabolomics.targets import read_targets

    run_dir = Path(run_dir)
    problems: list[Problem] = []
    runs = find_runs(run_dir)
    if not runs:
        vendor = sorted({p.name for pat in _VENDOR_PATTERNS for p in run_dir.glob(pat)})
        hint = (
            (
                f"found vendor files ({', '.join(vendor[:3])}); convert them to mzML first "
                "(msconvert or ThermoRawFileParser)"
            )
            if vendor
            else "put the .mzML (or .mzML.gz) files in the run folder"
        )
        problems.append(Problem("no mzML files in the run folder", file=str(run_dir), hint=hint))
    for path in runs.values():
        for p in check_readable(path):
            problems.append(
                Problem(p.message, file=RunFolder(run_dir).rel(path), where=p.where, hint=p.hint)
            )
    params = resolve_params(experiment.get("metabolomics") or {}, run_dir=run_dir)
    if params["targets"]:
        try:
            read_targets(params["targets"], default_ppm=float(params["target_ppm"]))
        except InputError as err:
            problems.extend(err.problems)
    f = params.get("features") or {}
    if f.get("min_fwhm_s", 0) >= f.get("max_fwhm_s", 1e9):
        problems.append(
            Problem(
                "min_fwhm_s must be smaller than max_fwhm_s",
                file="experiment.yaml",
                where="metabolomics.features",
                hint="e.g. min_fwhm_s: 1, max_fwhm_s: 60",
            )
        )
    return problems


__all__ = [
    "DESCRIPTION",
    "MODALITY",
    "RAW_PATTERNS",
    "FeatureParams",
    "convert_mzml",
    "detect_features",
    "find_runs",
    "group_features",
    "list_inputs",
    "make_demo_run",
    "plan_problems",
    "preflight",
    "quantify_targets",
    "read_targets",
    "resolve_params",
    "run_name",
    "run_samples",
    "write_qc",
]
