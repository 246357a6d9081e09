"""Readers of the screening inputs, each returning plain pandas/numpy and raising
:class:`~pipelines.errors.InputError` with the file, plate and well of every problem.

Inputs (see ``docs/formats/screening.md``):

* cellHTS2 screens: ``Platelist.txt``, ``Plateconf.txt``, ``Screenlog.txt``, ``Description.txt``,
  the annotation file, and one raw file per plate/replicate/channel (3 tab-separated columns
  plate-id, well, value - or a reader grid export);
* plate-reader grid exports (8x12, 16x24, 32x48; CSV/TSV/TXT/XLSX; CRLF; UTF-8 or ISO-8859-1);
* long tables (plate, well, value[, replicate, channel]) with a plate map.
"""

from __future__ import annotations

import configparser
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.errors import InputError, Problem
from pipelines.modalities.screening.plates import ROW_LETTERS, PlateFormat, parse_well, parse_wells

# a problem list longer than this helps nobody: the first ones show the pattern
MAX_PROBLEMS = 20
_MISSING = {"", "na", "nan", "n/a", "-", "--", "null", "none"}
TEXT_EXTENSIONS = (".csv", ".tsv", ".txt", ".tab")
TABLE_EXTENSIONS = (*TEXT_EXTENSIONS, ".xlsx", ".parquet")


def rel(path: Path, root: Path | None) -> str:
    """File name as the user knows it: relative to the run folder when inside it."""
    try:
        return path.relative_to(root).as_posix() if root else path.name
    except ValueError:
        return str(path)


