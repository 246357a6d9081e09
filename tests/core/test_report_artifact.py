"""The ``report-<dataset-id>`` Prefect artifact (issue #25): markdown with the verdict and a
link a browser opens (the data service's, a presigned S3 link, or the local file)."""

from __future__ import annotations

import urllib.request

import boto3

from pipelines.describe.verdict import evaluate
from pipelines.orchestrate.flows import report_link, report_markdown

PREFIX = "open/metabolomics/binds-x-metabolomics/"


def _result(store_url: str, metrics: dict) -> dict:
    return {
        "dataset_id": "binds-x-metabolomics",
        "version": 2,
        "prefix": PREFIX,
        "store_url": store_url,
        "qc": evaluate("metabolomics", metrics).to_dict(),
    }


FAILING = {"n_spectra": 10, "n_spectra_ms1": 100, "n_ion_suppressed_scans": 40}


def test_markdown_names_the_verdict_each_failed_check_and_the_link(tmp_path):
    result = _result(str(tmp_path / "store"), FAILING)
    md = report_markdown(result, report_link(result))
    assert "❌ **QC FAIL: 1 of 4 checks failed (ion suppression)**" in md
    assert "| ion suppression | FAIL | 40% | <= 5% |" in md and "**What to do:**" in md
    assert "| targets detected | N/A | n/a |" in md  # n/a with its reason, not a blank
    assert f"[Open the QC report (HTML)](file://{tmp_path}/store/{PREFIX}v2/qc/report.html)" in md


def test_the_data_service_link_when_one_is_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("BINDS_DATA_SERVICE_URL", "https://data.unit.example/")
    link = report_link(_result(str(tmp_path), FAILING))
    assert link == f"https://data.unit.example/{PREFIX}v2/qc/report.html"


def test_an_s3_report_link_opens_over_http(s3_bucket, s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    bucket = s3_bucket.removeprefix("s3://").split("/")[0]
    key = f"{PREFIX}v2/qc/report.html"
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=bucket, Key=key, Body=b"<html>report</html>"
    )
    link = report_link(_result(f"s3://{bucket}", FAILING))
    assert link.startswith("http") and "Signature" in link
    with urllib.request.urlopen(link, timeout=10) as resp:  # what a browser does
        assert resp.read() == b"<html>report</html>"


def test_consortium_and_restricted_markdown_names_no_dataset_and_no_key(tmp_path):
    """Who reads Prefect's API learns no dataset id of consortium/restricted data (issue 23)."""
    result = _result(str(tmp_path / "store"), FAILING) | {
        "access": "restricted",
        "prefix": "restricted/metabolomics/binds-x-metabolomics/",
    }
    md = report_markdown(result, None, label="ds-0123456789abcdef")
    assert md.startswith("### ds-0123456789abcdef v2")
    assert "binds-x-metabolomics" not in md and "restricted/" not in md
    assert "qc/report.html" in md and "QC FAIL" in md
