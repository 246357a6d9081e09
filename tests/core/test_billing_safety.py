"""Billing exports are safe (issue #23, symptom 5): no formula reaches a spreadsheet, and
``support_unit`` is a code from the operator's list, never free text in a bill or a tag."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from binds_testing import minimal_yaml

from pipelines.describe.metadata import load_experiment
from pipelines.describe.support_units import UNITS_ENV
from pipelines.describe.usage import billing_csv, billing_lines, usage_report
from pipelines.errors import InputError
from pipelines.orchestrate.monitoring import run_tags

HOSTILE = ['=HYPERLINK("http://x","y")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def _version(unit: str, request: str) -> dict:
    return {
        "request_id": request,
        "dataset_id": "ds-1",
        "version": 1,
        "modality": "cryoem",
        "created": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "core_hours": 1.0,
        "gpu_hours": 0.0,
        "peak_rss_mb": None,
        "stored_bytes": 10**9,
        "support_unit": unit,
        "run_id": "r",
    }


@pytest.mark.parametrize("by", ["request", "unit"])
@pytest.mark.parametrize("payload", HOSTILE)
def test_no_cell_of_the_billing_csv_starts_a_formula(payload, by):
    rows = usage_report([_version(payload, payload)], by=by)
    text = billing_csv(billing_lines(rows, by=by))
    cells = [c for row in csv.reader(io.StringIO(text, newline="")) for c in row]
    assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert any(c.startswith("'") and c[1:].strip() == payload.strip() for c in cells)  # as text


def _run(tmp_path, unit_line: str):
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.yaml").write_text(minimal_yaml("cryoem", block=unit_line))
    return run


def test_free_text_support_unit_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(UNITS_ENV, raising=False)
    with pytest.raises(InputError) as exc:
        load_experiment(_run(tmp_path, 'support_unit: "=HYPERLINK(1)"\n'))
    (p,) = [p for p in exc.value.problems if "support unit" in str(p)]
    assert p.where.endswith("support_unit")


def test_support_unit_is_checked_against_the_operators_list(tmp_path, monkeypatch):
    units = tmp_path / "units.txt"
    units.write_text("# code  name\ncryo-em  Structure analysis unit\nscreening Hit discovery\n")
    monkeypatch.setenv(UNITS_ENV, str(units))
    assert (
        load_experiment(_run(tmp_path, "support_unit: cryo-em\n")).data["support_unit"] == "cryo-em"
    )
    other = tmp_path / "o"
    other.mkdir()
    with pytest.raises(InputError) as exc:
        load_experiment(_run(other, "support_unit: proteomics\n"))
    assert any("cryo-em, screening" in str(p) for p in exc.value.problems)


def test_prefect_tags_carry_no_free_text():
    exp = {
        "modality": "cryoem",
        "request_id": "BINDS-2026-0042",
        "access": {"level": "open"},
        "support_unit": "Dr Who's unit =1+1",
    }
    assert not [t for t in run_tags(exp) if t.startswith("unit:")]
    assert "unit:cryo-em" in run_tags(exp | {"support_unit": "cryo-em"})
