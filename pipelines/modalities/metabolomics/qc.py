"""QC of one LC-MS experiment: TIC/BPC overlay, per-run table, key metrics, header facts.

Writes (all deterministic: no timestamps, sorted keys, PNG without software/date chunks):

- ``qc/tic_bpc.png``: TIC and BPC of every run overlaid (computed from the MS1 spectra);
- ``qc/target_mass_errors.png`` when targets were quantified;
- ``qc/runs.parquet``: one row per run (file, sha256, spectra per MS level, RT range, features,
  RT drift, targets detected);
- ``qc/metrics.json``: flat key figures for the catalog;
- ``_meta/facts.json``: instrument, software, polarity and source files for metadata.jsonld,
  with conflicts between experiment.yaml and the file headers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.modalities.metabolomics.convert import ConversionQC, read_conversion_qc
from pipelines.toolkit.figures import save_png
from pipelines.toolkit.stage import write_json
from pipelines.toolkit.tables import columns_for, write_table

log = logging.getLogger(__name__)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tic_bpc(chromatograms: list[Path], runs: list[str], out: Path) -> None:
    plt = _figure()
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True, dpi=100)
    for path, run in zip(chromatograms, runs, strict=False):
        t = pq.read_table(path, filters=[("source", "=", "computed")]).to_pylist()
        for row in t:
            ax = axes[0] if row["chromatogram_id"] == "TIC" else axes[1]
            ax.plot(np.asarray(row["time_s"]) / 60.0, row["intensity"], lw=0.8, label=run)
    for ax, title in zip(axes, ("TIC (MS1, computed)", "BPC (MS1, computed)"), strict=False):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("intensity (counts)")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    axes[1].set_xlabel("retention time (min)")
    if len(runs) <= 12:
        axes[0].legend(fontsize=7, ncol=min(len(runs), 4), loc="upper right")
    fig.tight_layout()
    save_png(fig, out)


def _suppression_stretches(stretches: dict | None, runs: list[str]) -> dict[str, list]:
    """The runs table's two list columns: start and end RT of each run's suppressed stretches."""
    per_run = [(stretches or {}).get(r) for r in runs]
    return {
        "ion_suppression_start_s": [None if v is None else [a for a, _ in v] for v in per_run],
        "ion_suppression_end_s": [None if v is None else [b for _, b in v] for v in per_run],
    }


def plot_target_errors(targets: Path, out: Path) -> None:
    plt = _figure()
    t = pq.read_table(targets, columns=["target", "run", "mass_error_ppm", "detected"]).to_pylist()
    names = sorted({r["target"] for r in t})
    runs = sorted({r["run"] for r in t})
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 4), dpi=100)
    for j, run in enumerate(runs):
        xs, ys = [], []
        for i, nm in enumerate(names):
            for r in t:
                if (
                    r["target"] == nm
                    and r["run"] == run
                    and r["detected"]
                    and r["mass_error_ppm"] is not None
                ):
                    xs.append(i + (j - (len(runs) - 1) / 2) * 0.08)
                    ys.append(r["mass_error_ppm"])
        ax.scatter(xs, ys, s=14, label=run)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mass error (ppm)")
    ax.set_title("Target mass errors per run", fontsize=10)
    if len(runs) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, out)


def _model_conflict(yaml_model: str | None, file_models: list[str]) -> bool:
    if not yaml_model or not file_models:
        return False
    a = yaml_model.lower().replace(" ", "")
    return not any(
        m.lower().replace(" ", "") in a or a in m.lower().replace(" ", "") for m in file_models
    )


def runs_table(
    convs: list[ConversionQC], *, features_qc: dict[str, Any], targets_qc: dict[str, Any]
) -> pa.Table:
    """One row per run: the conversion QC, then the run's figures from the feature and target
    QC (null where a step did not run)."""
    fq, tq = features_qc, targets_qc
    runs = [c.run for c in convs]
    levels = sorted({k for c in convs for k in c.spectra_per_ms_level})
    table = {
        "run": runs,
        "sample_id": [c.sample_id for c in convs],
        "file": [c.file for c in convs],
        "sha256": [c.sha256 for c in convs],
        "size_bytes": [c.size_bytes for c in convs],
        "n_spectra": [c.n_spectra for c in convs],
        **{f"n_spectra_{lv}": [c.spectra_per_ms_level.get(lv, 0) for c in convs] for lv in levels},
        "n_peaks": [c.n_peaks for c in convs],
        "rt_min_s": [c.rt_min_s for c in convs],
        "rt_max_s": [c.rt_max_s for c in convs],
        "polarity": [c.polarity for c in convs],
        "spectrum_representation": [c.centroided for c in convs],
        "n_chromatograms_in_file": [c.n_chromatograms_in_file for c in convs],
        "n_features": [fq.get("features_per_run", {}).get(r) for r in runs],
        "rt_drift_s": [fq.get("rt_drift_s", {}).get(r) for r in runs],
        "n_ion_suppressed_scans": [fq.get("ion_suppressed_scans", {}).get(r) for r in runs],
        **_suppression_stretches(fq.get("ion_suppression_rt_s"), runs),
        "targets_detected": [tq.get("targets_detected", {}).get(r) for r in runs],
    }
    # the columns that may be all null (a step that did not run) still need their type
    types = {
        "sample_id": pa.string(),
        "n_features": pa.int64(),
        "rt_drift_s": pa.float64(),
        "n_ion_suppressed_scans": pa.int64(),
        "ion_suppression_start_s": pa.list_(pa.float64()),
        "ion_suppression_end_s": pa.list_(pa.float64()),
        "targets_detected": pa.int64(),
        "rt_min_s": pa.float64(),
        "rt_max_s": pa.float64(),
        "polarity": pa.string(),
        "spectrum_representation": pa.string(),
    }
    return pa.table({k: pa.array(v, type=types.get(k)) for k, v in table.items()})


def experiment_polarity(convs: list[ConversionQC]) -> str | None:
    """The polarity of the experiment's spectra: one, "mixed", or None when no run says."""
    polarities = sorted({c.polarity for c in convs if c.polarity})
    if len(polarities) > 1 or "mixed" in polarities:
        return "mixed"
    return polarities[0] if polarities else None


