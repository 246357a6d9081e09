"""The QC report of a version: ``qc/report.html``, one self-contained file to e-mail.

What it holds (for the requesting researcher): what was measured (experiment, instrument,
samples), the QC checks with pass/fail, the key figures and the modality's QC plots (inline
PNG ``data:`` URIs, scaled down when large), how each workflow rule ran (time, CPU, memory,
from Snakemake's events and benchmark files), what was published (files grouped by dataset
entry, sizes, the content digest) and how to access and cite it.  No external URL is loaded
(no scripts, fonts or images from the network; links are plain text or ``href``s the reader
may follow), so it opens offline and stays far below e-mail limits (< 5 MB; typically 0.3-1 MB).

The report is not part of the version's content digest (it names the digest); it is listed
in the manifest under ``documents``.

:func:`qc_rows` (the verdict, rules, figures) is also the source of the ``qc-<dataset-id>``
Prefect artifact; the verdict is :mod:`pipelines.toolkit.qc`'s, the same everywhere.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipelines.describe.verdict import evaluate, read_verdict
from pipelines.progress import human_bytes
from pipelines.toolkit.qc import CheckResult, Verdict, rounded
from pipelines.toolkit.stage import StagedDataset

MAX_REPORT_BYTES = 5 * 2**20
MAX_PNG_BYTES = 600 * 2**10  # a larger plot is scaled down before it is inlined


def qc_verdict(modality: str, metrics: dict[str, Any]) -> Verdict:
    """The version's one QC verdict (:func:`pipelines.describe.verdict.evaluate`)."""
    return evaluate(modality, metrics)


def qc_checks(modality: str, metrics: dict[str, Any]) -> list[CheckResult]:
    """The checks of the version's verdict (pass, fail or n/a with the reason)."""
    return list(qc_verdict(modality, metrics).checks)


def stage_verdict(stage: StagedDataset) -> Verdict:
    """The verdict stored in the stage's qc/verdict.json (evaluated when absent)."""
    return read_verdict(stage.qc_dir, stage.experiment.get("modality", ""), stage.metrics)


def rule_runs(stage: StagedDataset) -> list[dict[str, Any]]:
    """One row per Snakemake job of the last run (its latest attempt), from the job records."""
    from pipelines.describe.jobs import benchmark_figures, read_jobs

    latest = {job.jobid: job for job in read_jobs(stage.events_file) if job.rule != "all"}
    rows = []
    for job in latest.values():
        wc = ",".join(f"{k}={v}" for k, v in job.wildcards.items())
        row: dict[str, Any] = {
            "rule": job.rule + (f"[{wc}]" if wc else ""),
            "threads": job.threads,
            "mem_mb": job.resources.get("mem_mb"),
            "status": job.status,
        }
        if job.finished is not None and job.started is not None:
            row["seconds"] = round(job.finished - job.started, 2)
        bench = benchmark_figures(job.benchmark)
        rows.append(row | {"cpu_s": bench.get("cpu_s"), "max_rss_mb": bench.get("max_rss_mb")})
    return rows


def qc_rows(stage: StagedDataset) -> list[dict[str, str]]:
    """The ``qc-<dataset-id>`` artifact: checks, then rules, then key figures (one table)."""
    metrics = stage.metrics
    verdict = stage_verdict(stage)
    rows = [
        {
            "section": "verdict",
            "name": "QC",
            "result": verdict.status.upper(),
            "value": verdict.summary(),
            "detail": "",
        }
    ]
    rows += [
        {
            "section": "check",
            "name": c.name,
            "result": c.result.upper() if c.result != "n/a" else "n/a",
            "value": c.shown,
            "detail": (c.reason if c.result == "n/a" else f"needs {c.criterion}: {c.meaning}")
            + (f" (on failure: {c.on_fail})" if c.result == "fail" else ""),
        }
        for c in verdict.checks
    ]
    for r in rule_runs(stage):
        rows.append(
            {
                "section": "rule",
                "name": r["rule"],
                "result": "PASS" if r["status"] == "completed" else r["status"].upper(),
                "value": f"{r.get('seconds', '?')} s",
                "detail": f"threads {r['threads']}, mem_mb {r['mem_mb']}, cpu_s {r['cpu_s']}, "
                f"max_rss_mb {r['max_rss_mb']}",
            }
        )
    for k, v in sorted(metrics.items()):
        rows.append(
            {"section": "figure", "name": k, "result": "", "value": figure_text(k, v), "detail": ""}
        )
    return rows