def read_text(path: Path) -> str:
    """Text of a reader export: UTF-8 (with or without BOM), else ISO-8859-1, which decodes any
    byte (Fusion and other Windows readers write Latin-1); line endings normalised."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def to_float(cell: str) -> float | None:
    """A reading as float; NaN for an empty/NA cell; None if it is not a number."""
    s = str(cell).strip()
    if s.lower() in _MISSING:
        return math.nan
    try:
        return float(s)
    except ValueError:
        pass
    # decimal comma (German/French exports): only when it is the only separator
    if s.count(",") == 1 and "." not in s:
        try:
            return float(s.replace(",", "."))
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- cellHTS2 metadata
def read_plate_list(path: Path, *, root: Path | None = None) -> pd.DataFrame:
    """cellHTS2 plate list: columns Filename, Plate, Replicate and optional Channel (default 1)."""
    name = rel(path, root)
    df = _read_tsv(path, name)
    cols = {c.lower(): c for c in df.columns}
    missing = [c for c in ("filename", "plate", "replicate") if c not in cols]
    if missing:
        raise InputError(
            Problem(
                f"missing column(s) {', '.join(missing)}",
                file=name,
                where="header",
                hint="a cellHTS2 plate list has the tab-separated header Filename Plate Replicate [Channel]",
            )
        )
    out = pd.DataFrame({"file": df[cols["filename"]].astype(str).str.strip()})
    problems: list[Problem] = []
    for key in ("plate", "replicate", "channel"):
        if key not in cols:
            out[key] = 1
            continue
        num = pd.to_numeric(df[cols[key]], errors="coerce")
        bad = num.isna() | (num < 1) | (num != num.round())
        for i in np.flatnonzero(bad.to_numpy())[:MAX_PROBLEMS]:
            problems.append(
                Problem(
                    f"{cols[key]} {df[cols[key]].iloc[i]!r} is not a positive integer",
                    file=name,
                    where=f"line {i + 2}",
                )
            )
        out[key] = num.fillna(0).astype(np.int64)
    dup = out.duplicated(["plate", "replicate", "channel"], keep=False)
    for i in np.flatnonzero(dup.to_numpy())[:MAX_PROBLEMS]:
        r = out.iloc[i]
        problems.append(
            Problem(
                f"plate {r.plate}, replicate {r.replicate}, channel {r.channel} is listed more than once",
                file=name,
                where=f"line {i + 2}",
                hint="each plate/replicate/channel needs exactly one file",
            )
        )
    if problems:
        raise InputError(problems)
    return out


#: Compound identifier columns of a plate layout: key -> (wells column, shape, what to write).
COMPOUND_ID_COLUMNS = {
    "chebi": ("compound_chebi", re.compile(r"CHEBI:[1-9]\d*"), "a ChEBI id like CHEBI:15738"),
    "pubchem_cid": (
        "compound_pubchem_cid",
        re.compile(r"[1-9]\d*"),
        "a positive integer, e.g. 44259",
    ),
    "inchikey": (
        "compound_inchikey",
        re.compile(r"[A-Z]{14}-[A-Z]{10}-[A-Z]"),
        "a standard InChIKey like HKSZLNNOFSGOKW-FYTWVXJKSA-N (27 characters)",
    ),
}


def _compound_ids(
    col: pd.Series,
    key: str,
    wells: pd.Series,
    *,
    name: str,
    header: str,
    problems: list[Problem],
) -> pd.Series:
    """One identifier column, checked; spreadsheets write a CID as 44259.0 and ChEBI as 'chebi:1'."""
    _, shape, hint = COMPOUND_ID_COLUMNS[key]
    text = col.astype(str).str.strip()
    if key == "chebi":
        text = text.str.replace(r"(?i)^chebi:", "CHEBI:", regex=True)
    if key == "pubchem_cid":
        text = text.str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
    missing = text.str.lower().isin(_MISSING).to_numpy()
    ok = text.str.fullmatch(shape.pattern).to_numpy()
    for i in np.flatnonzero(~missing & ~ok)[:MAX_PROBLEMS]:
        problems.append(
            Problem(
                f"{text.iloc[i]!r} is not {hint.split(' like ')[0].split(',')[0]}",
                file=name,
                where=f"line {i + 2}, well {wells.iloc[i]}, column {header}",
                hint=f"write {hint}, or leave the cell empty",
            )
        )
    values = text.where(~missing, None)
    if key == "pubchem_cid":
        return pd.to_numeric(values.where(ok, None), errors="coerce").astype("Int64")
    return values


@dataclass(slots=True)
class PlateConfig:
    """A cellHTS2 plate configuration: declared format, plate count, and ordered content rules."""

    wells: int | None = None
    plates: int | None = None
    rules: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (plate pattern, well pattern, content)

    def contents(self, plates: np.ndarray, fmt: PlateFormat) -> np.ndarray:
        """Content of every well, shape (len(plates), rows, cols); later rules override earlier ones."""
        wells = fmt.well_names()
        out = np.full((len(plates), fmt.wells), "sample", dtype=object)
        plate_text = np.array([str(int(p)) for p in plates])
        for plate_pat, well_pat, content in self.rules:
            pmask = _match(plate_pat, plate_text)
            wmask = _match(well_pat, wells)
            if pmask.any() and wmask.any():
                out[np.ix_(pmask, wmask)] = content
        return out.reshape(len(plates), fmt.rows, fmt.cols)


def _match(pattern: str, values: np.ndarray) -> np.ndarray:
    """cellHTS2 pattern: '*' matches everything, otherwise a regular expression over the whole
    value (anchored, so plate '1' does not also select plates 10-19)."""
    pattern = pattern.strip()
    if pattern in ("*", ""):
        return np.ones(len(values), dtype=bool)
    rx = re.compile(rf"^(?:{pattern})$", re.IGNORECASE)
    return np.array([bool(rx.match(v)) for v in values])


def read_plate_config(path: Path, *, root: Path | None = None) -> PlateConfig:
    """cellHTS2 plate configuration (the 'new' format: Wells:/Plates: lines, then Plate Well Content)."""
    name = rel(path, root)
    lines = read_text(path).split("\n")
    conf = PlateConfig()
    problems: list[Problem] = []
    header_at = None
    for i, line in enumerate(lines):
        key, _, value = line.partition(":")
        if key.strip().lower() in ("wells", "plates") and value.strip():
            try:
                setattr(conf, key.strip().lower(), int(value.strip()))
            except ValueError:
                problems.append(
                    Problem(
                        f"{key.strip()}: {value.strip()!r} is not an integer",
                        file=name,
                        where=f"line {i + 1}",
                    )
                )
            continue
        cells = [c.strip() for c in line.split("\t")]
        if [c.lower() for c in cells[:3]] == ["plate", "well", "content"]:
            header_at = i
            break
    if header_at is None:
        problems.append(
            Problem(
                "no 'Plate Well Content' table",
                file=name,
                hint="after the Wells: and Plates: lines, a tab-separated table with header Plate, Well, Content",
            )
        )
        raise InputError(problems)
    if conf.wells is not None and conf.wells not in (96, 384, 1536):
        problems.append(
            Problem(
                f"Wells: {conf.wells} is not a plate format",
                file=name,
                where="Wells",
                hint="96, 384 or 1536",
            )
        )
    for i, line in enumerate(lines[header_at + 1 :], start=header_at + 2):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) < 3 or not cells[2]:
            problems.append(
                Problem(
                    "expected Plate, Well and Content separated by tabs",
                    file=name,
                    where=f"line {i}",
                )
            )
            continue
        for pat in cells[:2]:
            if pat != "*":
                try:
                    re.compile(pat)
                except re.error as err:
                    problems.append(
                        Problem(
                            f"pattern {pat!r} is not a valid regular expression ({err})",
                            file=name,
                            where=f"line {i}",
                        )
                    )
        conf.rules.append((cells[0], cells[1], cells[2]))
    if problems:
        raise InputError(problems)
    return conf


def read_screen_log(path: Path, *, root: Path | None = None) -> pd.DataFrame:
    """Measurements to exclude: plate, replicate, channel (0 = all channels), well, comment.

    cellHTS2 semantics: a screen-log row whose Flag is NA excludes that measurement.
    """
    name = rel(path, root)
    df = _read_tsv(path, name)
    cols = {c.lower(): c for c in df.columns}
    missing = [c for c in ("plate", "sample", "well", "flag") if c not in cols]
    if missing:
        raise InputError(
            Problem(
                f"missing column(s) {', '.join(missing)}",
                file=name,
                where="header",
                hint="a cellHTS2 screen log has the header Plate Sample Well Flag [Channel] [Comment]",
            )
        )
    flags = df[cols["flag"]].astype(str).str.strip().str.upper()
    keep = flags.isin(["NA", "NAN", ""])
    out = pd.DataFrame(
        {
            "plate": pd.to_numeric(df[cols["plate"]], errors="coerce"),
            "replicate": pd.to_numeric(df[cols["sample"]], errors="coerce"),
            "channel": pd.to_numeric(df[cols["channel"]], errors="coerce")
            if "channel" in cols
            else 0,
            "well": df[cols["well"]].astype(str).str.strip(),
            "comment": df[cols["comment"]].astype(str) if "comment" in cols else "",
        }
    )[keep.to_numpy()]
    bad = out[["plate", "replicate"]].isna().any(axis=1).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            Problem(
                "Plate and Sample must be integers", file=name, where=f"line {out.index[i] + 2}"
            )
        )
    out[["plate", "replicate", "channel"]] = out[["plate", "replicate", "channel"]].astype(np.int64)
    return out.reset_index(drop=True)


def read_description(path: Path) -> dict[str, dict[str, str]]:
    """cellHTS2 Description.txt as {section: {key: value}} (keys as written)."""
    parser = configparser.ConfigParser(delimiters=(":",), interpolation=None, strict=False)
    parser.optionxform = str  # keep 'plateList' as written
    try:
        parser.read_string(read_text(path))
    except configparser.Error as err:
        raise InputError(
            Problem(
                f"not an INI-like description: {err}",
                file=path.name,
                hint="sections like [Screen description] with 'Key: value' lines",
            )
        ) from None
    return {s: {k: v.strip() for k, v in parser.items(s)} for s in parser.sections()}


def read_annotation(path: Path, *, root: Path | None = None) -> pd.DataFrame:
    """Well annotation: Plate, Well and identifier columns (strings, 'NA' -> missing)."""
    name = rel(path, root)
    df = _read_tsv(path, name)
    cols = {c.lower(): c for c in df.columns}
    if "plate" not in cols or "well" not in cols:
        raise InputError(
            Problem(
                "missing column Plate or Well",
                file=name,
                where="header",
                hint="an annotation file is tab-separated with Plate, Well and identifier columns",
            )
        )
    out = df.rename(columns={cols["plate"]: "plate", cols["well"]: "well"})
    out["plate"] = pd.to_numeric(out["plate"], errors="coerce")
    out = out.replace({"NA": None, "": None})
    return out


def _read_tsv(path: Path, name: str, **_: object) -> pd.DataFrame:
    """A tab-separated table as strings.  Trailing empty cells beyond the header are dropped:
    cellHTS2's own KcViab annotation ends 800 lines with a stray tab."""
    lines = [ln for ln in read_text(path).split("\n") if ln.strip()]
    if not lines:
        raise InputError(
            Problem(
                "the file is empty", file=name, hint="expected a tab-separated table with a header"
            )
        )
    header = [c.strip() for c in lines[0].split("\t")]
    while header and not header[-1]:
        header.pop()
    rows: list[list[str]] = []
    for i, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split("\t")]
        while len(cells) > len(header) and not cells[-1]:
            cells.pop()
        if len(cells) > len(header):
            raise InputError(
                Problem(
                    f"{len(cells)} columns, the header has {len(header)}",
                    file=name,
                    where=f"line {i}",
                    hint="columns are separated by single tabs",
                )
            )
        rows.append(cells + [""] * (len(header) - len(cells)))
    return pd.DataFrame(rows, columns=header, dtype=object)