def experiment_metrics(
    convs: list[ConversionQC],
    *,
    features_qc: dict[str, Any],
    targets_qc: dict[str, Any],
    polarity: str | None,
) -> dict[str, Any]:
    """The flat key figures for the catalog (``qc/metrics.json``); a figure that is not known
    is left out, not written as null."""
    fq, tq = features_qc, targets_qc
    levels = sorted({k for c in convs for k in c.spectra_per_ms_level})
    reps = sorted({c.centroided for c in convs if c.centroided})
    rts_min = [c.rt_min_s for c in convs if c.rt_min_s is not None]
    rts_max = [c.rt_max_s for c in convs if c.rt_max_s is not None]
    drifts = [abs(v) for v in (fq.get("rt_drift_s") or {}).values() if v is not None]
    detected = tq.get("targets_detected") or {}
    metrics: dict[str, Any] = {
        "n_runs": len(convs),
        "n_spectra": sum(c.n_spectra for c in convs),
        **{
            f"n_spectra_{lv}": sum(c.spectra_per_ms_level.get(lv, 0) for c in convs)
            for lv in levels
        },
        "n_peaks": sum(c.n_peaks for c in convs),
        "rt_min_s": round(min(rts_min), 3) if rts_min else None,
        "rt_max_s": round(max(rts_max), 3) if rts_max else None,
        "polarity": polarity,
        "spectrum_representation": "mixed" if len(reps) > 1 else (reps[0] if reps else None),
        "n_chromatograms_in_files": sum(c.n_chromatograms_in_file for c in convs),
    }
    if fq:
        metrics.update(
            n_features=fq.get("n_features"),
            n_features_all_runs=fq.get("n_features_all_runs"),
            max_abs_rt_drift_s=round(max(drifts), 3) if drifts else None,
            n_runs_with_ion_suppression=sum(
                1 for v in (fq.get("ion_suppressed_scans") or {}).values() if v
            ),
            n_ion_suppressed_scans=sum((fq.get("ion_suppressed_scans") or {}).values()),
        )
    if tq:
        n_t = tq.get("n_targets") or 0
        metrics.update(
            n_targets=n_t,
            targets_detected_fraction=round(sum(detected.values()) / (n_t * len(detected)), 4)
            if n_t and detected
            else None,
            target_median_abs_mass_error_ppm=_round(tq.get("target_median_abs_mass_error_ppm")),
            target_max_abs_mass_error_ppm=_round(tq.get("target_max_abs_mass_error_ppm")),
        )
    return {k: v for k, v in metrics.items() if v is not None}


