"""The QC report a researcher reads (issue #25): a passing and a failing report of every
modality rendered in headless Chromium and checked for layout (nothing wider than the page
column, no blank section), rounded figures with units, ontology labels, a working access
snippet, no personal or special-care fields, and the same report in Japanese.

Screenshots: ``BINDS_REPORT_SHOTS=/tmp/shots`` keeps them (docs/qc-report-failing.png is one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_report import chromium, render  # noqa: F401  (the fixture and the renderer)

from pipelines.describe.report import REPORT_SAMPLE_FIELDS, figure_text, store_of, term_label
from pipelines.modalities import names
from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.toolkit.stage import StagedDataset

WIDTH = 1200  # the window; the page column is 60em wide and centred

PERSONAL = {
    "description": "patient 17 from ward B, free text",
    "donor_id": "DONOR-4711",
    "sex": "PATO:0000383",
    "disease": "MONDO:0005148",
    "self_reported_ethnicity": "HANCESTRO:0005",
    "development_stage": "HsapDv:0000087",
}


class _Sections(HTMLParser):
    """Text under each h2 (and whether any table cell is empty)."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, str] = {}
        self.current = ""
        self.in_h2 = False
        self.in_td = False
        self.td_text = ""
        self.empty_cells = 0

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self.in_h2, self.current = True, ""
        elif tag == "td":
            self.in_td, self.td_text = True, ""
        elif tag == "img" and self.current:
            self.sections[self.current] += "[img]"

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False
            self.sections[self.current] = ""
        elif tag == "td":
            self.in_td = False
            self.empty_cells += not self.td_text.strip()

    def handle_data(self, data):
        if self.in_h2:
            self.current += data
        elif self.current:
            self.sections[self.current] += data
        if self.in_td:
            self.td_text += data


def _with_personal_fields(stage_dir: Path) -> None:
    """The experiment as a unit might fill it: free text and special-care sample fields."""
    path = stage_dir / "_meta" / "experiment.json"
    exp = json.loads(path.read_text())
    exp["description"] = "free text about the patient"
    exp["operator"] = "staff-0815"
    exp["requester"] = {"lab": "Lab of Secrets", "pi": "Dr. Private"}
    exp["samples"] = [{**s, **PERSONAL} for s in exp.get("samples", [])]
    path.write_text(json.dumps(exp))


def _publish(stage_dir: Path, out: Path, *, failing: bool) -> Path:
    copy = out / "stage"
    shutil.copytree(stage_dir, copy, ignore=shutil.ignore_patterns(".snakemake"))
    _with_personal_fields(copy)
    if failing:
        metrics = json.loads((copy / "qc" / "metrics.json").read_text())
        modality = json.loads((copy / "_meta" / "experiment.json").read_text())["modality"]
        from test_qc_verdict import _failing_metrics

        (copy / "qc" / "metrics.json").write_text(json.dumps(_failing_metrics(modality, metrics)))
    result = publish(StagedDataset(copy), open_store(str(out / "store")))
    return out / "store" / result.prefix / f"v{result.version}" / "qc" / "report.html"


def _right_margin_is_blank(shot: Path) -> bool:
    """Nothing drawn right of the page column (60em + padding, centred): no overflow."""
    from PIL import Image

    img = Image.open(shot).convert("L")
    strip = img.crop((img.width - 60, 0, img.width, img.height))
    return strip.getextrema()[0] > 240


def test_figures_have_units_and_meaningful_digits():
    assert figure_text("map_rms", 2.399952914210581) == "2.4"
    assert figure_text("resolution_fsc0143_angstrom", 3.14159) == "3.142 Å"
    assert figure_text("pct_cells_removed", 12.345678) == "12.35%"
    assert figure_text("n_cells", 2600) == "2,600"
    assert figure_text("median_genes_per_cell", None).startswith("n/a (")


def test_ontology_ids_are_shown_with_their_labels():
    assert term_label("NCBITaxon:9606") == "Homo sapiens (NCBITaxon:9606)"
    assert term_label("NCBITaxon:999999999") == "NCBITaxon:999999999"  # not in the table: the id


def test_the_store_url_is_the_real_one():
    exp = {"access": {"level": "open"}, "modality": "cryoem"}
    loc = "s3://binds-curated/open/cryoem/binds-x-cryoem/v2/"
    assert store_of(loc, exp, "binds-x-cryoem") == "s3://binds-curated"
    assert REPORT_SAMPLE_FIELDS == ("id", "organism", "tissue", "cell_type", "compound")


@pytest.mark.slow
def test_passing_and_failing_report_of_every_modality_lay_out(chromium, demo_store, tmp_path):  # noqa: F811
    stages = sorted((demo_store.parent / "runs" / ".work").glob("*/stage"))
    assert {s.parent.name for s in stages} == set(names())
    keep = os.environ.get("BINDS_REPORT_SHOTS")
    for stage_dir in stages:
        modality = stage_dir.parent.name
        for failing in (False, True):
            kind = "failing" if failing else "passing"
            report = _publish(stage_dir, tmp_path / f"{modality}-{kind}", failing=failing)
            html = report.read_text(encoding="utf-8")

            # the verdict and checks: one banner, a meaning and criterion per check
            assert html.count("<p class='verdict ") == 1
            assert ("QC FAIL" in html) is failing, (modality, kind)
            if failing:
                assert "What to do:" in html
            # no personal or special-care field, no free text (issue #22)
            for secret in [*PERSONAL.values(), "staff-0815", "Lab of Secrets", "Dr. Private"]:
                assert secret not in html, (modality, secret)
            assert "free text about the patient" not in html
            # ontology labels; the real store URL and a snippet with it
            assert "Homo sapiens (NCBITaxon:9606)" in html
            store = str(report.parents[5])
            assert f"--store {store}" in html and "--store STORE" not in html
            assert f'store="{store}"' in unescape(html)
            # figures rounded: no 16-digit floats
            assert not re.search(r"\d\.\d{7,}", re.sub(r"data:image/png;base64,[^']*", "", html))

            sections = _Sections()
            sections.feed(html)
            blank = [h for h, text in sections.sections.items() if not text.strip()]
            assert blank == [], (modality, kind, blank)
            assert sections.empty_cells == 0, (modality, kind)

            console, urls, shot = render(
                chromium, report, tmp_path / "shots" / f"{modality}-{kind}"
            )
            assert console == [] and urls == []
            assert _right_margin_is_blank(shot), (modality, kind, "content wider than the page")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(keep) / f"report-{modality}-{kind}.png")


@pytest.mark.slow
def test_the_report_in_japanese_has_the_same_content(cryoem_version, tmp_path, monkeypatch):
    _, _, staged, _ = cryoem_version
    en = _publish(staged.root, tmp_path / "en", failing=True).read_text(encoding="utf-8")
    monkeypatch.setenv("BINDS_REPORT_LANG", "ja")
    ja = _publish(staged.root, tmp_path / "ja", failing=True).read_text(encoding="utf-8")
    assert "<html lang='ja'>" in ja and "<h2>品質チェック</h2>" in ja and "QC 不合格" in ja
    assert "ハーフマップの FSC" in ja and "対応：" in ja
    # the same content: every figure, id and the structure
    for pattern in (r"<tr>", r"<h2>", r"class='(?:pass|fail|na)'", r"sha256:[0-9a-f]{64}"):
        assert len(re.findall(pattern, en)) == len(re.findall(pattern, ja)), pattern
    nums = re.compile(r"<td class='num'>([^<]*)</td>")
    assert nums.findall(en) == nums.findall(ja)
