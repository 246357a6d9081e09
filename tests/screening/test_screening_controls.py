"""Screening controls (issue #25): names checked against the plate layout by validate,
controls per channel, and a verdict line that says when plates have no usable controls."""

from __future__ import annotations

import numpy as np
import pandas as pd
from screening_helpers import PLATECONF_384, cellhts2_run, grid_csv, synthetic_grid
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.describe.verdict import evaluate
from pipelines.modalities.screening import preflight


def binds(*args):
    return CliRunner().invoke(app, list(args))


def _run(tmp_path, block=None, plateconf=PLATECONF_384):
    grids = {(p, 1): grid_csv(synthetic_grid(seed=p)) for p in (1, 2)}
    return cellhts2_run(tmp_path / "run", grids, block=block, plateconf=plateconf)


def test_validate_refuses_control_names_no_well_carries_and_lists_the_names_found(tmp_path):
    """Before: validate passed, the run published every plate as FAIL ("0 pass, 12 fail")."""
    run = _run(tmp_path, {"controls": {"negative": ["DMSO"], "positive": ["STAURO"]}})
    out = binds("validate", str(run))
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())
    assert "screening.controls.negative: no well of the plate layout is a negative control" in text
    assert "screening.controls.positive" in text
    assert "content names in the plate layout: neg, pos, sample" in text


def test_validate_accepts_names_the_layout_holds_in_any_case(tmp_path):
    run = _run(tmp_path, {"controls": {"negative": ["NEG"], "positive": ["Pos"]}})
    assert (
        preflight(run, {"screening": {"controls": {"negative": ["NEG"], "positive": ["Pos"]}}})
        == []
    )
    assert binds("validate", str(run)).exit_code == 0


DUAL_CONF = (
    "Wells: 384\nPlates: {n}\nPlate\tWell\tContent\n*\t*\tsample\n*\t[A-P]01\tneg\n"
    "*\t[A-P]02\tpos\n*\t[A-P]03\tneg2\n*\t[A-P]04\tpos2\n"
)


def _dual_channel_run(tmp_path, block):
    """Channel 1: controls in columns 1-2; channel 2 (another readout): in columns 3-4."""
    grids = {}
    for p in (1, 2):
        a = synthetic_grid(seed=p)
        b = synthetic_grid(seed=10 + p)
        b[:, 1] = b[:, 5]  # channel 2 has no signal window in columns 1-2 ...
        b[:, 3] = np.random.default_rng(p).normal(100, 5, 16).round()  # ... but in 3-4
        grids[(p, 1)] = (
            grid_csv(a, header=["Channel 1"]) + "\r\n" + grid_csv(b, header=["Channel 2"])
        )
    run = cellhts2_run(tmp_path / "run", grids, block=block, plateconf=DUAL_CONF)
    # one file per plate holding both channels: the plate list names each channel
    lines = ["Filename\tPlate\tReplicate\tChannel"]
    lines += [f"P{p:03d}_R1.csv\t{p}\t1\t{ch}" for p in (1, 2) for ch in (1, 2)]
    (run / "Platelist.txt").write_text("\n".join(lines) + "\n")
    return run


def test_controls_per_channel(tmp_path, process):
    per_channel = {"controls": {"channels": {"2": {"negative": ["neg2"], "positive": ["pos2"]}}}}
    run = _dual_channel_run(tmp_path / "a", per_channel)
    assert binds("validate", str(run)).exit_code == 0
    plates = pd.read_parquet(process(run, per_channel, tmp_path / "out-a")["plates"])
    assert sorted(plates.channel.unique()) == [1, 2]
    assert plates.qc_pass.all() and (plates.z_prime > 0.5).all(), plates[["channel", "z_prime"]]

    common = _dual_channel_run(tmp_path / "b", {})  # the same names for both channels
    plates = pd.read_parquet(process(common, {}, tmp_path / "out-b")["plates"])
    assert (
        plates[plates.channel == 1].qc_pass.all() and not plates[plates.channel == 2].qc_pass.any()
    )


def test_a_plate_without_usable_controls_says_so_in_the_verdict_line(tmp_path, process):
    """No plate layout: every well a sample; the verdict line gives the reason (before: only
    "0 pass, 2 fail", the reason only in plates.parquet)."""
    from pipelines.modalities.screening import write_metrics

    run = _run(tmp_path, plateconf=None)
    out = process(run, {}, tmp_path / "out")
    metrics_path = tmp_path / "metrics.json"
    write_metrics(
        wells=out["wells"],
        plates=out["plates"],
        hits=out["hits"],
        dose_response=out["dose_response"],
        plots=[],
        out=metrics_path,
    )
    import json

    verdict = evaluate("screening", json.loads(metrics_path.read_text()))
    assert verdict.status == "fail"
    assert "2 of 2 plate readings have no usable controls" in verdict.summary()