def header_conflicts(
    experiment: dict[str, Any], *, polarity: str | None, models: list[str]
) -> list[dict[str, Any]]:
    """Where experiment.yaml and the files' headers disagree (polarity, instrument model)."""
    block = experiment.get("metabolomics") or {}
    conflicts = []
    stated = block.get("polarity", "auto")
    if (
        stated not in (None, "auto")
        and polarity
        and stated != polarity
        and not (stated == "switching" and polarity == "mixed")
    ):
        conflicts.append(
            {
                "field": "metabolomics.polarity",
                "yaml": stated,
                "file": polarity,
                "message": f"experiment.yaml says {stated}, the spectra are {polarity}",
            }
        )
    yaml_model = (experiment.get("instrument") or {}).get("model")
    if _model_conflict(yaml_model, models):
        conflicts.append(
            {
                "field": "instrument.model",
                "yaml": yaml_model,
                "file": ", ".join(models),
                "message": f"experiment.yaml says {yaml_model!r}, the mzML headers say {', '.join(models)}",
            }
        )
    return conflicts


def header_facts(
    convs: list[ConversionQC],
    *,
    experiment: dict[str, Any],
    polarity: str | None,
    spectrum_representation: str | None,
    models: list[str],
) -> dict[str, Any]:
    """The files' header facts for metadata.jsonld (``_meta/facts.json``'s ``facts``)."""
    software = []
    for c in convs:
        for s in c.software:
            entry = {"name": s.get("name", ""), "version": s.get("version", "")}
            if entry not in software:  # in the order the runs name them, once each
                software.append(entry)
    return {
        "instrument_models": models,
        "instrument_serials": sorted({c.instrument_serial for c in convs if c.instrument_serial}),
        "software": software,
        "polarity": polarity,
        "spectrum_representation": spectrum_representation,
        "chromatography": (experiment.get("metabolomics") or {}).get("chromatography") or {},
        "source_files": [
            {
                "name": c.file,
                "sha256": c.sha256,
                "size_bytes": c.size_bytes,
                "run": c.run,
                "acquired_start": c.start_time,
                "vendor_sources": c.source_files,
            }
            for c in convs
        ],
        "notes": [n for c in convs for n in c.notes],
    }


def write_qc(
    *,
    conversions: list[str | Path],
    chromatograms: list[str | Path],
    experiment: dict[str, Any],
    metrics_out: str | Path,
    runs_out: str | Path,
    tic_png: str | Path,
    facts_out: str | Path,
    features_qc: str | Path | None = None,
    targets_qc: str | Path | None = None,
    targets: str | Path | None = None,
    target_png: str | Path | None = None,
) -> dict[str, Any]:
    """Combine the per-run conversion QC, feature and target QC into the experiment's QC outputs."""
    convs = [read_conversion_qc(p) for p in conversions]
    runs = [c.run for c in convs]
    fq = json.loads(Path(features_qc).read_text()) if features_qc else {}
    tq = json.loads(Path(targets_qc).read_text()) if targets_qc else {}
    Path(tic_png).parent.mkdir(parents=True, exist_ok=True)
    plot_tic_bpc([Path(c) for c in chromatograms], runs, Path(tic_png))
    if targets and target_png:
        plot_target_errors(Path(targets), Path(target_png))
    write_table(
        runs_table(convs, features_qc=fq, targets_qc=tq),
        runs_out,
        format_name="binds-metabolomics-runs",
        format_version=1,
        columns=columns_for("binds-metabolomics-runs"),
    )
    polarity = experiment_polarity(convs)
    metrics = experiment_metrics(convs, features_qc=fq, targets_qc=tq, polarity=polarity)
    write_json(metrics_out, metrics)
    models = sorted({m["name"] for c in convs for m in c.instrument_models})
    conflicts = header_conflicts(experiment, polarity=polarity, models=models)
    facts = header_facts(
        convs,
        experiment=experiment,
        polarity=polarity,
        spectrum_representation=metrics.get("spectrum_representation"),
        models=models,
    )
    write_json(facts_out, {"facts": facts, "conflicts": conflicts})
    for c in conflicts:
        log.warning("conflict: %s", c["message"])
    return metrics


def _round(v: float | None) -> float | None:
    return round(v, 4) if v is not None else None
