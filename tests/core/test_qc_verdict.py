"""One QC verdict per version (issue #25): every place that says pass or fail agrees.

The fast tests feed the verdict the metrics that disagreed on the old code (metabolomics 80 %
vs 50 % targets, ion suppression missing from the catalog gate, transcriptomics 30 % vs 50 %,
a cryo-EM FSC that never crosses 0.143).  The slow test publishes every demo and a failing
copy of every demo and reads the verdict back from each output: qc/verdict.json, the report's
banner and check rows, the catalog's qc_pass / qc_failed, ``binds show`` and metadata.jsonld.
"""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.describe.catalog import figures, read_catalog
from pipelines.describe.verdict import evaluate
from pipelines.modalities import names, spec
from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.toolkit.qc import VERDICT_FILE, Verdict, rounded
from pipelines.toolkit.stage import StagedDataset

CRYOEM_OK = {
    "map_rms": 2.399952914210581,
    "n_half_maps": 2,
    "resolution_fsc0143_angstrom": 3.1,
    "expected_resolution_angstrom": 3.5,
}
METABOLOMICS_OK = {
    "modality": "metabolomics",
    "n_spectra": 1200,
    "n_spectra_ms1": 506,
    "n_ion_suppressed_scans": 23,
    "targets_detected_fraction": 0.9,
    "target_max_abs_mass_error_ppm": 2.1,
}
TRANSCRIPTOMICS_OK = {"n_cells": 2600, "pct_cells_removed": 12.5}
SCREENING_OK = {
    "modality": "screening",
    "plates_qc_pass": 12,
    "plates_qc_fail": 0,
    "n_plate_readings": 12,
    "plates_without_controls": 0,
    "n_dose_response_fits": 4,
    "n_dose_response_fits_ok": 4,
}

#: (modality, metrics, the checks that must fail): each disagreed somewhere on the old code
FAILING = [
    # FSC never below 0.143: the old code said "resolution PASS" and qc_pass true
    (
        "cryoem",
        {**CRYOEM_OK, "resolution_fsc0143_angstrom": "beyond Nyquist"},
        ["FSC 0.143 crossing"],
    ),
    ("cryoem", {**CRYOEM_OK, "resolution_fsc0143_angstrom": 4.2}, ["resolution"]),
    # 60 % of the targets: the report failed it (>= 80 %), the catalog passed it (>= 50 %)
    ("metabolomics", {**METABOLOMICS_OK, "targets_detected_fraction": 0.6}, ["targets detected"]),
    # 31 of 506 MS1 scans suppressed: the catalog had no ion-suppression check
    ("metabolomics", {**METABOLOMICS_OK, "n_ion_suppressed_scans": 31}, ["ion suppression"]),
    # 40 % of the cells removed: the report failed it (30 %), the catalog passed it (50 %)
    ("transcriptomics", {**TRANSCRIPTOMICS_OK, "pct_cells_removed": 40.0}, ["cells removed by QC"]),
    (
        "screening",
        {**SCREENING_OK, "plates_qc_pass": 0, "plates_qc_fail": 12, "plates_without_controls": 12},
        ["plate QC (Z')"],
    ),
]
PASSING = [
    ("cryoem", CRYOEM_OK),
    ("metabolomics", METABOLOMICS_OK),
    ("transcriptomics", TRANSCRIPTOMICS_OK),
    ("transcriptomics", {"n_samples": 7, "n_genes_kept": 9000}),
    ("screening", SCREENING_OK),
]


@pytest.mark.parametrize(("modality", "metrics", "failed"), FAILING)
def test_a_failing_version_fails_in_the_verdict_and_in_the_catalog(modality, metrics, failed):
    verdict = evaluate(modality, metrics)
    assert verdict.status == "fail" and [c.name for c in verdict.failed] == failed
    row = figures(metrics, modality)
    assert row["qc_pass"] is False and row["qc_failed"] == failed
    assert verdict.summary().startswith(f"QC FAIL: {len(failed)} of ")


@pytest.mark.parametrize(("modality", "metrics"), PASSING)
def test_a_passing_version_passes_everywhere(modality, metrics):
    verdict = evaluate(modality, metrics)
    assert verdict.status == "pass", verdict.summary()
    row = figures(metrics, modality)
    assert row["qc_pass"] is True and row["qc_failed"] == []


def test_every_modality_declares_its_checks_once_with_meaning_and_remedy():
    for name in names():
        checks = spec(name).qc
        assert checks, name
        for c in checks:
            assert c.metric and c.direction in (">=", "<=", "==") and c.meaning and c.on_fail


def test_a_check_without_its_figure_is_na_with_a_reason_never_blank():
    verdict = evaluate("cryoem", {"map_rms": 1.0})  # no half maps: nothing to judge
    assert verdict.status == "n/a" and figures({"map_rms": 1.0}, "cryoem")["qc_pass"] is None
    assert all(c.result == "n/a" and c.reason for c in verdict.checks)
    assert "half maps" in verdict.checks[0].reason
    bulk = evaluate("transcriptomics", {"n_samples": 7, "n_genes_kept": 10})
    assert {c.name: c.result for c in bulk.checks}["cells kept"] == "n/a"