# ----------------------------------------------------------------------------------- HTML
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _png_data_uri(path: Path) -> str:
    data = path.read_bytes()
    if len(data) > MAX_PNG_BYTES:
        from PIL import Image

        img = Image.open(io.BytesIO(data))
        scale = (MAX_PNG_BYTES / len(data)) ** 0.5
        img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _group_files(files: Iterable[dict[str, Any]]) -> list[tuple[str, int, int, str]]:
    """(entry, n files, bytes, sha256 or '') per dataset entry: a Zarr store is one line."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        parts = f["path"].split("/")
        entry = "/".join(parts[:2]) if len(parts) > 2 else f["path"]
        groups.setdefault(entry, []).append(f)
    out = []
    for entry, fs in sorted(groups.items()):
        single = len(fs) == 1 and fs[0]["path"] == entry
        out.append(
            (
                entry + ("" if single else "/"),
                len(fs),
                sum(f["size"] for f in fs),
                fs[0]["sha256"] if single else "",
            )
        )
    return out


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:60em;padding:0 1em;color:#1b1f24;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top;overflow-wrap:break-word}
th,td.pass,td.fail,td.na{white-space:nowrap}td code{word-break:break-all}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#dafbe1;color:#116329;font-weight:600}.fail{background:#ffebe9;color:#a40e26;font-weight:600}
.na{color:#57606a}.sub{color:#57606a}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
pre{background:#f6f8fa;padding:.7em;white-space:pre-wrap;overflow-wrap:anywhere}figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #d0d7de}figcaption{color:#57606a;font-size:.9em}
.verdict{display:inline-block;padding:.2em .7em;border-radius:.3em;margin:.3em 0}
"""


def render_report(
    *,
    stage: StagedDataset,
    dataset_id: str,
    version: int,
    files: list[dict[str, Any]],
    content_digest: str,
    created: str,
    location: str,
    lang: str | None = None,
) -> bytes:
    """The self-contained HTML report of one version (UTF-8 bytes, < 5 MB).

    ``lang``: ``en`` or ``ja`` (default ``BINDS_REPORT_LANG``, else English): the same content.

    Parameters
    ----------
    stage
        The staged dataset being published (experiment, metrics, QC plots, run events).
    files
        The version's files: ``{"path", "size", "sha256"}`` (as in its manifest).
    location
        Where the version is, e.g. ``s3://binds-curated/open/cryoem/<id>/v2/``.
    """
    from pipelines.describe.report_i18n import localise_verdict, report_language, translate_page

    lang = report_language(lang)
    exp, metrics = stage.experiment, stage.metrics
    verdict = localise_verdict(stage_verdict(stage), lang)
    parts = _head(
        exp, dataset_id=dataset_id, version=version, created=created, verdict=verdict, lang=lang
    )
    parts += _measured(exp, stage)
    parts += _checks_section(verdict, metrics)
    parts += _figures_section(stage)
    parts += _processing_section(stage)
    parts += _published_section(files, content_digest)
    parts += _access_section(
        exp,
        dataset_id=dataset_id,
        version=version,
        created=created,
        location=location,
        content_digest=content_digest,
    )
    out = translate_page("\n".join(parts), lang).encode("utf-8")
    if len(out) > MAX_REPORT_BYTES:  # figures are what makes it large: keep the text
        return render_text_only(out)
    return out


def _head(
    exp: dict[str, Any],
    *,
    dataset_id: str,
    version: int,
    created: str,
    verdict: Verdict,
    lang: str = "en",
) -> list[str]:
    from pipelines.describe.report_i18n import summary

    cls = {"pass": "pass", "fail": "fail"}.get(verdict.status, "na")
    banner = f"<p class='verdict {cls}'>{_e(summary(verdict, lang))}</p>"
    title = exp.get("title") or dataset_id
    access = (exp.get("access") or {}).get("level", "")
    return [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        # no network at all: images are data: URIs, styles inline
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>QC report: {_e(dataset_id)} v{version}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='sub'>Dataset <b>{_e(dataset_id)}</b> version {version} &middot; {_e(exp.get('modality', ''))} &middot; "
        f"access {_e(access)} &middot; request {_e(exp.get('request_id'))} &middot; published {_e(created)}</p>",
        banner,
    ]


#: The only sample fields the e-mailed report shows: an id and what was measured (ontology ids
#: with their labels).  Never donor ids, sex, disease, ethnicity, development stage or free
#: text (special-care fields, issue #22): the report leaves the store by e-mail.
REPORT_SAMPLE_FIELDS = ("id", "organism", "tissue", "cell_type", "compound")


def term_label(curie: Any) -> str:
    """``NCBITaxon:9606`` -> ``Homo sapiens (NCBITaxon:9606)`` from the bundled vocabularies
    (metadata/vocab/*.tsv, extendable by the unit); the id alone when it is not listed."""
    text = str(curie)
    prefix = text.partition(":")[0]
    try:
        from pipelines.describe.metadata import vocabulary

        found = vocabulary(prefix).get(text)
    except (OSError, ValueError):
        found = None
    return f"{found.label} ({text})" if found else text


