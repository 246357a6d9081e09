"""``binds usage``: core-hours, GPU-hours, storage (GB-months) and instrument runs per request,
unit or month, and the billing CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.describe.usage import billing_lines, usage_report

runner = CliRunner()


def _v(request, created, *, core=1.0, gpu=0.0, gb=10, unit="Unit A", run="r1", rss=100.0):
    return {
        "request_id": request,
        "dataset_id": request.lower(),
        "version": 1,
        "modality": "cryoem",
        "created": dt.datetime.fromisoformat(created).replace(tzinfo=dt.UTC),
        "core_hours": core,
        "gpu_hours": gpu,
        "peak_rss_mb": rss,
        "stored_bytes": int(gb * 1e9),
        "support_unit": unit,
        "run_id": run,
    }


VERSIONS = [
    _v("REQ-1", "2026-01-01T00:00:00", core=2.0, gpu=0.5, gb=30.4375, run="a"),
    _v(
        "REQ-1", "2026-02-01T00:00:00", core=1.0, gb=0, run="a", rss=300.0
    ),  # same run, re-published
    _v("REQ-2", "2026-01-15T00:00:00", core=4.0, gb=1, unit="Unit B", run="b"),
]


def test_per_request_compute_storage_and_runs():
    rows = {
        r["request"]: r
        for r in usage_report(
            VERSIONS, since=dt.date(2026, 1, 1), until=dt.date(2026, 3, 1), by="request"
        )
    }
    r1 = rows["REQ-1"]
    assert r1["core_hours"] == 3.0 and r1["gpu_hours"] == 0.5 and r1["peak_rss_mb"] == 300.0
    assert r1["instrument_runs"] == 1 and r1["versions"] == 2
    # 30.4375 GB held for Jan + Feb (59 days) = 59 / 30.4375 months
    assert r1["gb_months"] == pytest.approx(30.4375 * 59 / (365.25 / 12), rel=1e-6)
    assert rows["REQ-2"]["stored_gb"] == pytest.approx(1.0)


def test_months_split_storage_and_charge_compute_when_published():
    rows = {
        r["month"]: r
        for r in usage_report(
            VERSIONS, since=dt.date(2026, 1, 1), until=dt.date(2026, 3, 1), by="month"
        )
    }
    assert set(rows) == {"2026-01", "2026-02"}
    assert rows["2026-01"]["core_hours"] == 6.0 and rows["2026-02"]["core_hours"] == 1.0
    jan_gb_months = (30.4375 * 31 + 1 * 17) / (365.25 / 12)
    assert rows["2026-01"]["gb_months"] == pytest.approx(jan_gb_months, rel=1e-6)
    lines = billing_lines(
        usage_report(VERSIONS, since=dt.date(2026, 1, 1), until=dt.date(2026, 3, 1), by="month"),
        by="month",
    )
    assert {ln["period"] for ln in lines} == {"2026-01-01/2026-01-31", "2026-02-01/2026-02-28"}


def test_cli_usage_csv_matches_the_catalog(cryoem_version):
    version_dir, manifest, *_ = cryoem_version
    store = str(version_dir.parents[3])
    out = runner.invoke(app, ["usage", "--store", store, "--csv"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    lines = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(lines[0]) == ["request_id", "service", "quantity", "unit", "period", "support_unit"]
    by_service = {ln["service"]: ln for ln in lines}
    assert by_service["compute"]["request_id"] == "BINDS-DEMO-CRYOEM-0000"
    assert float(by_service["compute"]["quantity"]) == pytest.approx(
        manifest["usage"]["core_hours"], abs=1e-4
    )
    assert (
        by_service["instrument"]["quantity"] == "1.0" and by_service["instrument"]["unit"] == "run"
    )
    assert by_service["compute"]["support_unit"] == "structure-analysis"
    table = runner.invoke(app, ["usage", "--store", store, "--by", "unit"], catch_exceptions=False)
    assert table.exit_code == 0 and "structure-analysis" in table.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--by", "week"],
        ["--since", "2026-13-01"],
        ["--since", "2026-02-01", "--until", "2026-01-01"],
        ["--request", "NO-SUCH-REQUEST"],
    ],
)
def test_cli_usage_bad_options_exit_2(cryoem_version, args):
    store = str(cryoem_version[0].parents[3])
    out = runner.invoke(app, ["usage", "--store", store, *args], catch_exceptions=False)
    assert out.exit_code == 2, out.output


def test_cli_usage_help_has_examples_and_exit_codes():
    out = runner.invoke(app, ["usage", "--help"])
    text = out.stdout.replace("\n", " ")
    assert out.exit_code == 0 and "binds usage --by month" in text and "Exit codes" in text