# --------------------------------------------------------------------------- raw plate files
@dataclass(slots=True)
class PlateReading:
    """Readings of one raw file: ``grids`` (one (rows, cols) array per channel) or ``long``
    (well -> value, from a cellHTS2 3-column file), plus header facts."""

    grids: list[np.ndarray] = field(default_factory=list)
    long: pd.DataFrame | None = None
    facts: dict[str, str] = field(default_factory=dict)


def read_plate_file(path: Path, *, plate: int, root: Path | None = None) -> PlateReading:
    """One raw plate file: a cellHTS2 3-column file (plate-id, well, value) or a grid export.

    Raises InputError naming the file, plate and well of non-numeric readings, and saying what
    was expected when neither layout is found.
    """
    name = rel(path, root)
    if not path.is_file():
        raise InputError(
            Problem(
                "file not found",
                file=name,
                where=f"plate {plate}",
                hint="check the file name in the plate list (names are case-sensitive)",
            )
        )
    if path.suffix.lower() == ".xlsx":
        rows = _xlsx_rows(path, name)
        try:
            return _grids_from_rows(rows, name=name, plate=plate, facts={})
        except _NoGrid:
            header = next((r for r in rows if any(c for c in r)), [])
            raise InputError(
                Problem(
                    "no plate grid and no plate, well and value columns found",
                    file=name,
                    where=f"plate {plate}, first row: {_short_cells(header)}",
                    hint="a grid has a header row 1..12 (or 1..24, 1..48) and rows A.. of readings; a long "
                    f"table has one row per well with columns {_LONG_COLUMNS_HINT}",
                )
            ) from None
    text = read_text(path)
    lines = [ln for ln in text.split("\n") if ln.strip()]
    long = _long_three_columns(lines, name=name, plate=plate)
    if long is not None:
        return PlateReading(long=long)
    facts = _header_facts(lines)
    # the likeliest separator first: splitting a 384-well export three ways costs more than parsing it
    for sep in sorted(("\t", ",", ";"), key=lambda c: -text.count(c)):
        rows = [[c.strip() for c in ln.split(sep)] for ln in lines]
        try:
            return _grids_from_rows(rows, name=name, plate=plate, facts=facts)
        except _NoGrid:
            continue
    raise InputError(
        Problem(
            "no plate grid and no 'plate-id, well, value' lines found",
            file=name,
            where=f"plate {plate}",
            hint="a grid has a header row 1..12 (or 1..24, 1..48) and rows A.. of readings; "
            "a cellHTS2 raw file has 3 tab-separated columns; a long table has one row per well with "
            f"columns {_LONG_COLUMNS_HINT}",
        )
    )