def _sample_text(sample: dict[str, Any]) -> str:
    parts = []
    for key in REPORT_SAMPLE_FIELDS:
        value = sample.get(key)
        if value in (None, "", []):
            continue
        values = value if isinstance(value, list) else [value]
        shown = ", ".join(
            str(v) if key == "id" else term_label(v) for v in values if not isinstance(v, dict)
        )
        if shown:
            parts.append(f"{'sample' if key == 'id' else key.replace('_', ' ')} {shown}")
    return ", ".join(parts)


def _measured(exp: dict[str, Any], stage: StagedDataset) -> list[str]:
    inst = exp.get("instrument") or {}
    samples = [t for t in (_sample_text(s) for s in exp.get("samples") or []) if t]
    about = [
        ("Support unit", exp.get("support_unit")),
        ("Instrument", " ".join(str(v) for v in inst.values() if isinstance(v, (str, int)) and v)),
        ("Acquired", exp.get("acquired")),
        ("Samples", "; ".join(samples)),
        (
            "Raw files",
            ", ".join(
                f"{i['name']} ({human_bytes(i['size'])})" for i in stage.run_info.get("inputs", [])
            ),
        ),
    ]
    return [
        "<h2>What was measured</h2><table>",
        *[f"<tr><th>{_e(k)}</th><td>{_e(v) if v else _NA_GIVEN}</td></tr>" for k, v in about],
        "</table>",
    ]


_NA_GIVEN = "<span class='na why'>n/a (not given in experiment.yaml)</span>"

#: unit of a metrics.json key, from its name
_SUFFIX_UNITS = (
    ("_angstrom", "Å"),
    ("_ppm", "ppm"),
    ("_percent", "%"),
    ("_pct", "%"),
    ("_seconds", "s"),
    ("_s", "s"),
    ("_mb", "MB"),
    ("_bytes", "bytes"),
)


def figure_unit(key: str) -> str:
    if key.startswith("pct_"):
        return "%"
    for suffix, unit in _SUFFIX_UNITS:
        if key.endswith(suffix):
            return unit
    return ""


