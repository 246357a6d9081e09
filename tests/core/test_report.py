"""qc/report.html of every demo modality, rendered in headless Chromium (Debian's ``chromium``).

Each demo run went through the real workflow (Snakemake, with the binds logger plugin so the
report has its rule table) and the real publish: the session's demo store (``demo_store``, built
once for every test that reads it); the report is opened in Chromium from the store: no console message (errors, blocked loads), no network request made
by the page, a screenshot that is not blank, everything in one file under 5 MB.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipelines.describe.report import MAX_REPORT_BYTES, qc_checks

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's own background traffic (updates, time, accounts); never the page's
BROWSER_HOSTS = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")
_CONSOLE = re.compile(r":CONSOLE(?::\d+|\(\d+\))\] (.*)")


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM:
        msg = "chromium not installed (apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return CHROMIUM


def render(chromium: str, page: Path, out: Path) -> tuple[list[str], list[str], Path]:
    """(console messages, http(s) URLs the page requested, screenshot) of ``page``."""
    out.mkdir(parents=True, exist_ok=True)
    netlog, shot = out / "net.json", out / f"{page.stem}.png"
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            f"--log-net-log={netlog}",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), proc.stderr[-2000:]
    console = [m.group(1) for line in proc.stderr.splitlines() if (m := _CONSOLE.search(line))]
    urls = sorted(set(re.findall(r'"url":"(https?://[^"]+)"', netlog.read_text(errors="replace"))))
    page_urls = [u for u in urls if not any(h in u.split("/")[2] for h in BROWSER_HOSTS)]
    return console, page_urls, shot


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href", "srcset", "poster", "data") and v]


def external_refs(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    refs = (
        parser.refs + re.findall(r"url\(([^)]*)\)", html) + re.findall(r"@import\s+([^;]+)", html)
    )
    return [r for r in refs if not r.strip("'\" ").startswith(("data:", "#"))]


def test_the_checks_see_console_errors_and_external_requests(chromium, tmp_path):
    """A negative control: a page with a script error and an external image fails every check."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><img src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom'); undefinedFn();</script></body></html>"
    )
    console, urls, _ = render(chromium, bad, tmp_path / "out")
    assert "boom" in " ".join(console) and any("undefinedFn" in m for m in console)
    assert urls == ["http://127.0.0.1:9/x.png"]
    assert external_refs(bad.read_text()) == ["http://127.0.0.1:9/x.png"]


@pytest.mark.parametrize("modality", ["cryoem", "metabolomics", "transcriptomics", "screening"])
def test_report_of_every_demo_modality_renders_offline_without_errors(
    chromium, modality, demo_store, tmp_path
):
    # the session's demo store: each demo run through `binds run` (the real workflow with the
    # logger plugin, the real publish), read only
    (manifest_path,) = demo_store.glob(f"*/{modality}/*/v*/manifest.json")
    vdir = manifest_path.parent
    manifest = json.loads(manifest_path.read_text())
    report = vdir / "qc" / "report.html"
    html = report.read_text(encoding="utf-8")

    assert report.stat().st_size < MAX_REPORT_BYTES
    assert external_refs(html) == []
    pngs = sorted(p.name for p in (vdir / "qc").glob("*.png"))
    assert pngs and html.count("src='data:image/png;base64,") == len(pngs)
    assert manifest["content_digest"] in html and manifest["dataset_id"] in html
    for name, n in (("Quality checks", 1), ("What was published", 1), ("How to cite it", 1)):
        assert html.count(name) == n, name
    checks = qc_checks(modality, json.loads((vdir / "qc" / "metrics.json").read_text()))
    assert checks, f"no QC checks for {modality}"
    assert html.count("class='pass'>PASS") + html.count("class='fail'>FAIL") + html.count(
        "class='na'>n/a"
    ) == len(checks)
    assert "How it was processed" in html  # the rule table from the logger plugin's events
    assert manifest["documents"][0]["path"] == "qc/report.html"

    console, urls, shot = render(chromium, report, tmp_path / "shots")
    assert console == [], console
    assert urls == [], urls
    from PIL import Image

    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 100, "blank screenshot"
    keep = os.environ.get("BINDS_REPORT_SHOTS")  # to look at them: BINDS_REPORT_SHOTS=/tmp/shots
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / f"report-{modality}.png")
