"""The privacy gate: no direct identifier of a person enters the pipeline with human data.

Run by ``binds validate`` and by every run before any rule (:func:`pipelines.run.runner.check_run_dir`),
in every modality, when a sample's organism is human (``NCBITaxon:9606``) or the experiment says
``personal_data: true``.  It looks, with the detector of :mod:`pipelines.toolkit.privacy`, at

- experiment.yaml: the title, description and keywords, the sample ids, donor ids,
  descriptions and file lists, the operator and the requester (their own names are expected
  there: only other identifiers, or a name after a word like "patient", are refused), every
  text of the modality's block (paths, sheet names);
- the name of every file in the run folder (any depth, hidden files aside) and of the folder;
- instrument header text: MRC/CCP4 labels, the mzML header (``sourceFile`` names and
  locations, ``sample`` names, user and cv params before the first spectrum);
- table files (``.csv``, ``.tsv``, ``.txt``, ``.xlsx``: plate maps, annotations, sample sheets,
  plate-reader exports with their header blocks): column names and cells;
- ``.h5ad`` ``obs``: column names and their text values.

and, for human samples at access level ``open``, refuses the special-care fields (disease,
ethnicity, sex, development stage) and free-text descriptions (APPI 要配慮個人情報, GDPR Art. 9):
those datasets belong at ``consortium`` or ``restricted``.

Every refusal names the file, the place (YAML line and path, table line and column, header
label number) and the kind of identifier, **never the value**: the message is printed, kept in
the inbox state, in Prefect and in logs.  Each file is read up to a cap
(:data:`MAX_TEXT_BYTES`, :data:`MAX_HEADER_BYTES`); a bigger table is scanned up to the cap.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipelines.errors import Problem, yaml_path
from pipelines.toolkit import privacy
from pipelines.toolkit.inputs import RunFolder

# the gate's scope and the run ids live in the toolkit (modalities use them); kept importable here
from pipelines.toolkit.run_ids import HUMAN, RUN_IDS_FILE, applies, run_ids  # noqa: F401

#: Bytes of a table file that are scanned (plate maps, sheets and headers are far smaller;
#: a count matrix is scanned up to here).
MAX_TEXT_BYTES = 16 * 2**20
#: Bytes of an mzML's header (before the first spectrum) that are scanned.
MAX_HEADER_BYTES = 4 * 2**20
#: Cells of one .xlsx workbook / values of one .h5ad obs that are scanned.
MAX_CELLS = 2_000_000
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")
#: Sample fields that are special-care personal information for a human sample.
SPECIAL_CARE = ("disease", "self_reported_ethnicity", "sex", "development_stage", "description")
_UNKNOWN = {"unknown", "na", ""}

HINT_STAFF = (
    "for human data give staff ids or the lab's name here, and no contact details; "
    "a patient's identifiers never belong in a run folder"
)


def withhold(problem: Problem) -> Problem:
    """``problem`` with every quoted value that holds a direct identifier replaced by its kind:
    a schema error (``'Yamada Taro' is not allowed here``) must not print what it refuses."""
    det = privacy.detector()

    def swap(m: re.Match[str]) -> str:
        kinds = det.kinds(m.group(2), id_like=True)
        return f"(a value holding {kinds[0]}, not shown)" if kinds else m.group(0)

    message = _QUOTED.sub(swap, problem.message)
    hint = _QUOTED.sub(swap, problem.hint) if problem.hint else problem.hint
    if message == problem.message and hint == problem.hint:
        return problem
    return Problem(message, file=problem.file, where=problem.where, hint=hint)


_QUOTED = re.compile(r"""(['"])(.{1,300}?)\1""")


def load_experiment_withheld(run_dir: str | Path) -> Any:
    """:func:`pipelines.describe.metadata.load_experiment`, its problems passed through :func:`withhold`."""
    from pipelines.describe.metadata import load_experiment
    from pipelines.errors import InputError

    try:
        return load_experiment(run_dir)
    except InputError as err:
        raise InputError([withhold(p) for p in err.problems]) from None


def check_run(
    run_dir: str | Path, experiment: dict[str, Any], *, experiment_file: Path | None = None
) -> list[Problem]:
    """Every privacy problem of a run folder (empty when the gate does not apply or all is well)."""
    if not applies(experiment):
        return []
    run_dir = Path(run_dir)
    yaml_file = experiment_file or run_dir / "experiment.yaml"
    lines = _yaml_lines(yaml_file)
    findings = list(scan_experiment(experiment, file=yaml_file.name, lines=lines))
    folder = RunFolder(run_dir)
    files = folder.visible_files()
    if kinds := privacy.detector().kinds(run_dir.name, id_like=True):
        findings += [
            privacy.Finding(str(run_dir.parent), "the run folder's name", k) for k in kinds
        ]
    for n, path in enumerate(files, start=1):
        rel = folder.rel(path)
        name_kinds = privacy.detector().kinds(rel, id_like=True)
        # a file named after a person is named by its number: its name is what is protected
        shown = f"file {n} of the run folder" if name_kinds else rel
        findings += [privacy.Finding(shown, "its name", k) for k in name_kinds]
        if (
            folder.link_problem(path) is None
        ):  # a link out of the folder is not read (refused later)
            findings += scan_file(path, shown)
    problems = [
        f.problem(HINT_STAFF if f.where.startswith(privacy.STAFF_FIELDS) else privacy.HINT)
        for f in _unique(findings)
    ]
    return problems + special_care_problems(experiment, file=yaml_file.name, lines=lines)


def _unique(findings: Iterable[privacy.Finding]) -> list[privacy.Finding]:
    seen: set[privacy.Finding] = set()
    out = []
    for f in findings:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out


# --------------------------------------------------------------------------- experiment.yaml
def _yaml_lines(path: Path) -> Any:
    """The YAML node tree of experiment.yaml, for line numbers (None when unreadable)."""
    from pipelines.describe import metadata

    try:
        root, _ = metadata._parse_yaml(path.read_text(encoding="utf-8-sig"))
    except Exception:  # validated already; lines are a convenience
        return None
    return root


def _where(parts: list[Any], root: Any) -> str:
    from pipelines.describe import metadata

    path = yaml_path(parts)
    line = metadata._line_of(root, parts) if root is not None else None
    return f"line {line}: {path}" if line else path


def scan_experiment(
    experiment: dict[str, Any], *, file: str = "experiment.yaml", lines: Any = None
) -> Iterator[privacy.Finding]:
    """Findings in the text fields of experiment.yaml (see the module's list), each placed by
    its YAML path and, with ``lines`` (the node tree), its line."""
    return privacy.experiment_findings(experiment, file=file, where=lambda p: _where(p, lines))


def special_care_problems(
    experiment: dict[str, Any], *, file: str = "experiment.yaml", lines: Any = None
) -> list[Problem]:
    """Human samples at access level ``open``: refused, naming the special-care fields given.

    Pseudonymised patient data are still personal data (GDPR recital 26; APPI 仮名加工情報 may
    not be given to third parties), and disease, ethnicity, sex, development stage and free text
    about a patient are special-care / special-category data: such datasets belong at
    ``consortium`` or ``restricted``.  ``personal_data: false`` says no person is behind the
    human samples (a cell line such as HEK293, synthetic data): then ``open`` is allowed.
    """
    access = experiment.get("access")
    level = access.get("level") if isinstance(access, dict) else None
    if level != "open" or experiment.get("personal_data") is False:
        return []
    samples = experiment.get("samples") if isinstance(experiment.get("samples"), list) else []
    human = [
        (i, s)
        for i, s in enumerate(samples or [])
        if isinstance(s, dict) and s.get("organism") == HUMAN
    ]
    if not human and experiment.get("personal_data") is not True:
        return []
    hint = (
        "set access.level to consortium or restricted (patients' data, even pseudonymised, are "
        "personal data; health, sex, ethnicity and free text are special-care data under APPI "
        "and GDPR Art. 9); for a cell line or synthetic samples say personal_data: false"
    )
    problems = []
    for i, s in human:
        given = [k for k in SPECIAL_CARE if str(s.get(k) or "").strip().lower() not in _UNKNOWN]
        what = f": special-care fields {', '.join(given)}" if given else ""
        problems.append(
            Problem(
                f"personal data of a human sample at access level open{what}",
                file=file,
                where=_where(["samples", i], lines),
                hint=hint,
            )
        )
    if not human:  # personal_data: true without a human sample
        problems.append(
            Problem(
                "personal data (personal_data: true) at access level open",
                file=file,
                where=_where(["access", "level"], lines),
                hint=hint,
            )
        )
    if experiment.get("description"):
        problems.append(
            Problem(
                "free-text description of a dataset of personal data at access level open",
                file=file,
                where=_where(["description"], lines),
                hint=hint,
            )
        )
    return problems


# --------------------------------------------------------------------------- files
def scan_file(path: Path, shown: str) -> list[privacy.Finding]:
    """Findings in the text a file carries about its sample (by its kind); [] for other files."""
    name = path.name.lower()
    try:
        if name.endswith(TABLE_SUFFIXES):
            return scan_table(path, shown)
        if name.endswith(".xlsx"):
            return scan_workbook(path, shown)
        if re.search(r"\.(mrc|map|ccp4|rec|st|mrcs)(\.gz|\.bz2)?$", name):
            return scan_mrc_labels(path, shown)
        if re.search(r"\.mzml(\.idx)?(\.gz)?$", name):
            return scan_mzml_header(path, shown)
        if name.endswith(".h5ad"):
            return scan_h5ad_obs(path, shown)
    except (OSError, ValueError, EOFError, UnicodeError):
        return []  # unreadable: the modality's own checks say so
    return []


def _scan_cells(
    rows: Iterable[list[Any]], shown: str, *, header_row: int | None = None
) -> list[privacy.Finding]:
    det = privacy.detector()
    out: list[privacy.Finding] = []
    header: list[str] = []
    for lineno, row in enumerate(rows, start=1):
        cells = ["" if c is None else str(c) for c in row]
        if lineno == (header_row or 1):
            header = cells
            out += privacy.scan_columns(cells, file=shown, what=f"line {lineno}, column")
            if any(det.column_kind(c) for c in cells):
                continue
        for col, cell in enumerate(cells, start=1):
            if not cell.strip() or _plain_number(cell):
                continue
            for kind in det.kinds(cell):
                label = header[col - 1] if col - 1 < len(header) else ""
                safe = label if label and not det.kinds(label, id_like=True) else str(col)
                out.append(privacy.Finding(shown, f"line {lineno}, column {safe}", kind))
    return out


def _plain_number(cell: str) -> bool:
    """A measured value (skipped): not a phone-like 0-led digit run nor a 12-digit number."""
    text = cell.strip()
    if text[:1] in "0+" and len(text) >= 9:
        return False
    if text.isdigit() and len(text) in (8, 12):  # a date or a My Number
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def scan_table(path: Path, shown: str) -> list[privacy.Finding]:
    with path.open("rb") as fh:
        raw = fh.read(MAX_TEXT_BYTES)
    text = raw.decode("utf-8-sig", errors="replace")
    if len(raw) == MAX_TEXT_BYTES:
        text = text.rsplit("\n", 1)[0]
    sample = text[:65536]
    delim = "\t" if sample.count("\t") > sample.count(",") else ","
    if path.name.lower().endswith(".tsv"):
        delim = "\t"
    rows = csv.reader(io.StringIO(text), delimiter=delim)
    return _scan_cells(rows, shown)


def scan_workbook(path: Path, shown: str) -> list[privacy.Finding]:
    import openpyxl

    out: list[privacy.Finding] = []
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    budget = MAX_CELLS
    try:
        for ws in wb.worksheets:
            rows = []
            for row in ws.iter_rows(values_only=True):
                budget -= len(row)
                if budget < 0:
                    break
                rows.append(list(row))
            sheet_kinds = privacy.detector().kinds(ws.title, id_like=True)
            sheet = "sheet " + (str(wb.worksheets.index(ws) + 1) if sheet_kinds else repr(ws.title))
            out += [privacy.Finding(shown, f"{sheet} (its name)", k) for k in sheet_kinds]
            out += [
                privacy.Finding(f.file, f"{sheet}, {f.where}", f.kind)
                for f in _scan_cells(rows, shown)
            ]
    finally:
        wb.close()
    return out


def _open_compressed(path: Path):
    with path.open("rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic == b"BZh":
        return bz2.open(path, "rb")
    return path.open("rb")


def scan_mrc_labels(path: Path, shown: str) -> list[privacy.Finding]:
    """The ten 80-character labels of an MRC/CCP4 header (bytes 224-1023)."""
    with _open_compressed(path) as fh:
        head = fh.read(1024)
    if len(head) < 1024:
        return []
    out = []
    for i in range(10):
        label = head[224 + 80 * i : 224 + 80 * (i + 1)].decode("latin-1").strip(" \x00")
        out += [
            privacy.Finding(shown, f"header label {i + 1}", k)
            for k in privacy.detector().kinds(label)
        ]
    return out


_ATTR = re.compile(rb'\b(name|value|location|id|accession)="([^"]{1,2000})"')
_HEX = re.compile(r"^[0-9a-fA-F]{32,}$")


def scan_mzml_header(path: Path, shown: str) -> list[privacy.Finding]:
    """Attribute values of an mzML's header: sourceFile names and locations, sample names,
    cv/user params (contact, comments), up to the first spectrum or chromatogram."""
    with _open_compressed(path) as fh:
        head = fh.read(MAX_HEADER_BYTES)
    end = min(
        (i for i in (head.find(b"<spectrumList"), head.find(b"<chromatogramList")) if i >= 0),
        default=len(head),
    )
    head = head[:end]
    det = privacy.detector()
    out = []
    for m in _ATTR.finditer(head):
        attr, value = m.group(1).decode(), m.group(2).decode("utf-8", "replace")
        if attr == "accession" or _HEX.match(value) or re.fullmatch(r"[A-Z]+:\d+", value):
            continue  # ontology accessions and checksums
        element = head.rfind(b"<", 0, m.start())
        tag = re.match(rb"<(\w+)", head[element : element + 40])
        line = head.count(b"\n", 0, m.start()) + 1
        where = f"<{tag.group(1).decode() if tag else '?'}> {attr}, line {line}"
        out += [
            privacy.Finding(shown, where, k)
            for k in det.kinds(value, id_like=attr in ("name", "id", "location"))
        ]
    return out


def scan_h5ad_obs(path: Path, shown: str) -> list[privacy.Finding]:
    """Column names and text values of an .h5ad's ``obs`` (datasets stored in the file only:
    external storage and virtual datasets are not read)."""
    import h5py

    out: list[privacy.Finding] = []
    det = privacy.detector()
    with h5py.File(path, "r") as f:
        obs = f.get("obs")
        if not isinstance(obs, h5py.Group):
            return []
        columns = [k for k in obs if not k.startswith("_")]
        out += privacy.scan_columns(columns, file=shown, what="obs column")
        budget = MAX_CELLS
        for n, key in enumerate(columns, start=1):
            item = obs.get(key, getlink=False)
            ds = item.get("categories") if isinstance(item, h5py.Group) else item
            if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "OSU":
                continue
            if ds.is_virtual or ds.external or ds.size > budget:
                continue
            budget -= ds.size
            label = key if not det.kinds(key, id_like=True) else str(n)
            kinds: set[str] = set()
            for v in ds[()].ravel():
                text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                kinds.update(det.kinds(text, id_like=key in ("donor_id", "sample_id", "sample")))
            out += [privacy.Finding(shown, f"obs column {label}", k) for k in sorted(kinds)]
    return out
