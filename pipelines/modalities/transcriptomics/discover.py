"""Which raw files of a run folder are the input, and which reader takes them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, Problem
from pipelines.toolkit.inputs import RunFolder
from pipelines.toolkit.run_ids import applies, raw_names

from .params import Params

# globs relative to the run folder; hidden folders are skipped by find_raw_files
RAW_PATTERNS: tuple[str, ...] = (
    "**/*.h5",
    "**/*.h5ad",
    "**/matrix.mtx",
    "**/matrix.mtx.gz",
    "**/features.tsv.gz",
    "**/genes.tsv",
    "**/barcodes.tsv",
    "**/barcodes.tsv.gz",
    "**/*.tsv",
    "**/*.tsv.gz",
    "**/*.csv",
    "**/*.csv.gz",
    "**/*.txt",
    "**/*.txt.gz",
)
SINGLE_CELL_KINDS = ("10x_h5", "10x_mtx", "h5ad")
_TABLE_SUFFIXES = (".tsv", ".tsv.gz", ".csv", ".csv.gz", ".txt", ".txt.gz")
_MTX_PARTS = {
    "matrix.mtx",
    "matrix.mtx.gz",
    "features.tsv.gz",
    "genes.tsv",
    "barcodes.tsv",
    "barcodes.tsv.gz",
    "features.tsv",
}
_SHEET_WORDS = ("sample", "annotation", "sheet", "coldata", "design", "metadata", "pheno")


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The resolved input: ``kind`` (10x_h5, 10x_mtx, h5ad, bulk_counts), the matrix path
    (file, or the folder of an mtx triplet), and for bulk the sample sheet (or None)."""

    kind: str
    path: Path
    sample_sheet: Path | None = None

    @property
    def single_cell(self) -> bool:
        return self.kind in SINGLE_CELL_KINDS


def _visible(run_dir: Path, pattern: str) -> list[Path]:
    # links leading out of the run folder raise InputError (the guard of pipelines.toolkit)
    return RunFolder(run_dir).find((pattern,))


def _is_table(p: Path) -> bool:
    return p.name.lower().endswith(_TABLE_SUFFIXES) and p.name not in _MTX_PARTS


def _rel(run_dir: Path, p: Path) -> str:
    return p.relative_to(run_dir).as_posix()


def resolve_input(run_dir: str | Path, params: Params) -> InputSpec:
    """Find the input of a run folder; InputError when there is none or it is ambiguous."""
    run_dir = Path(run_dir)
    kind = params.input_kind
    if params.input_path:
        path = RunFolder(run_dir).reference(
            params.input_path, where="transcriptomics.input.path", must_exist=False
        )
        if not path.exists():
            raise InputError(
                Problem(
                    f"{params.input_path} does not exist in the run folder",
                    file="experiment.yaml",
                    where="transcriptomics.input.path",
                    hint=f"paths are relative to {run_dir}",
                )
            )
        if kind == "auto":
            kind = _kind_of(path)
        if kind == "10x_mtx" and path.is_file():
            path = path.parent
        if kind == "bulk_counts":
            return InputSpec(kind, path, _bulk_sheet(run_dir, params, counts=path))
        return InputSpec(kind, path)
    h5 = [p for p in _visible(run_dir, "**/*.h5")]
    h5ad = _visible(run_dir, "**/*.h5ad")
    mtx = _visible(run_dir, "**/matrix.mtx") + _visible(run_dir, "**/matrix.mtx.gz")
    tables = [
        p
        for pat in ("**/*.tsv", "**/*.tsv.gz", "**/*.csv", "**/*.csv.gz", "**/*.txt", "**/*.txt.gz")
        for p in _visible(run_dir, pat)
        if _is_table(p)
    ]
    order = {"10x_h5": h5, "h5ad": h5ad, "10x_mtx": mtx}
    if kind == "auto":
        kind = next((k for k, files in order.items() if files), "bulk_counts" if tables else "")
    if not kind:
        raise InputError(
            Problem(
                "no transcriptomics input found",
                file=str(run_dir),
                hint="expected a 10x filtered_feature_bc_matrix.h5, a matrix.mtx(.gz) folder, an .h5ad, "
                "or a bulk count table (.tsv/.csv) with a sample sheet",
            )
        )
    if kind == "bulk_counts":
        counts = _bulk_counts(run_dir, params, tables)
        return InputSpec(kind, counts, _bulk_sheet(run_dir, params, counts=counts))
    files = order[kind]
    if not files:
        raise InputError(
            Problem(
                f"input.kind is {kind} but no such file is in the run folder",
                file="experiment.yaml",
                where="transcriptomics.input.kind",
                hint="set input.kind: auto, or add the file",
            )
        )
    if len(files) > 1:
        # Cell Ranger's outs/ has filtered_ and raw_ matrices: the filtered one is the delivery
        filtered = [p for p in files if "filtered" in _rel(run_dir, p)]
        if len(filtered) == 1:
            files = filtered
        else:
            raise InputError(
                Problem(
                    f"{len(files)} candidate inputs: {', '.join(_rel(run_dir, p) for p in files)}",
                    file="experiment.yaml",
                    where="transcriptomics.input.path",
                    hint="one run folder is one library: set transcriptomics.input.path to the one to process",
                )
            )
    path = files[0]
    return InputSpec(kind, path.parent if kind == "10x_mtx" else path)