def figure_text(key: str, value: Any) -> str:
    """A metrics.json figure for a reader: 4 significant digits with its unit, ``n/a`` with the
    reason for a missing one."""
    if value is None:
        return "n/a (not defined for this data)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        from pipelines.toolkit.qc import with_unit

        text = rounded(float(value), 4)
        if "." in text:  # 0.5000 s -> 0.5 s: the figure's own precision, not padding
            text = text.rstrip("0").rstrip(".")
        return with_unit(text, figure_unit(key))
    if isinstance(value, list):
        return ", ".join(figure_text(key, v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {figure_text(k, v)}" for k, v in value.items()) or "none"
    return str(value)


def _checks_section(verdict: Verdict, metrics: dict[str, Any]) -> list[str]:
    parts = ["<h2>Quality checks</h2>"]
    if verdict.checks:
        parts.append(
            "<table><tr><th>check</th><th>result</th><th>value</th><th>criterion</th>"
            "<th>what it means</th></tr>"
        )
        for c in verdict.checks:
            cls, word = {"pass": ("pass", "PASS"), "fail": ("fail", "FAIL"), "n/a": ("na", "n/a")}[
                c.result
            ]
            meaning = _e(c.meaning)
            if c.result == "n/a":
                meaning += f"<br><span class='na why'>n/a: {_e(c.reason)}</span>"
            elif c.result == "fail":
                meaning += f"<br><b>What to do:</b> {_e(c.on_fail)}"
            parts.append(
                f"<tr><td>{_e(c.name)}</td><td class='{cls}'>{word}</td>"
                f"<td class='num'>{_e(c.shown)}</td><td>{_e(c.criterion)}</td>"
                f"<td>{meaning}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p class='na why'>n/a: this modality declares no pass/fail criteria.</p>")
    parts.append("<h3>Key figures</h3><table><tr><th>figure</th><th>value</th></tr>")
    parts += [
        f"<tr><td><code>{_e(k)}</code></td><td class='num'>{_e(figure_text(k, v))}</td></tr>"
        for k, v in sorted(metrics.items())
    ]
    parts.append("</table>")
    return parts


def _figures_section(stage: StagedDataset) -> list[str]:
    pngs = sorted(stage.qc_dir.glob("*.png")) if stage.qc_dir.is_dir() else []
    if not pngs:
        return []
    return [
        "<h2>Figures</h2>",
        *[
            f"<figure><img alt='{_e(png.stem)}' src='{_png_data_uri(png)}'>"
            f"<figcaption>qc/{_e(png.name)}</figcaption></figure>"
            for png in pngs
        ],
    ]


def _processing_section(stage: StagedDataset) -> list[str]:
    parts = []
    rules = rule_runs(stage)
    if rules:
        parts.append(
            "<h2>How it was processed</h2><p class='sub'>Every step the last "
            "Snakemake invocation ran (a resumed run lists only what it still had to do), "
            "with its time and the resources it used.</p><table><tr><th>step</th>"
            "<th>status</th><th>seconds</th><th>CPU s</th><th>threads</th><th>memory limit MB</th>"
            "<th>max RSS MB</th></tr>"
        )
        for r in rules:
            cls = "pass" if r["status"] == "completed" else "fail"
            parts.append(
                f"<tr><td><code>{_e(r['rule'])}</code></td><td class='{cls}'>{_e(r['status'])}</td>"
                + "".join(
                    f"<td class='num'>{_e(r.get(k)) if r.get(k) is not None else 'n/a'}</td>"
                    for k in ("seconds", "cpu_s", "threads", "mem_mb", "max_rss_mb")
                )
                + "</tr>"
            )
        parts.append("</table>")
    workflow = stage.run_info.get("workflow")
    if workflow:
        parts.append(f"<p class='sub'>Workflow: {_e(workflow)}</p>")
    return parts


def _published_section(files: list[dict[str, Any]], content_digest: str) -> list[str]:
    total = sum(f["size"] for f in files)
    parts = [
        f"<h2>What was published</h2><p>{len(files)} files, {human_bytes(total)}; content digest "
        f"<code>{_e(content_digest)}</code> (sha256 over every file's path, size and sha256 and "
        "the experiment metadata: the version's identity).</p><table><tr><th>entry</th><th>files</th>"
        "<th>size</th><th>sha256</th></tr>"
    ]
    for entry, n, size, sha in _group_files(files):
        parts.append(
            f"<tr><td><code>{_e(entry)}</code></td><td class='num'>{n}</td>"
            f"<td class='num'>{human_bytes(size)}</td><td>"
            + (
                f"<code>{_e(sha)}</code>"
                if sha
                else "<span class='na'>per file in manifest.json</span>"
            )
            + "</td></tr>"
        )
    parts.append("</table>")
    return parts


def store_of(location: str, exp: dict[str, Any], dataset_id: str) -> str:
    """The store URL of a version's ``location`` (the part before ``<level>/<modality>/<id>/``)."""
    access = (exp.get("access") or {}).get("level", "")
    marker = f"/{access}/{exp.get('modality', '')}/{dataset_id}/"
    return location.split(marker)[0] if marker in location else location.rstrip("/")


def _access_section(
    exp: dict[str, Any],
    *,
    dataset_id: str,
    version: int,
    created: str,
    location: str,
    content_digest: str,
) -> list[str]:
    licence = exp.get("license", "")
    access = (exp.get("access") or {}).get("level", "")
    title = exp.get("title") or dataset_id
    creator = exp.get("support_unit") or "BINDS"
    store = store_of(location, exp, dataset_id)
    service = os.environ.get("BINDS_DATA_SERVICE_URL", "").rstrip("/")
    via = f"<p>Through the data service: <code>{_e(service)}</code></p>" if service else ""
    snippet = (
        f"binds show {dataset_id} --version {version} --store {store}\n"
        f"binds verify {dataset_id} --version {version} --store {store}\n\n"
        "# Python (pip install binds-pipelines; S3 credentials: the usual AWS settings)\n"
        "from pipelines import access\n"
        f'data = access.open("{dataset_id}", version={version}, store="{store}")'
    )
    return [
        "<h2>How to access it</h2>",
        f"<p>Location: <code>{_e(location)}</code> (access level <b>{_e(access)}</b>; licence "
        f"<b>{_e(licence)}</b>). Every file is listed with its size and sha256 in "
        "<code>manifest.json</code>; <code>metadata.jsonld</code> is schema.org / Croissant.</p>",
        via,
        f"<pre>{_e(snippet)}</pre>",
        "<h2>How to cite it</h2>",
        f"<p>{_e(creator)} ({_e(str(created)[:4])}). <i>{_e(title)}</i> [Data set, version {version}]. BINDS. "
        f"{_e(dataset_id)}, {_e(content_digest)}. Licence {_e(licence)}.</p>",
        "</body></html>\n",
    ]


def render_text_only(page: bytes) -> bytes:
    """The report without its images (for the rare version whose plots exceed the e-mail size)."""
    import re

    return re.sub(
        rb"<img [^>]*src='data:[^']*'>",
        b"<p class='na'>(figure left out: the report "
        b"would exceed 5 MB; it is in the version's qc/ folder)</p>",
        page,
    )