def test_screening_verdict_line_says_when_plates_have_no_usable_controls():
    metrics = {**SCREENING_OK, "plates_qc_pass": 0, "plates_qc_fail": 12}
    verdict = evaluate("screening", {**metrics, "plates_without_controls": 12})
    assert "12 of 12 plate readings have no usable controls" in verdict.summary()
    assert "controls" not in evaluate("screening", SCREENING_OK).summary()


def test_figures_are_rounded_to_meaningful_digits():
    assert rounded(2.399952914210581) == "2.40"
    assert rounded(0.000123456) == "0.000123"
    assert rounded(12.0) == "12" and rounded(123456.7, 3) == "123,457"
    ion = {c.name: c for c in evaluate("metabolomics", METABOLOMICS_OK).checks}["ion suppression"]
    assert ion.shown == "4.5%" and ion.criterion == "<= 5%"


def test_the_stored_verdict_round_trips():
    verdict = evaluate("metabolomics", FAILING[3][1])
    again = Verdict.from_dict(json.loads(json.dumps(verdict.to_dict())))
    assert again == verdict


# ------------------------------------------------------------------ every output agrees
def _failing_metrics(modality: str, metrics: dict) -> dict:
    return {
        "cryoem": {
            **metrics,
            "n_half_maps": 2,
            "resolution_fsc0143_angstrom": "beyond Nyquist",
            "expected_resolution_angstrom": 3.0,
        },
        "metabolomics": {**metrics, "n_spectra_ms1": 100, "n_ion_suppressed_scans": 40},
        "transcriptomics": {**metrics, "n_cells": 10, "pct_cells_removed": 75.0}
        if "n_cells" in metrics
        else {**metrics, "n_genes_kept": 0},
        "screening": {**metrics, "plates_qc_pass": 0, "plates_qc_fail": 3},
    }[modality]


def _outputs(store: Path, dataset_id: str) -> dict:
    """The verdict as each output tells it: status and failed check names."""
    st = open_store(str(store))
    row = read_catalog(st).to_pandas().set_index("dataset_id").loc[dataset_id]
    vdir = store / row["path"]
    stored = json.loads((vdir / "qc" / VERDICT_FILE).read_text())
    html = (vdir / "qc" / "report.html").read_text()
    meta = json.loads((vdir / "metadata.jsonld").read_text())["binds:qcVerdict"]
    shown = CliRunner().invoke(app, ["show", dataset_id, "--store", str(store)])
    assert shown.exit_code == 0, shown.output
    banner = unescape(re.search(r"<p class='verdict \w+'>([^<]*)</p>", html).group(1))  # type: ignore[union-attr]
    return {
        "stored": (stored["status"], stored["failed"]),
        "catalog": (
            {True: "pass", False: "fail", None: "n/a"}[
                None if row["qc_pass"] != row["qc_pass"] else row["qc_pass"]
            ],
            list(row["qc_failed"]),
        ),
        "jsonld": (meta["status"], meta["failed"]),
        "report": (
            banner.split(":")[0].removeprefix("QC ").lower(),
            [unescape(n) for n in re.findall(r"<tr><td>([^<]*)</td><td class='fail'>FAIL", html)],
        ),
        "show": (
            re.search(r"QC (PASS|FAIL|n/a)", shown.output).group(1).lower(),  # type: ignore[union-attr]
            re.findall(r"FAIL (.+?): ", shown.output),
        ),
    }


@pytest.mark.slow
def test_every_demo_and_a_failing_copy_agree_in_every_output(demo_store, tmp_path):
    stages = sorted((demo_store.parent / "runs" / ".work").glob("*/stage"))
    assert {s.parent.name for s in stages} == set(names())
    for stage_dir in stages:
        stage = StagedDataset(stage_dir)
        modality = stage.experiment["modality"]
        demo_id = json.loads(next(demo_store.glob(f"*/{modality}/*/v1/manifest.json")).read_text())[
            "dataset_id"
        ]
        told = _outputs(demo_store, demo_id)
        assert told["stored"][0] == "pass", (modality, told)
        assert len(set(map(str, told.values()))) == 1, (modality, told)

        # the same stage, its metrics made to fail, into its own store
        copy = tmp_path / modality
        shutil.copytree(stage_dir, copy, ignore=shutil.ignore_patterns(".snakemake"))
        metrics = json.loads((copy / "qc" / "metrics.json").read_text())
        (copy / "qc" / "metrics.json").write_text(json.dumps(_failing_metrics(modality, metrics)))
        store = tmp_path / f"store-{modality}"
        result = publish(StagedDataset(copy), open_store(str(store)))
        told = _outputs(store, result.dataset_id)
        assert told["stored"][0] == "fail" and told["stored"][1], (modality, told)
        assert len(set(map(str, told.values()))) == 1, (modality, told)