def _kind_of(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or name.startswith("matrix.mtx"):
        return "10x_mtx"
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".h5"):
        return "10x_h5"
    return "bulk_counts"


def _named_file(run_dir: Path, name: str, where: str) -> Path:
    """A file experiment.yaml names (at YAML path ``where``), which must exist in the run folder."""
    p = RunFolder(run_dir).reference(name, where=where, must_exist=False)
    if not p.is_file():
        raise InputError(
            Problem(f"{name} does not exist in the run folder", file="experiment.yaml", where=where)
        )
    return p


def input_name(
    run_dir: str | Path, experiment: dict[str, Any], spec: InputSpec, path: Path | None
) -> str:
    """What the outputs call ``path`` (the matrix, its mtx folder or the sample sheet of
    ``spec``): its path in the run folder, for human data its run id (an mtx folder: the run ids
    of its files), numbered over :func:`input_files` as ``binds run`` numbers them."""
    if path is None:
        return ""
    if not applies(experiment):
        return RunFolder(Path(run_dir)).rel(path)
    named = raw_names(run_dir, experiment, input_files(spec))
    parts = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return " ".join(
        named[Path(os.path.abspath(p))] for p in parts if Path(os.path.abspath(p)) in named
    )


def input_files(spec: InputSpec) -> list[Path]:
    """The files the workflow reads for ``spec``: the matrix file (or every file of an mtx
    folder) and the sample sheet."""
    run_dir_files = (
        [spec.path]
        if spec.path.is_file()
        else sorted(p for p in spec.path.iterdir() if p.is_file() and not p.name.startswith("."))
    )
    return run_dir_files + ([spec.sample_sheet] if spec.sample_sheet is not None else [])


def _bulk_counts(run_dir: Path, params: Params, tables: list[Path]) -> Path:
    if params.bulk.counts:
        return _named_file(run_dir, params.bulk.counts, "transcriptomics.bulk.counts")
    named = [p for p in tables if "count" in p.name.lower()]
    if len(named) == 1:
        return named[0]
    if not named and len(tables) == 1:
        return tables[0]
    listed = ", ".join(_rel(run_dir, p) for p in (named or tables))
    raise InputError(
        Problem(
            f"cannot tell which table holds the counts: {listed}",
            file="experiment.yaml",
            where="transcriptomics.bulk.counts",
            hint="set transcriptomics.bulk.counts to the genes x samples table",
        )
    )


def _bulk_sheet(run_dir: Path, params: Params, *, counts: Path) -> Path | None:
    if params.bulk.sample_sheet:
        return _named_file(run_dir, params.bulk.sample_sheet, "transcriptomics.bulk.sample_sheet")
    others = [
        p
        for pat in ("**/*.tsv", "**/*.tsv.gz", "**/*.csv", "**/*.csv.gz", "**/*.txt", "**/*.txt.gz")
        for p in _visible(run_dir, pat)
        if _is_table(p) and p != counts
    ]
    named = [p for p in others if any(w in p.name.lower() for w in _SHEET_WORDS)]
    if len(named) == 1:
        return named[0]
    if not named and len(others) == 1:
        return others[0]
    if not others:
        return None
    listed = ", ".join(_rel(run_dir, p) for p in (named or others))
    raise InputError(
        Problem(
            f"cannot tell which table is the sample sheet: {listed}",
            file="experiment.yaml",
            where="transcriptomics.bulk.sample_sheet",
            hint="set transcriptomics.bulk.sample_sheet",
        )
    )
