"""Which files of a run folder hold what: the plan the workflow reads in batches."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, Problem
from pipelines.modalities.screening import readers
from pipelines.modalities.screening.config import settings
from pipelines.toolkit.inputs import EXPERIMENT_FILE, InputSet, RunFolder, sample_of_files

# files with these names are metadata, never plate readings, in grid mode
_METADATA_NAMES = re.compile(
    r"^(experiment\.ya?ml|platemap\..*|plate_map\..*|description\.txt|"
    r"platelist\.txt|plateconf\.txt|screenlog\.txt|geneids.*|annotation.*|"
    r"readme.*|sources\.md)$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Unit:
    """One raw file to read: a plate (or, for a long table, all of them)."""

    file: Path
    plate: int | None = None  # None: from the file (long table) or its position (grid)
    replicate: int = 1
    channel: int | None = None  # None: the grid's position in the file (several grids = channels)


@dataclass(slots=True)
class Inputs:
    """The resolved inputs of one run folder."""

    kind: str
    units: list[Unit]
    plate_config: Path | None = None
    screen_log: Path | None = None
    description: Path | None = None
    annotation: Path | None = None
    plate_map: Path | None = None
    plate_list: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        """Every file the workflow reads: plate files and the metadata files around them."""
        extra = (
            self.plate_list,
            self.plate_config,
            self.screen_log,
            self.description,
            self.annotation,
            self.plate_map,
        )
        return sorted({u.file for u in self.units} | {p for p in extra if p is not None})

    def batches(self) -> list[list[Unit]]:
        size = max(1, int(self.settings["batch_size"]))
        return [self.units[i : i + size] for i in range(0, len(self.units), size)] or [[]]


def _existing(
    run_dir: Path, name: str, *, where: str = "screening.input", file: str = EXPERIMENT_FILE
) -> Path | None:
    """``name`` in the run folder, matched case-insensitively (Windows users write PLATELIST.TXT).

    A name leading out of the run folder (``../x``, ``/etc/passwd``, a link out) raises
    :class:`InputError` naming ``file`` and ``where``; nothing outside is opened.
    """
    if not name:
        return None
    path = RunFolder(run_dir).reference(name, where=where, file=file, must_exist=False)
    if path.is_file():
        return path
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            if p.name.lower() == path.name.lower() and p.is_file():
                return RunFolder(run_dir).reference(p.relative_to(run_dir), where=where, file=file)
    return None


def candidate_files(run_dir: Path) -> list[Path]:
    """Table-like files of the run folder (any depth, hidden folders skipped), sorted.

    Every extension the readers take counts (``.tab``, ``.Csv`` ...), the same list that
    ``list_inputs`` records in provenance; links leading out of the folder raise InputError.
    """
    return [
        p
        for p in RunFolder(run_dir).find(("**/*",))
        if p.suffix.lower() in readers.TABLE_EXTENSIONS
    ]


def resolve(run_dir: str | Path, block: dict[str, Any] | None) -> Inputs:
    """Find the inputs of a run folder; raise InputError when there is nothing to read."""
    run_dir = Path(run_dir)
    cfg = settings(block)
    inp = cfg["input"]
    found = Inputs(kind=inp["kind"], units=[], settings=cfg)
    found.plate_config = _existing(
        run_dir, inp["plate_config"], where="screening.input.plate_config"
    )
    found.screen_log = _existing(run_dir, inp["screen_log"], where="screening.input.screen_log")
    found.description = _existing(run_dir, inp["description"], where="screening.input.description")
    found.annotation = _annotation_file(run_dir, inp, description=found.description)
    found.plate_map = _plate_map_file(run_dir, inp)
    found.plate_list = _existing(run_dir, inp["plate_list"], where="screening.input.plate_list")
    if found.plate_map is None and inp["kind"] != "cellhts2" and found.plate_list is None:
        found.plate_map = _plate_layout(run_dir, found)
    found.kind = _input_kind(run_dir, found, inp)
    if found.kind == "cellhts2":
        found.units = _plate_list_units(run_dir, found.plate_list, inp)
    elif found.kind == "long":
        found.units = [Unit(p) for p in _long_tables(run_dir, found, inp)]
    elif found.kind == "grid":
        found.units = [Unit(p, plate=i + 1) for i, p in enumerate(_data_files(run_dir, found))]
    if not found.units:
        raise InputError(
            Problem(
                "no plate files found",
                file=str(run_dir),
                hint="add reader exports (CSV/TSV/TXT/XLSX), a cellHTS2 Platelist.txt, "
                "or a plate/well/value table",
            )
        )
    return found


def _annotation_file(
    run_dir: Path, inp: dict[str, Any], *, description: Path | None
) -> Path | None:
    """The annotation named in the block, else the one Description.txt names under [Files]."""
    annotation = _existing(run_dir, inp["annotation"], where="screening.input.annotation")
    if inp["annotation"] and annotation is None:
        raise InputError(
            Problem(
                "annotation file not found",
                file=inp["annotation"],
                where="screening.input.annotation",
                hint="name a file in the run folder, or leave it empty",
            )
        )
    if annotation is not None or description is None:
        return annotation
    named = readers.read_description(description).get("Files", {}).get("annotation", "")
    if not named:
        return None
    return _existing(
        run_dir, named, where="Files: annotation", file=readers.rel(description, run_dir)
    )


def _plate_map_file(run_dir: Path, inp: dict[str, Any]) -> Path | None:
    """The plate map named in the block (it must exist), else the first ``platemap.*``."""
    if not inp["plate_map"]:
        return next(
            (
                p
                for p in candidate_files(run_dir)
                if re.match(r"^plate_?map\.", p.name, re.IGNORECASE)
            ),
            None,
        )
    plate_map = _existing(run_dir, inp["plate_map"], where="screening.input.plate_map")
    if plate_map is None:
        raise InputError(
            Problem(
                "plate map not found",
                file=inp["plate_map"],
                where="screening.input.plate_map",
                hint="name a file in the run folder, or leave it empty to find platemap.*",
            )
        )
    return plate_map


def _input_kind(run_dir: Path, found: Inputs, inp: dict[str, Any]) -> str:
    """The block's input kind; for ``auto``: a plate list is cellHTS2, a plate/well/value table
    is long, anything else is reader grids."""
    if inp["kind"] != "auto":
        return inp["kind"]
    if found.plate_list is not None:
        return "cellhts2"
    if inp["table"] or any(readers.is_long_table(p) for p in _data_files(run_dir, found)):
        return "long"
    return "grid"


def _plate_list_units(run_dir: Path, plate_list: Path | None, inp: dict[str, Any]) -> list[Unit]:
    """One unit per line of a cellHTS2 plate list; every name leading out of the run folder is
    reported at once."""
    if plate_list is None:
        raise InputError(
            Problem(
                "plate list not found",
                file=inp["plate_list"],
                where="screening.input.plate_list",
                hint="a cellHTS2 screen needs a tab-separated plate list (Filename Plate Replicate)",
            )
        )
    table = readers.read_plate_list(plate_list, root=run_dir)
    folder, problems, files = RunFolder(run_dir), [], []
    for line, name in enumerate(table["file"], start=2):
        try:
            files.append(
                folder.reference(
                    name,
                    where=f"line {line}",
                    must_exist=False,
                    file=readers.rel(plate_list, run_dir),
                )
            )
        except InputError as err:
            problems += err.problems
    if problems:
        raise InputError(problems)
    return [
        Unit(f, int(r.plate), int(r.replicate), int(r.channel))
        for f, r in zip(files, table.itertuples(), strict=True)
    ]


def _long_tables(run_dir: Path, found: Inputs, inp: dict[str, Any]) -> list[Path]:
    """The table the block names, else every data file with plate, well and value columns."""
    if inp["table"]:
        path = _existing(run_dir, inp["table"], where="screening.input.table")
        if path is None:
            raise InputError(
                Problem(
                    "readings table not found", file=inp["table"], where="screening.input.table"
                )
            )
        tables = [path]
    else:
        tables = [p for p in _data_files(run_dir, found) if readers.is_long_table(p)]
    if not tables:
        raise InputError(
            Problem(
                "no table with plate, well and value columns",
                file=str(run_dir),
                hint="set screening.input.table, or use input.kind grid for reader exports",
            )
        )
    return tables


def list_inputs(run_dir: str | Path, experiment: dict[str, Any]) -> InputSet:
    """Every file the screening workflow reads, and what stops it (nothing to read, a name
    leading out of the run folder)."""
    try:
        found = resolve(run_dir, experiment.get("screening") or {})
    except InputError as err:
        return InputSet(problems=tuple(err.problems))
    files = tuple(p for p in found.files if p.is_file())
    problems: list[Problem] = []
    sample_of_files(run_dir, experiment, files, modality="screening", problems=problems)
    return InputSet(files=files, problems=tuple(problems))


def _plate_layout(run_dir: Path, found: Inputs) -> Path | None:
    """The one table that describes the wells (well + content / sample / compound columns, no
    readings) under another name than platemap.*: exports come with a 'plate definition' or
    'layout' file.  Two such tables are ambiguous: the user names one."""
    layouts = [p for p in _data_files(run_dir, found) if readers.is_plate_layout(p)]
    if len(layouts) > 1:
        names = ", ".join(readers.rel(p, run_dir) for p in layouts[:5])
        raise InputError(
            Problem(
                f"{len(layouts)} tables describe plate wells ({names})",
                file=str(run_dir),
                where="screening.input.plate_map",
                hint="name the plate map to use, e.g. 'screening: {input: {plate_map: "
                f"{readers.rel(layouts[0], run_dir)}}}}}'",
            )
        )
    return layouts[0] if layouts else None


def _data_files(run_dir: Path, found: Inputs) -> list[Path]:
    skip = {
        p
        for p in (
            found.plate_config,
            found.screen_log,
            found.description,
            found.annotation,
            found.plate_map,
        )
        if p is not None
    }
    return [
        p for p in candidate_files(run_dir) if p not in skip and not _METADATA_NAMES.match(p.name)
    ]


def batch_count(run_dir: str | Path, block: dict[str, Any] | None) -> int:
    """Number of read jobs, for Snakemake at parse time.  Never raises: when the inputs cannot be
    resolved the single batch job reports the problem (file, place, hint) the normal way."""
    try:
        return len(resolve(run_dir, block).batches())
    except InputError:
        return 1