def _short_cells(cells: list[str], n: int = 6) -> str:
    """The first cells of a row, each cut short: enough to recognise it, not the file's content."""
    shown = [repr(c[:20] + ("..." if len(c) > 20 else "")) for c in cells[:n]]
    return ", ".join(shown) + (", ..." if len(cells) > n else "") if shown else "(empty)"


def _xlsx_rows(path: Path, name: str) -> list[list[str]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many types for a broken file
        raise InputError(Problem(f"cannot open as an XLSX workbook: {err}", file=name)) from None
    rows: list[list[str]] = []
    for ws in wb.worksheets:
        for row in ws.iter_rows(values_only=True):
            rows.append(
                [
                    "" if v is None else (repr(v) if isinstance(v, float) else str(v)).strip()
                    for v in row
                ]
            )
        rows.append([])  # a sheet boundary ends a grid
    wb.close()
    return rows


def _long_three_columns(lines: list[str], *, name: str, plate: int) -> pd.DataFrame | None:
    """cellHTS2 raw file: 'plate-id<TAB>well<TAB>value' lines (an optional header line is
    skipped); None if the file is not that layout."""

    def is_data(line: str) -> bool:
        cells = line.split("\t")
        return len(cells) == 3 and parse_well(cells[1]) is not None

    if not lines:
        return None
    if is_data(lines[0]):
        skip = 0
    elif len(lines) > 1 and len(lines[0].split("\t")) == 3 and is_data(lines[1]):
        skip = 1
    else:
        return None
    problems: list[Problem] = []
    wells, values = [], []
    for line_no, line in enumerate(lines[skip:], start=skip + 1):
        cells = line.split("\t")
        if len(cells) != 3:
            problems.append(
                Problem(
                    f"expected 3 tab-separated columns, got {len(cells)}",
                    file=name,
                    where=f"plate {plate}, line {line_no}",
                )
            )
            continue
        well = cells[1].strip()
        value = to_float(cells[2])
        if value is None:
            problems.append(
                Problem(
                    f"reading {cells[2].strip()!r} is not a number",
                    file=name,
                    where=f"plate {plate}, well {well} (line {line_no})",
                    hint="write a number, or leave it empty / NA for a missing reading",
                )
            )
        wells.append(well)
        values.append(math.nan if value is None else value)
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise InputError(problems)
    return pd.DataFrame({"well": wells, "value": np.asarray(values, dtype=np.float64)})


def _header_facts(lines: list[str]) -> dict[str, str]:
    """'Key: value' pairs of a reader header (Fusion: 'Plate Size:, 96', 'Software:, Fusion 3.50')."""
    facts: dict[str, str] = {}
    for ln in lines[:40]:
        cells = [c.strip() for c in ln.split(",")]
        for k, v in zip(cells[::2], cells[1::2], strict=False):
            if (
                k.endswith(":")
                and v
                and k[:-1].lower()
                in (
                    "plate size",
                    "software",
                    "detection mode",
                    "plate type",
                    "assay",
                    "instrument serial",
                )
            ):
                facts[k[:-1].lower().replace(" ", "_")] = v
    return facts


class _NoGrid(Exception):
    pass


_FORMAT_COLS = {12: 8, 24: 16, 48: 32}


def _grids_from_rows(
    rows: list[list[str]], *, name: str, plate: int, facts: dict[str, str]
) -> PlateReading:
    """Find every plate grid in a table of cells: a header row whose cells are 1..N (N = 12, 24,
    48) followed by N-format rows labelled A, B, ...; each further grid is one more channel."""
    grids: list[np.ndarray] = []
    problems: list[Problem] = []
    i = 0
    while i < len(rows):
        start, ncols = _grid_header(rows[i])
        if ncols == 0:
            i += 1
            continue
        nrows = _FORMAT_COLS[ncols]
        body = rows[i + 1 : i + 1 + nrows]
        got_rows = _labelled_rows(body, start=start, nrows=nrows)
        if got_rows == 0:
            i += 1
            continue
        where = f"plate {plate}"
        if got_rows != nrows:
            problems.append(
                _truncated_grid(
                    got_rows, ncols, name=name, where=f"{where}, channel {len(grids) + 1}"
                )
            )
            break
        grid, found = _grid_values(body, start=start, ncols=ncols, name=name, where=where)
        problems += found
        if len(problems) >= MAX_PROBLEMS:
            break
        after = rows[i + 1 + nrows] if i + 1 + nrows < len(rows) else []
        if _is_next_row(after, start=start, nrows=nrows):
            problems.append(
                Problem(
                    f"row {ROW_LETTERS[nrows]} is outside a {nrows} x {ncols} plate",
                    file=name,
                    where=f"plate {plate}, row {ROW_LETTERS[nrows]}",
                    hint="wells outside the plate: check the plate format",
                )
            )
        grids.append(grid)
        i += 1 + nrows
    if problems:
        raise InputError(problems[:MAX_PROBLEMS])
    if not grids:
        raise _NoGrid
    return PlateReading(grids=grids, facts=facts)


def _labelled_rows(body: list[list[str]], *, start: int, nrows: int) -> int:
    """How many rows of ``body`` carry the row letters A, B, ... in order, in column ``start - 1``."""
    labels = [r[start - 1].strip().upper() if len(r) >= start and start > 0 else "" for r in body]
    got_rows = 0
    for lab, exp in zip(labels, ROW_LETTERS[:nrows], strict=False):
        if lab != exp:
            break
        got_rows += 1
    return got_rows


def _truncated_grid(got_rows: int, ncols: int, *, name: str, where: str) -> Problem:
    nrows = _FORMAT_COLS[ncols]
    wells = got_rows * ncols
    return Problem(
        f"grid has {got_rows} x {ncols} = {wells} wells; a {ncols}-column plate has {nrows} rows "
        f"({nrows * ncols} wells)",
        file=name,
        where=f"{where}, row {ROW_LETTERS[got_rows] if got_rows < len(ROW_LETTERS) else got_rows + 1}",
        hint="the export is truncated or not a 96/384/1536-well plate",
    )


def _grid_values(
    body: list[list[str]], *, start: int, ncols: int, name: str, where: str
) -> tuple[np.ndarray, list[Problem]]:
    """The readings of one grid (NaN where missing) and the problems of its cells."""
    grid = np.full((len(body), ncols), np.nan)
    problems: list[Problem] = []
    for r, row in enumerate(body):
        vals = row[start : start + ncols]
        if len(vals) < ncols:
            problems.append(
                Problem(
                    f"row {ROW_LETTERS[r]} has {len(vals)} readings, expected {ncols}",
                    file=name,
                    where=f"{where}, row {ROW_LETTERS[r]}",
                )
            )
            continue
        try:  # fast path: a row of plain numbers, parsed by numpy in one call
            grid[r] = np.array(vals, dtype=np.float64)
            vals = []
        except ValueError:
            pass  # empty cells, NA, decimal commas or text: cell by cell, with a precise error
        for c, cell in enumerate(vals):
            v = to_float(cell)
            if v is None:
                problems.append(
                    Problem(
                        f"reading {cell!r} is not a number",
                        file=name,
                        where=f"{where}, well {ROW_LETTERS[r]}{c + 1:02d}",
                        hint="write a number, or leave it empty / NA for a missing reading",
                    )
                )
            else:
                grid[r, c] = v
        extra = [x for x in row[start + ncols :] if x.strip()]
        if extra and all(to_float(x) is not None for x in extra):
            problems.append(
                Problem(
                    f"row {ROW_LETTERS[r]} has {ncols + len(extra)} readings, the header {ncols} columns",
                    file=name,
                    where=f"{where}, row {ROW_LETTERS[r]}",
                    hint="wells outside the plate: check the plate format",
                )
            )
    return grid, problems


def _is_next_row(after: list[str], *, start: int, nrows: int) -> bool:
    """Whether the row below a grid of ``nrows`` rows is labelled with the next letter and holds
    readings: a taller plate than the header says."""
    return (
        len(after) >= start
        and start > 0
        and after[start - 1].strip().upper() == ROW_LETTERS[nrows]
        and any(to_float(x) is not None and not math.isnan(to_float(x) or 0) for x in after[start:])
    )


def _grid_header(cells: list[str]) -> tuple[int, int]:
    """(index of the '1' cell, number of columns) if ``cells`` is a grid header 1..N, else (0, 0)."""
    stripped = [c.strip() for c in cells]
    for start, c in enumerate(stripped):  # noqa: B007 (start is the result, read after the loop)
        if c == "1":
            break
    else:
        return 0, 0
    if start == 0:
        return 0, 0
    n = 0
    for c in stripped[start:]:
        if c == str(n + 1):
            n += 1
        elif c == "" or c is None:
            break
        else:
            n = -1
            break
    if n in _FORMAT_COLS and not any(x for x in stripped[start + n :]):
        return start, n
    return 0, 0


# --------------------------------------------------------------------------- long tables
# column names after normalisation (lower case, runs of spaces / punctuation as one '_'), so
# 'Plate ID', 'plate-id' and 'PLATE_ID' are one name; readers and LIMS exports name the reading
# after its unit (RFU, RLU, OD) as often as 'Value'
_ALIASES = {
    "plate": (
        "plate",
        "plate_id",
        "plateid",
        "barcode",
        "plate_barcode",
        "plate_name",
        "plate_number",
        "plate_no",
        "assay_plate",
        "assay_plate_barcode",
        "plate_label",
    ),
    "well": ("well", "well_id", "wellid", "position", "well_position", "well_name", "wells"),
    "value": (
        "value",
        "signal",
        "readout",
        "intensity",
        "raw",
        "measurement",
        "rlu",
        "rfu",
        "od",
        "abs",
        "absorbance",
        "fluorescence",
        "luminescence",
        "reading",
        "result",
        "raw_value",
        "raw_data",
    ),
    "replicate": ("replicate", "rep", "replicate_id"),
    "channel": ("channel", "ch"),
    "sample_id": ("sample_id", "sample", "id", "reagent", "reagent_id"),
    "compound": ("compound", "compound_id", "compound_name", "drug"),
    "chebi": ("chebi", "chebi_id", "compound_chebi"),
    "pubchem_cid": ("pubchem_cid", "cid", "pubchem", "pubchem_compound_id", "compound_pubchem_cid"),
    "inchikey": ("inchikey", "inchi_key", "standard_inchikey", "compound_inchikey"),
    "concentration": ("concentration", "conc", "dose"),
    "content": ("content", "control", "control_type", "type", "role", "well_type", "well_content"),
}
_LONG_COLUMNS_HINT = (
    "plate (or plate id, barcode), well (A1 or A01) and value (or signal, RFU, RLU, OD)"
)


def column_key(name: object) -> str:
    """A column name as the aliases spell it: 'Plate ID ' -> 'plate_id', 'Well-Position' -> 'well_position'."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def _read_xlsx(path: Path, **kwargs: object) -> pd.DataFrame:
    """The first sheet of a workbook as a DataFrame (calamine when installed: ~50x faster than
    openpyxl on a 61k-row export)."""
    try:
        import python_calamine  # noqa: F401

        engine = "calamine"
    except ImportError:  # pragma: no cover - a dependency; openpyxl reads the same files, slowly
        engine = "openpyxl"
    return pd.read_excel(path, engine=engine, **kwargs)


def table_columns(path: Path) -> list[str]:
    """The header of a table file (normalised names), reading no more than its first row;
    [] when it cannot be read as a table.  Cached per file version: resolving the inputs asks
    several times, and a workbook's first row costs a parse of its sheet (~0.5 s for 61k rows)."""
    try:
        st = path.stat()
    except OSError:
        return []
    return list(_table_columns(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=1024)
def _table_columns(name: str, _mtime_ns: int, _size: int) -> tuple[str, ...]:
    path = Path(name)
    try:
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        elif suffix == ".xlsx":
            names = list(_read_xlsx(path, nrows=0).columns)
        else:
            with open(path, "rb") as fh:
                first = fh.readline(65536)
            text = (
                first.decode("utf-8-sig", errors="replace") if not first.startswith(b"\xff") else ""
            )
            text = text.strip("\r\n")
            sep = max(("\t", ",", ";"), key=text.count)
            names = text.split(sep)
    except Exception:
        return ()
    return tuple(column_key(c) for c in names)


def read_table(path: Path, *, root: Path | None = None) -> pd.DataFrame:
    """A CSV/TSV/TXT/XLSX/Parquet table with lower-cased, stripped column names."""
    name = rel(path, root)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix == ".xlsx":
            df = _read_xlsx(path, dtype=object)
        else:
            text = read_text(path)
            first = text.split("\n", 1)[0]
            sep = max(("\t", ",", ";"), key=first.count)
            import io

            df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except InputError:
        raise
    except Exception as err:  # pandas/pyarrow/openpyxl raise many types for a broken file
        raise InputError(Problem(f"cannot read the table: {err}", file=name)) from None
    df.columns = [column_key(c) for c in df.columns]
    return df


def canonical_columns(df: pd.DataFrame, keys: tuple[str, ...]) -> dict[str, str]:
    """{canonical name: column in df} for the ``keys`` found via their aliases."""
    found: dict[str, str] = {}
    for key in keys:
        for alias in _ALIASES[key]:
            if alias in df.columns and alias not in found.values():
                found[key] = alias
                break
    return found


def is_long_table(path: Path) -> bool:
    """Cheap test (the header only): does it name plate, well and value columns?"""
    df = pd.DataFrame(columns=table_columns(path))
    return len(canonical_columns(df, ("plate", "well", "value"))) == 3


def is_plate_layout(path: Path) -> bool:
    """Cheap test (the header only): a plate map / plate definition, i.e. a well column and what
    is in the wells (content, sample, compound or concentration) but no readings?"""
    df = pd.DataFrame(columns=table_columns(path))
    found = canonical_columns(df, ("well", "value", *LAYOUT_KEYS))
    return "well" in found and "value" not in found and len(found) > 1


def read_long_table(path: Path, *, root: Path | None = None) -> pd.DataFrame:
    """Readings as plate_id (str), replicate, channel, well, value; errors name plate and well."""
    name = rel(path, root)
    df = read_table(path, root=root)
    cols = canonical_columns(df, ("plate", "well", "value", "replicate", "channel"))
    missing = [k for k in ("plate", "well", "value") if k not in cols]
    if missing:
        raise InputError(
            Problem(
                f"missing column(s) {', '.join(missing)}",
                file=name,
                where="header",
                hint="a long table has columns plate, well, value (optional replicate, channel)",
            )
        )
    out = pd.DataFrame(
        {
            "plate_id": _plate_ids(df[cols["plate"]]),
            "well": df[cols["well"]].astype(str).str.strip(),
        }
    )
    raw = df[cols["value"]].astype(str)
    values = pd.to_numeric(
        raw.str.strip().replace({m: "nan" for m in ("", "NA", "na", "NaN", "-")}), errors="coerce"
    )
    bad = values.isna().to_numpy() & ~raw.str.strip().str.lower().isin(_MISSING).to_numpy()
    problems = [
        Problem(
            f"reading {raw.iloc[i]!r} is not a number",
            file=name,
            where=f"plate {out.plate_id.iloc[i]}, well {out.well.iloc[i]} (line {i + 2})",
            hint="write a number, or leave it empty / NA for a missing reading",
        )
        for i in np.flatnonzero(bad)[:MAX_PROBLEMS]
    ]
    out["value"] = values.to_numpy(dtype=np.float64)
    for key in ("replicate", "channel"):
        if key in cols:
            num = pd.to_numeric(df[cols[key]], errors="coerce")
            for i in np.flatnonzero(num.isna().to_numpy())[:MAX_PROBLEMS]:
                problems.append(
                    Problem(
                        f"{key} {df[cols[key]].iloc[i]!r} is not an integer",
                        file=name,
                        where=f"line {i + 2}",
                    )
                )
            out[key] = num.fillna(0).astype(np.int64).to_numpy()
        else:
            out[key] = 1
    if problems:
        raise InputError(problems)
    return out


def _plate_ids(col: pd.Series) -> pd.Series:
    """Plate ids as text; spreadsheets store plate 3 as 3.0, which must still match plate '3'."""
    return col.astype(str).str.strip().str.replace(r"^(\d+)\.0+$", r"\1", regex=True)


#: What a plate map / plate definition may say about a well (besides well and plate).
LAYOUT_KEYS = ("sample_id", "compound", "concentration", "content", *COMPOUND_ID_COLUMNS)


def read_plate_map(path: Path, *, root: Path | None = None) -> pd.DataFrame:
    """Plate map: well, plate_id (None = every plate), sample_id, compound, concentration, content,
    and the compound identifiers ``compound_chebi``, ``compound_pubchem_cid`` (Int64),
    ``compound_inchikey`` (None where not given; a malformed one is an InputError naming file,
    line, well and column)."""
    name = rel(path, root)
    df = read_table(path, root=root)
    cols = canonical_columns(df, ("well", "plate", *LAYOUT_KEYS))
    if "well" not in cols:
        raise InputError(
            Problem(
                "missing column well",
                file=name,
                where="header",
                hint="a plate map has columns well and any of plate, sample_id, compound, concentration, content",
            )
        )
    out = pd.DataFrame({"well": df[cols["well"]].astype(str).str.strip()})
    out["plate_id"] = _plate_ids(df[cols["plate"]]) if "plate" in cols else None
    for key in ("sample_id", "compound", "content"):
        if key in cols:
            col = df[cols[key]].astype(str).str.strip()
            out[key] = col.where(~col.str.lower().isin(_MISSING), None)
        else:
            out[key] = None
    problems: list[Problem] = []
    if "concentration" in cols:
        raw = df[cols["concentration"]].astype(str).str.strip()
        conc = pd.to_numeric(raw.where(~raw.str.lower().isin(_MISSING), "nan"), errors="coerce")
        bad = conc.isna().to_numpy() & ~raw.str.lower().isin(_MISSING).to_numpy()
        for i in np.flatnonzero(bad)[:MAX_PROBLEMS]:
            problems.append(
                Problem(
                    f"concentration {raw.iloc[i]!r} is not a number",
                    file=name,
                    where=f"well {out.well.iloc[i]} (line {i + 2})",
                )
            )
        neg = (conc < 0).to_numpy()
        for i in np.flatnonzero(neg)[:MAX_PROBLEMS]:
            problems.append(
                Problem(
                    f"concentration {raw.iloc[i]} is negative",
                    file=name,
                    where=f"well {out.well.iloc[i]} (line {i + 2})",
                )
            )
        out["concentration"] = conc.to_numpy(dtype=np.float64)
    else:
        out["concentration"] = np.nan
    r, _ = parse_wells(out["well"].to_numpy())
    for i in np.flatnonzero(r < 0)[:MAX_PROBLEMS]:
        problems.append(
            Problem(
                f"{out.well.iloc[i]!r} is not a well id",
                file=name,
                where=f"line {i + 2}",
                hint="write wells like A01 or A1",
            )
        )
    for key, (column, _, _) in COMPOUND_ID_COLUMNS.items():
        out[column] = (
            _compound_ids(
                df[cols[key]], key, out["well"], name=name, header=cols[key], problems=problems
            )
            if key in cols
            else None
        )
    if problems:
        raise InputError(problems)
    return out
