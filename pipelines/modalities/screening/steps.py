"""The workflow steps: read a batch of plate files, score the screen, fit dose-response curves,
write the metrics.  Scoring and fitting take data and return data (:func:`process_screen`);
:func:`write_screen` writes them.  Every step validates first, and what is written is
deterministic (same input -> same bytes)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import InputError, Problem
from pipelines.modalities.screening import dose, readers, stats
from pipelines.modalities.screening.inputs import Inputs, Unit, resolve
from pipelines.modalities.screening.plates import (
    ROW_LETTERS,
    PlateFormat,
    format_for_wells,
    parse_wells,
)
from pipelines.toolkit.inputs import RunFolder, sample_of_files
from pipelines.toolkit.run_ids import run_ids as ids_in_path_order
from pipelines.toolkit.stage import write_json
from pipelines.toolkit.tables import columns_for, write_table

log = logging.getLogger(__name__)
FORMAT_VERSION = (
    "1"  # of the screening Parquet layout (docs/formats/screening.md); stamped in metadata
)
PUBLISHED_TABLES = ("wells", "plates", "hits", "dose_response")  # data/<name>.parquet
ROLE_NAMES = ("sample", "negative", "positive", "inhibitor", "other")


# --------------------------------------------------------------------------- parquet
def write_parquet(
    df: pd.DataFrame, path: str | Path, *, meta: dict[str, Any] | None = None
) -> Path:
    """Parquet without the pandas index and with our format version in the schema metadata; no
    timestamps anywhere, so identical frames give identical bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    # an all-null text column (no compounds in this screen) would get Arrow type null; readers
    # of many datasets need one type per column, and every object column here is text
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema
    ]
    table = table.cast(pa.schema(fields, metadata=table.schema.metadata))
    extra = {b"binds.screening.format_version": FORMAT_VERSION.encode()}
    for k, v in (meta or {}).items():
        extra[f"binds.screening.{k}".encode()] = json.dumps(v, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    if path.stem in PUBLISHED_TABLES:  # the shared writer: every column documented
        fmt = f"binds-screening-{path.stem.replace('_', '-')}"
        return write_table(
            table, path, format_name=fmt, format_version=FORMAT_VERSION, columns=columns_for(fmt)
        )
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return path


def parquet_meta(path: str | Path, key: str) -> Any:
    md = pq.read_schema(path).metadata or {}
    raw = md.get(f"binds.screening.{key}".encode())
    return json.loads(raw) if raw else None


# --------------------------------------------------------------------------- plate format
def declared_format(found: Inputs) -> tuple[int | None, dict[str, Any]]:
    """(wells or None, conflicts) from the YAML block and Plateconf.txt: the YAML wins where both
    speak, and a disagreement is recorded as a conflict."""
    yaml_fmt = found.settings["plate_format"]
    conf_fmt = readers.read_plate_config(found.plate_config).wells if found.plate_config else None
    conflicts = []
    if yaml_fmt != "auto" and conf_fmt and int(yaml_fmt) != conf_fmt:
        conflicts.append(
            {
                "field": "plate_format",
                "yaml": int(yaml_fmt),
                "file": found.plate_config.name,
                "value": conf_fmt,
            }
        )
    if yaml_fmt != "auto":
        return int(yaml_fmt), {"conflicts": conflicts}
    return conf_fmt, {"conflicts": conflicts}


# --------------------------------------------------------------------------- step 1: read
def _run_ids(found: Inputs) -> dict[Path, str]:
    """Human data: each input file's run id, numbered over every input file as ``binds run``
    numbers them in ``_meta/run_ids.json`` (``list_inputs``: the files that exist)."""
    numbered = ids_in_path_order(Path(os.path.abspath(p)) for p in found.files if p.is_file())
    return {p: rid for rid, p in numbered.items()}


def read_batch(
    *,
    run_dir: str | Path,
    block: dict[str, Any] | None,
    batch: int,
    out: str | Path,
    by_run_id: bool = False,
) -> Path:
    """Read batch ``batch`` of the run's plate files into one long Parquet (plate, plate_id,
    replicate, channel, row, col, value, file), checking every plate's wells against the format.

    Raises InputError (file, plate, well) for missing files, non-numeric readings, wells outside
    the plate, duplicated wells and wrong well counts; all problems of the batch at once.
    ``by_run_id`` (human data): the ``file`` column holds the files' run ids (numbered over
    every input file, as ``binds run`` numbers them in ``_meta/run_ids.json``), not their names.
    """
    run_dir = Path(run_dir)
    found = resolve(run_dir, block)
    units = found.batches()[batch] if batch < len(found.batches()) else []
    wells_declared, _ = declared_format(found)
    frames: list[pd.DataFrame] = []
    problems: list[Problem] = []
    facts: dict[str, str] = {}
    for unit in units:
        try:
            frame, unit_facts = _read_unit(
                unit, run_dir=run_dir, wells_declared=wells_declared, kind=found.kind
            )
        except InputError as err:
            problems.extend(err.problems)
            if len(problems) >= readers.MAX_PROBLEMS:
                break
            continue
        frames.append(frame)
        for k, v in unit_facts.items():
            facts.setdefault(k, v)
    if problems:
        raise InputError(problems[: readers.MAX_PROBLEMS])
    # one DataFrame per batch from plain arrays: a DataFrame per plate file costs ~3 ms each
    df = (
        pd.DataFrame({k: np.concatenate([f[k] for f in frames]) for k in _RAW_COLUMNS})
        if frames
        else _empty_raw()
    )
    if by_run_id:
        by_rel = {readers.rel(p, run_dir): rid for p, rid in _run_ids(found).items()}
        df["file"] = df["file"].map(by_rel).fillna("a file of the run folder")
    log.info("batch %d: %d files, %d readings", batch, len(units), len(df))
    return write_parquet(df, out, meta={"facts": facts})


_RAW_COLUMNS = (
    "plate",
    "plate_id",
    "replicate",
    "channel",
    "row",
    "col",
    "value",
    "file",
    "format",
)


def _arrays(
    n: int,
    *,
    plate: int,
    plate_id: str,
    replicate: int,
    channel,
    row,
    col,
    value,
    file: str,
    fmt: int,
) -> dict[str, np.ndarray]:
    """The raw columns of one plate reading as numpy arrays (see ``_RAW_COLUMNS``)."""
    return {
        "plate": np.full(n, plate, dtype=np.int32),
        "plate_id": np.full(n, plate_id, dtype=object),
        "replicate": np.full(n, replicate, dtype=np.int16),
        "channel": np.broadcast_to(np.asarray(channel, dtype=np.int16), (n,)).copy(),
        "row": np.asarray(row, dtype=np.int16),
        "col": np.asarray(col, dtype=np.int16),
        "value": np.asarray(value, dtype=np.float64),
        "file": np.full(n, file, dtype=object),
        "format": np.full(n, fmt, dtype=np.int16),
    }


def _empty_raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "plate": pd.Series(dtype="int32"),
            "plate_id": pd.Series(dtype=str),
            "replicate": pd.Series(dtype="int16"),
            "channel": pd.Series(dtype="int16"),
            "row": pd.Series(dtype="int16"),
            "col": pd.Series(dtype="int16"),
            "value": pd.Series(dtype="float64"),
            "file": pd.Series(dtype=str),
            "format": pd.Series(dtype="int16"),
        }
    )


def _read_unit(
    unit: Unit, *, run_dir: Path, wells_declared: int | None, kind: str
) -> tuple[dict[str, np.ndarray], dict]:
    name = readers.rel(unit.file, run_dir)
    if kind == "long":
        return _read_long_unit(unit, run_dir=run_dir, wells_declared=wells_declared), {}
    reading = readers.read_plate_file(unit.file, plate=unit.plate or 0, root=run_dir)
    plate = int(unit.plate or 0)
    plate_id = str(plate) if kind == "cellhts2" else unit.file.stem
    if reading.long is not None:
        r, c = parse_wells(reading.long["well"].to_numpy())
        df = pd.DataFrame(
            {
                "well": reading.long["well"],
                "r": r,
                "c": c,
                "value": reading.long["value"],
                "channel": unit.channel or 1,
            }
        )
        fmt = _check_wells(df, name=name, plate=plate, wells_declared=wells_declared)
        frame = _raw_frame(
            df, plate=plate, plate_id=plate_id, replicate=unit.replicate, name=name, fmt=fmt
        )
        return frame, reading.facts
    grids = reading.grids
    if unit.channel is not None and len(grids) > 1:
        if unit.channel > len(grids):
            raise InputError(
                Problem(
                    f"channel {unit.channel} asked for, the file has {len(grids)} grid(s)",
                    file=name,
                    where=f"plate {plate}",
                )
            )
        grids = [grids[unit.channel - 1]]
        channels = [unit.channel]
    else:
        channels = [unit.channel or i + 1 for i in range(len(grids))]
    parts = []
    for grid, ch in zip(grids, channels, strict=False):
        fmt = PlateFormat.from_shape(*grid.shape)
        if wells_declared and fmt.wells != wells_declared:
            raise InputError(
                Problem(
                    f"wrong well count: the grid has {grid.shape[0]} x {grid.shape[1]} = {fmt.wells} wells, "
                    f"the plate format is {wells_declared}",
                    file=name,
                    where=f"plate {plate}, channel {ch}",
                    hint="check plate_format in experiment.yaml / Wells: in Plateconf.txt, or the export",
                )
            )
        size = reading.facts.get("plate_size")
        if size and size.isdigit() and int(size) != fmt.wells:
            raise InputError(
                Problem(
                    f"the header says Plate Size {size}, the grid has {fmt.wells} wells",
                    file=name,
                    where=f"plate {plate}",
                    hint="the export is truncated or mislabelled",
                )
            )
        rr, cc = np.indices(grid.shape)
        parts.append(
            _arrays(
                grid.size,
                plate=plate,
                plate_id=plate_id,
                replicate=unit.replicate,
                channel=ch,
                row=rr.ravel(),
                col=cc.ravel(),
                value=grid.ravel(),
                file=name,
                fmt=fmt.wells,
            )
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in _RAW_COLUMNS}, reading.facts


def _check_wells(
    df: pd.DataFrame, *, name: str, plate: int | str, wells_declared: int | None
) -> PlateFormat:
    """Validate well ids of one plate (one replicate/channel): ids, inside the plate, no
    duplicates, complete.  ``df`` has columns well, r, c (and channel)."""
    problems: list[Problem] = []
    bad = df["r"].to_numpy() < 0
    for w in df.loc[bad, "well"].head(readers.MAX_PROBLEMS):
        problems.append(
            Problem(
                f"{w!r} is not a well id",
                file=name,
                where=f"plate {plate}",
                hint="write wells like A01 (row letter, column number)",
            )
        )
    ok = df[~bad]
    if wells_declared:
        fmt = PlateFormat.of(wells_declared)
    else:
        fmt = format_for_wells(
            int(ok["r"].max()) if len(ok) else 0, int(ok["c"].max()) if len(ok) else 0
        ) or PlateFormat.of(1536)
    outside = (ok["r"] >= fmt.rows) | (ok["c"] >= fmt.cols)
    for w in ok.loc[outside, "well"].head(readers.MAX_PROBLEMS):
        problems.append(
            Problem(
                f"well {w} is outside a {fmt.wells}-well plate ({fmt.rows} x {fmt.cols})",
                file=name,
                where=f"plate {plate}, well {w}",
                hint="check plate_format in experiment.yaml / Wells: in Plateconf.txt",
            )
        )
    inside = ok[~outside]
    dup = inside.duplicated(["channel", "r", "c"], keep="first")
    for w in inside.loc[dup, "well"].head(readers.MAX_PROBLEMS):
        problems.append(
            Problem(
                f"well {w} appears more than once",
                file=name,
                where=f"plate {plate}, well {w}",
                hint="each well needs exactly one reading per plate, replicate and channel",
            )
        )
    if not problems:
        for ch, grp in inside.groupby("channel"):
            if len(grp) != fmt.wells:
                have = set(zip(grp["r"], grp["c"], strict=False))
                missing = [
                    f"{ROW_LETTERS[r]}{c + 1:02d}"
                    for r in range(fmt.rows)
                    for c in range(fmt.cols)
                    if (r, c) not in have
                ]
                problems.append(
                    Problem(
                        f"wrong well count: {len(grp)} wells, a {fmt.wells}-well plate has {fmt.wells}",
                        file=name,
                        where=f"plate {plate}, channel {ch}",
                        hint=f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}; "
                        "leave a well empty or NA rather than dropping it",
                    )
                )
    if problems:
        raise InputError(problems[: readers.MAX_PROBLEMS])
    return fmt


def _raw_frame(
    df: pd.DataFrame, *, plate: int, plate_id: str, replicate: int, name: str, fmt: PlateFormat
) -> dict[str, np.ndarray]:
    return _arrays(
        len(df),
        plate=plate,
        plate_id=plate_id,
        replicate=replicate,
        channel=df["channel"].to_numpy(),
        row=df["r"].to_numpy(),
        col=df["c"].to_numpy(),
        value=df["value"].to_numpy(),
        file=name,
        fmt=fmt.wells,
    )


def _read_long_unit(
    unit: Unit, *, run_dir: Path, wells_declared: int | None
) -> dict[str, np.ndarray]:
    name = readers.rel(unit.file, run_dir)
    table = readers.read_long_table(unit.file, root=run_dir)
    r, c = parse_wells(table["well"].to_numpy())
    table = table.assign(r=r, c=c)
    ids = sorted(table["plate_id"].unique(), key=_natural_key)
    number = {pid: i + 1 for i, pid in enumerate(ids)}
    if all(pid.isdigit() for pid in ids):
        number = {pid: int(pid) for pid in ids}
    frames = []
    fmt = None
    for (pid, rep), grp in table.groupby(["plate_id", "replicate"], sort=False):
        fmt_here = _check_wells(
            grp, name=name, plate=pid, wells_declared=wells_declared or (fmt.wells if fmt else None)
        )
        fmt = fmt or fmt_here
        frames.append(
            _raw_frame(
                grp, plate=number[pid], plate_id=pid, replicate=int(rep), name=name, fmt=fmt_here
            )
        )
    if not frames:
        raise InputError(
            Problem("the table has no readings", file=name, hint="one row per plate and well")
        )
    return {k: np.concatenate([f[k] for f in frames]) for k in _RAW_COLUMNS}


def _natural_key(text: str) -> list:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


# --------------------------------------------------------------------------- step 2: score
def _roles(content: np.ndarray, controls: dict[str, list[str]]) -> np.ndarray:
    """Role code per well (index into ROLE_NAMES) from its content; names compared
    case-insensitively, as cellHTS2 does."""
    low = np.char.lower(np.asarray(content, dtype=str))
    role = np.full(low.shape, ROLE_NAMES.index("other"), dtype=np.int8)
    role[low == "sample"] = 0
    for code, key in ((1, "negative"), (2, "positive"), (3, "inhibitor")):
        names = [n.lower() for n in controls.get(key) or []]
        if names:
            role[np.isin(low, names)] = code
    return role


def build_layout(
    found: Inputs, *, plates: np.ndarray, plate_ids: dict[int, str], fmt: PlateFormat, run_dir: Path
) -> pd.DataFrame:
    """One row per (plate, row, col): content, sample_id, compound, concentration, annot_* columns.

    Sources in order, later ones winning: default 'sample'; Plateconf.txt rules; the plate map;
    the annotation file (identifiers only)."""
    n = len(plates)
    content = np.full((n, fmt.rows, fmt.cols), "sample", dtype=object)
    if found.plate_config is not None:
        conf = readers.read_plate_config(found.plate_config, root=run_dir)
        name = readers.rel(found.plate_config, run_dir)
        if conf.wells and conf.wells != fmt.wells:
            raise InputError(
                Problem(
                    f"Wells: {conf.wells}, but the plates have {fmt.wells} wells",
                    file=name,
                    where="Wells",
                    hint="the plate configuration must match the plate files",
                )
            )
        if conf.plates and len(plates) and plates.max() > conf.plates:
            raise InputError(
                Problem(
                    f"Plates: {conf.plates}, but plate {int(plates.max())} was read",
                    file=name,
                    where="Plates",
                    hint="raise Plates: or check the plate list",
                )
            )
        content = conf.contents(plates, fmt)
    layout = pd.DataFrame(
        {
            "plate": np.repeat(plates.astype(np.int32), fmt.wells),
            "r": np.tile(np.repeat(np.arange(fmt.rows), fmt.cols), n).astype(np.int16),
            "c": np.tile(np.arange(fmt.cols), n * fmt.rows).astype(np.int16),
            "content": content.reshape(-1),
            "sample_id": None,
            "compound": None,
            "concentration": np.nan,
            **{column: None for column, _, _ in readers.COMPOUND_ID_COLUMNS.values()},
        }
    )
    if found.plate_map is not None:
        layout = _apply_plate_map(
            layout, found.plate_map, plates=plates, plate_ids=plate_ids, fmt=fmt, run_dir=run_dir
        )
    if found.annotation is not None:
        layout = _apply_annotation(layout, found.annotation, run_dir=run_dir)
    return layout


def _apply_plate_map(
    layout: pd.DataFrame,
    path: Path,
    *,
    plates: np.ndarray,
    plate_ids: dict[int, str],
    fmt: PlateFormat,
    run_dir: Path,
) -> pd.DataFrame:
    name = readers.rel(path, run_dir)
    pm = readers.read_plate_map(path, root=run_dir)
    r, c = parse_wells(pm["well"].to_numpy())
    outside = (r >= fmt.rows) | (c >= fmt.cols)
    if outside.any():
        raise InputError(
            [
                Problem(
                    f"well {w} is outside a {fmt.wells}-well plate",
                    file=name,
                    where=f"well {w}",
                    hint="check plate_format",
                )
                for w in pm.loc[outside, "well"].head(readers.MAX_PROBLEMS)
            ]
        )
    pm = pm.assign(r=r.astype(np.int16), c=c.astype(np.int16))
    by_id = {pid: p for p, pid in plate_ids.items()} | {str(int(p)): int(p) for p in plates}
    if pm["plate_id"].notna().any():
        unknown = sorted(set(pm["plate_id"].dropna()) - set(by_id))
        if unknown:
            log.warning(
                "%s: plates %s are not among the readings; their rows are ignored",
                name,
                unknown[:5],
            )
        pm = pm[pm["plate_id"].isin(list(by_id))]
        pm = pm.assign(plate=pm["plate_id"].map(by_id).astype(np.int32))
    else:
        pm = pm.drop(columns="plate_id").merge(
            pd.DataFrame({"plate": plates.astype(np.int32)}), how="cross"
        )
    dup = pm.duplicated(["plate", "r", "c"], keep=False)
    if dup.any():
        raise InputError(
            [
                Problem(
                    f"well {w} is mapped more than once", file=name, where=f"plate {p}, well {w}"
                )
                for p, w in pm.loc[dup, ["plate", "well"]]
                .head(readers.MAX_PROBLEMS)
                .itertuples(index=False)
            ]
        )
    ids = [column for column, _, _ in readers.COMPOUND_ID_COLUMNS.values()]
    merged = layout.merge(
        pm[["plate", "r", "c", "sample_id", "compound", "concentration", "content", *ids]],
        on=["plate", "r", "c"],
        how="left",
        suffixes=("", "_map"),
    )
    for col in ("sample_id", "compound", "content", *ids):
        merged[col] = merged[f"{col}_map"].where(merged[f"{col}_map"].notna(), merged[col])
    merged["concentration"] = merged["concentration_map"].where(
        merged["concentration_map"].notna(), merged["concentration"]
    )
    return merged[[*layout.columns]]


def _apply_annotation(layout: pd.DataFrame, path: Path, *, run_dir: Path) -> pd.DataFrame:
    ann = readers.read_annotation(path, root=run_dir)
    r, c = parse_wells(ann["well"].to_numpy())
    id_cols = [col for col in ann.columns if col not in ("plate", "well")]
    ann = ann.assign(r=r.astype(np.int16), c=c.astype(np.int16))
    ann = ann[(ann["r"] >= 0) & ann["plate"].notna()]
    ann = ann.assign(plate=ann["plate"].astype(np.int32)).drop_duplicates(
        ["plate", "r", "c"], keep="last"
    )
    ann = ann.rename(columns={col: f"annot_{col}" for col in id_cols})
    merged = layout.merge(
        ann[["plate", "r", "c", *[f"annot_{col}" for col in id_cols]]],
        on=["plate", "r", "c"],
        how="left",
    )
    if id_cols:
        first = merged[f"annot_{id_cols[0]}"]
        merged["sample_id"] = merged["sample_id"].where(merged["sample_id"].notna(), first)
    for col in id_cols:
        merged[f"annot_{col}"] = (
            merged[f"annot_{col}"].astype(object).where(merged[f"annot_{col}"].notna(), None)
        )
    return merged


@dataclass(frozen=True, slots=True)
class ScoredScreen:
    """The scored screen: the wells, plates and hits tables, the metadata stamped in each of
    them (settings used, screen-wide figures, input kind), and the facts and conflicts of
    ``_meta/facts.json``."""

    wells: pd.DataFrame
    plates: pd.DataFrame
    hits: pd.DataFrame
    meta: dict[str, Any]
    facts: dict[str, Any]
    conflicts: list[dict[str, Any]]

    @property
    def figures(self) -> dict[str, Any]:
        """The screen-wide figures (robust Z' per replicate/channel, replicate correlation)."""
        return self.meta["screen"]


def score_screen(
    *,
    run_dir: str | Path,
    block: dict[str, Any] | None,
    raw: list[str | Path],
    samples: list[dict[str, Any]] | None = None,
    by_run_id: bool = False,
) -> ScoredScreen:
    """Normalise, score and QC the whole screen read into the ``raw`` batches, call hits.
    ``by_run_id``: the batches name the files by run id (:func:`read_batch`), and so do the
    tables."""
    run_dir = Path(run_dir)
    found = resolve(run_dir, block)
    cfg = found.settings
    df, facts = _read_batches(raw, run_dir=run_dir)
    fmt = _single_format(df)
    _check_duplicates(df)
    grid = _plate_grid(df, fmt)
    layout = build_layout(
        found, plates=grid.plates, plate_ids=grid.plate_ids, fmt=fmt, run_dir=run_dir
    )
    sc = _score_plates(grid, layout, found=found, fmt=fmt, run_dir=run_dir)
    rep = _replicate_hits(grid, sc, cfg=cfg, fmt=fmt)
    wells = _wells_table(
        grid,
        sc,
        rep,
        layout,
        fmt=fmt,
        unit=cfg["dose_response"]["concentration_unit"],
        file_samples=_file_samples(found, run_dir=run_dir, samples=samples, by_run_id=by_run_id),
    )
    hits = _hits_table(grid, rep, wells, fmt=fmt)
    screen = _screen_figures(
        sc.normalised,
        neg=sc.neg,
        pos=sc.pos,
        inst=grid.inst,
        per_rep=sc.per_rep,
        sample=sc.sample,
        group=sc.group,
    )
    settings_used = {
        k: cfg[k] for k in ("plate_format", "controls", "normalisation", "score", "hits", "qc")
    }
    facts.update(_description_facts(found))
    facts.update(
        {
            "plate_format": fmt.wells,
            "plates": len(grid.plates),
            "replicates": len(rep.reps),
            "channels": int(grid.inst["channel"].nunique()),
            "input_kind": found.kind,
        }
    )
    _, conflicts = declared_format(found)
    log.info("scored %d plate readings (%d plates), %d hits", grid.n, len(grid.plates), len(hits))
    return ScoredScreen(
        wells=wells,
        plates=_plates_table(grid, sc),
        hits=hits,
        meta={"settings": settings_used, "screen": screen, "input_kind": found.kind},
        facts=facts,
        conflicts=conflicts["conflicts"],
    )


def _file_samples(
    found: Inputs, *, run_dir: Path, samples: list[dict[str, Any]] | None, by_run_id: bool
) -> dict[str, str]:
    """The sample of each input file, keyed as the wells table names the file (its run id for
    human data, else its path in the run folder)."""
    folder = RunFolder(run_dir)
    named = _run_ids(found) if by_run_id else {}
    return {
        named.get(Path(os.path.abspath(path))) or folder.rel(path): sid
        for path, sid in sample_of_files(
            run_dir, {"samples": samples or []}, found.files, modality="screening"
        ).items()
    }


def _read_batches(raw: list[str | Path], *, run_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The read batches as one long table, and the readers' facts."""
    frames = [pd.read_parquet(p) for p in raw]
    df = pd.concat(frames, ignore_index=True) if frames else _empty_raw()
    facts: dict[str, Any] = {}
    for p in raw:
        for k, v in (parquet_meta(p, "facts") or {}).items():
            facts.setdefault(f"reader_{k}", v)
    if df.empty:
        raise InputError(Problem("no readings in the plate files", file=str(run_dir)))
    return df, facts


@dataclass(slots=True)
class _PlateGrid:
    """The readings as a (plate reading, row, column) cube; a plate reading is one
    (plate, replicate, channel) of ``inst``."""

    inst: pd.DataFrame
    values: np.ndarray
    files: np.ndarray
    plate_ids: dict[int, str]
    plates: np.ndarray

    @property
    def n(self) -> int:
        return len(self.inst)


def _plate_grid(df: pd.DataFrame, fmt: PlateFormat) -> _PlateGrid:
    df = df.sort_values(["plate", "replicate", "channel", "row", "col"], kind="stable").reset_index(
        drop=True
    )
    inst = df[["plate", "replicate", "channel"]].drop_duplicates().reset_index(drop=True)
    inst_index = pd.MultiIndex.from_frame(inst)
    idx = inst_index.get_indexer(pd.MultiIndex.from_frame(df[["plate", "replicate", "channel"]]))
    values = np.full((len(inst), fmt.rows, fmt.cols), np.nan)
    values[idx, df["row"].to_numpy(), df["col"].to_numpy()] = df["value"].to_numpy()
    files = df.groupby(["plate", "replicate", "channel"], sort=True)["file"].first().to_numpy()
    plate_ids = dict(zip(df["plate"].astype(int), df["plate_id"], strict=False))
    return _PlateGrid(
        inst=inst,
        values=values,
        files=files,
        plate_ids=plate_ids,
        plates=np.array(sorted(plate_ids), dtype=np.int64),
    )


@dataclass(slots=True)
class _Scores:
    """Per plate reading and well: roles, exclusions, normalised values, scores and plate QC."""

    plate_pos: np.ndarray
    role: np.ndarray
    excluded: np.ndarray
    vals: np.ndarray
    sample: np.ndarray
    neg: np.ndarray
    pos: np.ndarray
    normalised: np.ndarray
    norm_defined: np.ndarray
    rz: np.ndarray
    bs: np.ndarray
    qc: dict[str, np.ndarray]
    group: np.ndarray
    per_rep: np.ndarray
    qc_pass: np.ndarray
    qc_notes: np.ndarray


def _score_plates(
    grid: _PlateGrid, layout: pd.DataFrame, *, found: Inputs, fmt: PlateFormat, run_dir: Path
) -> _Scores:
    cfg, inst = found.settings, grid.inst
    plate_pos = np.searchsorted(grid.plates, inst["plate"].to_numpy())
    content_plate = layout["content"].to_numpy().reshape(len(grid.plates), fmt.rows, fmt.cols)
    role = _roles(content_plate, cfg["controls"])[plate_pos]
    # controls per channel (dual-channel screens): a channel's names replace the common ones
    channel_of = inst["channel"].astype(str).to_numpy()
    for chan, ctl in (cfg["controls"].get("channels") or {}).items():
        sel = channel_of == str(chan)
        if sel.any():
            role[sel] = _roles(content_plate, {**cfg["controls"], **ctl})[plate_pos[sel]]
    excluded = _excluded(found, inst, fmt=fmt, run_dir=run_dir)
    vals = np.where(excluded, np.nan, grid.values)
    sample, neg, pos, inh = (role == 0), (role == 1), (role == 2), (role == 3)
    method = cfg["normalisation"]
    normalised, norm_defined = stats.normalise(
        vals, method=method, sample=sample, negative=neg, positive=pos
    )
    rz = stats.robust_z(vals, sample=sample)
    bs = stats.b_score(vals, sample=sample)
    qc = stats.plate_qc(
        vals,
        negative=neg,
        positive=pos,
        inhibitor=inh
        if cfg["controls"]["inhibitor"]
        or any(c.get("inhibitor") for c in (cfg["controls"].get("channels") or {}).values())
        else None,
    )
    sign = -1.0 if cfg["score"]["sign"] == "-" else 1.0
    group = (
        pd.MultiIndex.from_frame(inst[["replicate", "channel"]]).factorize()[0]
        if grid.n
        else np.zeros(0, int)
    )
    score_method = cfg["score"]["method"]
    per_rep = {
        "zscore": lambda: stats.screen_zscore(normalised, sample=sample, group=group),
        "robust_z": lambda: rz,
        "b_score": lambda: bs,
        "normalised": lambda: normalised,
    }[score_method]()
    qc_pass, qc_notes = _qc_verdict(
        qc,
        norm_defined=norm_defined,
        method=method,
        thresholds=cfg["qc"],
        has_inhibitor=bool(cfg["controls"]["inhibitor"]),
    )
    return _Scores(
        plate_pos=plate_pos,
        role=role,
        excluded=excluded,
        vals=vals,
        sample=sample,
        neg=neg,
        pos=pos,
        normalised=normalised,
        norm_defined=norm_defined,
        rz=rz,
        bs=bs,
        qc=qc,
        group=group,
        per_rep=sign * per_rep,
        qc_pass=qc_pass,
        qc_notes=qc_notes,
    )


@dataclass(slots=True)
class _Replicates:
    """The replicate summary per (plate, channel) and the hits it calls."""

    pc_codes: np.ndarray
    reps: np.ndarray
    summary: np.ndarray
    n_reps: np.ndarray
    hit_pc: np.ndarray


def _replicate_hits(
    grid: _PlateGrid, sc: _Scores, *, cfg: dict[str, Any], fmt: PlateFormat
) -> _Replicates:
    # replicate summary per (plate, channel): a (groups, replicates, rows, cols) stack
    inst = grid.inst
    pc = pd.MultiIndex.from_frame(inst[["plate", "channel"]])
    pc_codes, pc_uniques = pc.factorize()
    reps = np.sort(inst["replicate"].unique())
    rep_pos = np.searchsorted(reps, inst["replicate"].to_numpy())
    stack = np.full((len(pc_uniques), len(reps), fmt.rows, fmt.cols), np.nan)
    stack[pc_codes, rep_pos] = sc.per_rep
    summary = stats.summarise_replicates(stack, method=cfg["score"]["summary"])
    n_reps = (~np.isnan(stack)).sum(axis=1)
    plate_ok_all = np.ones(len(pc_uniques), dtype=bool)
    np.logical_and.at(plate_ok_all, pc_codes, sc.qc_pass)
    is_sample_pc = np.zeros((len(pc_uniques), fmt.rows, fmt.cols), dtype=bool)
    is_sample_pc[pc_codes] = sc.sample
    thr, direction = float(cfg["hits"]["threshold"]), cfg["hits"]["direction"]
    with np.errstate(invalid="ignore"):
        cond = {"up": summary >= thr, "down": summary <= -thr, "both": np.abs(summary) >= thr}[
            direction
        ]
    hit_pc = cond & is_sample_pc & ~np.isnan(summary)
    if cfg["hits"]["require_qc_pass"]:
        hit_pc &= plate_ok_all[:, None, None]
    return _Replicates(pc_codes=pc_codes, reps=reps, summary=summary, n_reps=n_reps, hit_pc=hit_pc)


def _wells_table(
    grid: _PlateGrid,
    sc: _Scores,
    rep: _Replicates,
    layout: pd.DataFrame,
    *,
    fmt: PlateFormat,
    unit: str,
    file_samples: dict[str, str],
) -> pd.DataFrame:
    """One row per well of every plate reading, in (plate, replicate, channel, row, col) order.

    ``file_samples``: raw file (relative to the run folder) -> experiment.yaml sample id."""
    inst, n_plates, wells_per = grid.inst, grid.n, fmt.wells
    lay = layout.iloc[
        (sc.plate_pos[:, None] * wells_per + np.arange(wells_per)[None, :]).ravel()
    ].reset_index(drop=True)
    rr = np.tile(np.repeat(np.arange(fmt.rows), fmt.cols), n_plates)
    cc = np.tile(np.arange(fmt.cols), n_plates * fmt.rows)
    wells = pd.DataFrame(
        {
            "plate": np.repeat(inst["plate"].to_numpy(), wells_per).astype(np.int32),
            "plate_id": np.repeat(inst["plate"].map(grid.plate_ids).to_numpy(), wells_per).astype(
                str
            ),
            "replicate": np.repeat(inst["replicate"].to_numpy(), wells_per).astype(np.int16),
            "channel": np.repeat(inst["channel"].to_numpy(), wells_per).astype(np.int16),
            "well": np.array(
                [
                    f"{ROW_LETTERS[r]}{c + 1:02d}"
                    for r, c in zip(rr[:wells_per], cc[:wells_per], strict=True)
                ]
                * n_plates
            ),
            "row": np.array(ROW_LETTERS)[rr],
            "column": (cc + 1).astype(np.int16),
            "sample_id": lay["sample_id"]
            .astype(object)
            .where(lay["sample_id"].notna(), None)
            .to_numpy(),
            "compound": lay["compound"]
            .astype(object)
            .where(lay["compound"].notna(), None)
            .to_numpy(),
            "compound_chebi": _text(lay["compound_chebi"]),
            "compound_pubchem_cid": pd.array(lay["compound_pubchem_cid"], dtype="Int64"),
            "compound_inchikey": _text(lay["compound_inchikey"]),
            "experiment_sample_id": np.repeat(
                np.array([file_samples.get(str(f)) for f in grid.files], dtype=object), wells_per
            ),
            "concentration": lay["concentration"].to_numpy(dtype=np.float64),
            "concentration_unit": np.where(lay["concentration"].notna().to_numpy(), unit, None),
            "content": lay["content"].astype(str).to_numpy(),
            "control": np.array(ROLE_NAMES)[sc.role.ravel()],
            "excluded": sc.excluded.ravel(),
            "raw": grid.values.ravel(),
            "normalised": sc.normalised.ravel(),
            "robust_z": sc.rz.ravel(),
            "b_score": sc.bs.ravel(),
            "score": sc.per_rep.ravel(),
            "score_summary": rep.summary[rep.pc_codes].ravel(),
            "hit": rep.hit_pc[rep.pc_codes].ravel(),
            "plate_qc_pass": np.repeat(sc.qc_pass, wells_per),
        }
    )
    for col in [c for c in lay.columns if c.startswith("annot_")]:
        wells[col] = lay[col].astype(object).where(lay[col].notna(), None).to_numpy()
    return wells


def _text(col: pd.Series) -> np.ndarray:
    return col.astype(object).where(col.notna(), None).to_numpy()


def _plates_table(grid: _PlateGrid, sc: _Scores) -> pd.DataFrame:
    """One row per plate reading: counts, plate QC and its verdict."""
    inst, n_plates = grid.inst, grid.n
    wells_per = grid.values[0].size if n_plates else 0
    plates_df = pd.DataFrame(
        {
            "plate": inst["plate"].to_numpy().astype(np.int32),
            "plate_id": inst["plate"].map(grid.plate_ids).astype(str).to_numpy(),
            "replicate": inst["replicate"].to_numpy().astype(np.int16),
            "channel": inst["channel"].to_numpy().astype(np.int16),
            "file": grid.files.astype(str),
            "n_wells": np.full(n_plates, wells_per, dtype=np.int32),
            "n_missing": np.isnan(grid.values).reshape(n_plates, -1).sum(1).astype(np.int32),
            "n_excluded": sc.excluded.reshape(n_plates, -1).sum(1).astype(np.int32),
            "n_samples": (sc.sample & ~np.isnan(sc.vals))
            .reshape(n_plates, -1)
            .sum(1)
            .astype(np.int32),
            "median_samples": stats.plate_median(sc.vals, sc.sample),
            **{k: (v.astype(np.int32) if v.dtype.kind in "iu" else v) for k, v in sc.qc.items()},
            "normalisation_defined": sc.norm_defined,
            "qc_pass": sc.qc_pass,
            "qc_notes": sc.qc_notes,
        }
    )
    if "z_prime_inhibitor" not in plates_df:
        plates_df["n_inhibitor"] = np.zeros(n_plates, dtype=np.int32)
        plates_df["z_prime_inhibitor"] = np.nan
    return plates_df


def _hits_table(
    grid: _PlateGrid, rep: _Replicates, wells: pd.DataFrame, *, fmt: PlateFormat
) -> pd.DataFrame:
    """One row per hit (plate, channel, well), ranked by |score|."""
    wells_per = fmt.wells
    g, hr, hc = np.nonzero(rep.hit_pc)
    first_rep = pd.Series(np.arange(grid.n)).groupby(rep.pc_codes).first().to_numpy()
    hit_rows = first_rep[g] * wells_per + hr * fmt.cols + hc
    hits = wells.iloc[hit_rows][
        [
            "plate",
            "plate_id",
            "channel",
            "well",
            "row",
            "column",
            "sample_id",
            "compound",
            "concentration",
            "concentration_unit",
            "content",
            *[c for c in wells.columns if c.startswith("annot_")],
        ]
    ].reset_index(drop=True)
    hits.insert(hits.columns.get_loc("content") + 1, "score", rep.summary[g, hr, hc])
    hits.insert(
        hits.columns.get_loc("score") + 1, "n_replicates", rep.n_reps[g, hr, hc].astype(np.int16)
    )
    order = np.lexsort((hits.index.to_numpy(), -np.abs(hits["score"].to_numpy())))
    rank = np.empty(len(hits), dtype=np.int32)
    rank[order] = np.arange(1, len(hits) + 1)
    hits.insert(0, "rank", rank)
    return hits


def _single_format(df: pd.DataFrame) -> PlateFormat:
    counts = df.groupby("format")["file"].first()
    if len(counts) > 1:
        main = int(df["format"].mode().iloc[0])
        odd = df[df["format"] != main].drop_duplicates("file")
        raise InputError(
            [
                Problem(
                    f"wrong well count: a {int(r.format)}-well plate in a screen of {main}-well plates",
                    file=r.file,
                    where=f"plate {r.plate}",
                    hint="all plates of a screen share one format",
                )
                for r in odd.head(readers.MAX_PROBLEMS).itertuples()
            ]
        )
    return PlateFormat.of(int(counts.index[0]))


def _check_duplicates(df: pd.DataFrame) -> None:
    key = ["plate", "replicate", "channel", "row", "col"]
    dup = df.duplicated(key, keep=False)
    if not dup.any():
        return
    problems = []
    for (p, rep, ch), grp in df[dup].groupby(["plate", "replicate", "channel"]):
        files = sorted(grp["file"].unique())
        w = f"{ROW_LETTERS[int(grp['row'].iloc[0])]}{int(grp['col'].iloc[0]) + 1:02d}"
        problems.append(
            Problem(
                f"plate {p}, replicate {rep}, channel {ch} is read more than once "
                f"(from {', '.join(files)})",
                file=files[0],
                where=f"plate {p}, well {w}",
                hint="each plate/replicate/channel needs exactly one file",
            )
        )
    raise InputError(problems[: readers.MAX_PROBLEMS])


def _excluded(found: Inputs, inst: pd.DataFrame, *, fmt: PlateFormat, run_dir: Path) -> np.ndarray:
    """Mask of measurements flagged NA in the screen log (cellHTS2: excluded from everything)."""
    mask = np.zeros((len(inst), fmt.rows, fmt.cols), dtype=bool)
    if found.screen_log is None:
        return mask
    logdf = readers.read_screen_log(found.screen_log, root=run_dir)
    r, c = parse_wells(logdf["well"].to_numpy())
    lookup = {
        (int(p), int(rep), int(ch)): i
        for i, (p, rep, ch) in enumerate(inst.itertuples(index=False))
    }
    channels = sorted(inst["channel"].unique())
    for (p, rep, ch), ri, ci in zip(
        logdf[["plate", "replicate", "channel"]].itertuples(index=False), r, c, strict=False
    ):
        if ri < 0 or ri >= fmt.rows or ci >= fmt.cols:
            continue
        for chan in [ch] if ch else channels:
            i = lookup.get((int(p), int(rep), int(chan)))
            if i is not None:
                mask[i, ri, ci] = True
    return mask


def _qc_verdict(
    qc: dict[str, np.ndarray],
    *,
    norm_defined: np.ndarray,
    method: str,
    thresholds: dict[str, float],
    has_inhibitor: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Pass/fail per plate and the reasons, in words a researcher can act on."""
    n = len(norm_defined)
    ok = np.ones(n, dtype=bool)
    notes: list[list[str]] = [[] for _ in range(n)]
    zmin, sbmin, cvmax = (
        thresholds["z_prime_min"],
        thresholds["signal_to_background_min"],
        thresholds["cv_max"],
    )
    for i in range(n):
        npos, nneg = int(qc["n_positive"][i]), int(qc["n_negative"][i])
        if npos == 0 and nneg == 0:
            ok[i] = False
            notes[i].append("no controls: Z' undefined")
        elif npos == 0 or nneg == 0:
            ok[i] = False
            notes[i].append(f"no {'positive' if npos == 0 else 'negative'} controls: Z' undefined")
        elif npos < 2 or nneg < 2:
            notes[i].append(
                f"Z' undefined: {npos} positive / {nneg} negative control wells (needs 2 each)"
            )
        z = qc["z_prime"][i]
        if np.isfinite(z) and z < zmin:
            ok[i] = False
            notes[i].append(f"Z' {z:.2f} < {zmin}")
        sb = qc["signal_to_background"][i]
        if np.isfinite(sb) and sb > 0 and max(sb, 1 / sb) < sbmin:
            ok[i] = False
            notes[i].append(f"S/B fold {max(sb, 1 / sb):.2f} < {sbmin}")
        for kind in ("positive", "negative"):
            cv = qc[f"cv_{kind}"][i]
            if np.isfinite(cv) and cv > cvmax:
                ok[i] = False
                notes[i].append(f"CV of {kind} controls {cv:.1f}% > {cvmax}%")
        if has_inhibitor:
            zi = qc["z_prime_inhibitor"][i]
            if np.isfinite(zi) and zi < zmin:
                ok[i] = False
                notes[i].append(f"Z' of inhibitor controls {zi:.2f} < {zmin}")
        if not norm_defined[i]:
            notes[i].append(
                f"normalisation '{method}' undefined on this plate (its wells are null)"
            )
    return ok, np.array(["; ".join(x) for x in notes], dtype=object)


def _screen_figures(normalised, *, neg, pos, inst, per_rep, sample, group) -> dict[str, Any]:
    """Screen-wide robust Z' per replicate/channel on the normalised values (cellHTS2 getZfactor
    with robust=TRUE pools the controls of all plates) and the replicate correlation of the score."""
    out: dict[str, Any] = {}
    for g in np.unique(group):
        sel = group == g
        rep, ch = int(inst["replicate"][sel].iloc[0]), int(inst["channel"][sel].iloc[0])
        p, n = normalised[sel][pos[sel]], normalised[sel][neg[sel]]
        p, n = p[~np.isnan(p)], n[~np.isnan(n)]
        z = np.nan
        if p.size > 1 and n.size > 1:
            mp, mn = np.median(p), np.median(n)
            sp = stats.MAD_SCALE * np.median(np.abs(p - mp))
            sn = stats.MAD_SCALE * np.median(np.abs(n - mn))
            z = 1 - 3 * (sp + sn) / abs(mp - mn) if mp != mn else np.nan
        out[f"robust_z_prime_screen_r{rep}_c{ch}"] = (
            None if not np.isfinite(z) else round(float(z), 6)
        )
    reps = sorted(inst["replicate"].unique())
    if len(reps) >= 2:
        a = inst.assign(i=np.arange(len(inst)))
        r1 = a[a.replicate == reps[0]].set_index(["plate", "channel"])["i"]
        r2 = a[a.replicate == reps[1]].set_index(["plate", "channel"])["i"]
        both = r1.index.intersection(r2.index)
        x = per_rep[r1[both].to_numpy()][sample[r1[both].to_numpy()]]
        y = per_rep[r2[both].to_numpy()][sample[r2[both].to_numpy()]]
        ok = np.isfinite(x) & np.isfinite(y)
        corr = float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() > 2 else np.nan
        out["replicate_correlation"] = None if not np.isfinite(corr) else round(corr, 6)
    return out


def _description_facts(found: Inputs) -> dict[str, Any]:
    if found.description is None:
        return {}
    desc = readers.read_description(found.description).get("Screen description", {})
    keep = {
        "Screen": "screen",
        "Title": "screen_title",
        "Organism": "organism",
        "Celltype": "cell_type",
        "Library": "library",
        "Assay": "assay",
        "Screentype": "screen_type",
    }
    return {v: desc[k] for k, v in keep.items() if desc.get(k)}


# --------------------------------------------------------------------------- step 3: dose-response
DOSE_COLUMNS = (
    "compound_key",
    "sample_id",
    "compound",
    "channel",
    "n_points",
    "n_concentrations",
    "concentration_min",
    "concentration_max",
    "concentration_unit",
    "bottom",
    "top",
    "ec50",
    "log10_ec50",
    "ec50_ci_low",
    "ec50_ci_high",
    "hill",
    "r2",
    "direction",
    "converged",
    "iterations",
    "fit_ok",
    "status",
    "n_hit_wells",
)


DOSE_INPUT_COLUMNS = (
    "sample_id",
    "compound",
    "channel",
    "concentration",
    "control",
    "excluded",
    "raw",
    "normalised",
    "hit",
)


def fit_dose_response(wells: pd.DataFrame, *, block: dict[str, Any] | None) -> pd.DataFrame:
    """4PL fit per compound and channel over its sample wells with a concentration > 0 (all
    plates and replicates pooled): the ``dose_response`` table (empty with its columns when the
    screen has no concentrations)."""
    cfg = dose_settings(block)
    groups = _dose_groups(
        wells, response=cfg["response"], min_concentrations=cfg["min_concentrations"]
    )
    if not groups:
        return pd.DataFrame({c: pd.Series(dtype=_dose_dtype(c)) for c in DOSE_COLUMNS})
    lx, y, wt = dose.pad_curves(
        [
            (np.log10(grp["concentration"].to_numpy()), grp[cfg["response"]].to_numpy())
            for _, _, grp in groups
        ]
    )
    fits = dose.fit_4pl(
        lx,
        y,
        wt,
        hill_min=cfg["hill_min"],
        hill_max=cfg["hill_max"],
        max_iter=cfg["max_iterations"],
        r2_min=cfg["r2_min"],
    )
    res = pd.DataFrame(
        [_curve_row(ck, ch, grp, unit=cfg["concentration_unit"]) for ck, ch, grp in groups]
    )
    res["bottom"], res["top"], res["hill"], res["r2"] = fits.bottom, fits.top, fits.hill, fits.r2
    res["log10_ec50"] = fits.log10_ec50
    res["ec50"] = 10.0**fits.log10_ec50
    res["ec50_ci_low"] = 10.0**fits.log10_ec50_ci_low
    res["ec50_ci_high"] = 10.0**fits.log10_ec50_ci_high
    res["direction"] = np.where(
        fits.top < fits.bottom, "decreasing", np.where(fits.top > fits.bottom, "increasing", "flat")
    )
    res["converged"], res["iterations"] = fits.converged, fits.iterations.astype(np.int32)
    res["fit_ok"], res["status"] = fits.ok, fits.status
    log.info("dose-response: %d curves, %d fit ok", len(res), int(fits.ok.sum()))
    return res[list(DOSE_COLUMNS)].astype(
        {
            "channel": np.int16,
            "n_points": np.int32,
            "n_concentrations": np.int32,
            "n_hit_wells": np.int32,
        }
    )


def dose_settings(block: dict[str, Any] | None) -> dict[str, Any]:
    """The block's dose-response settings (stamped in ``dose_response.parquet``)."""
    from pipelines.modalities.screening.config import settings

    return settings(block)["dose_response"]


def _dose_groups(
    wells: pd.DataFrame, *, response: str, min_concentrations: int
) -> list[tuple[Any, Any, pd.DataFrame]]:
    """(compound key, channel, wells) of each curve to fit: the usable sample wells with a
    concentration, keyed by compound (or sample id where there is no compound name), of the
    compounds measured at ``min_concentrations`` or more."""
    w = wells[list(DOSE_INPUT_COLUMNS)]
    key = w["compound"].where(w["compound"].notna(), w["sample_id"])
    sel = (
        (w["control"] == "sample")
        & ~w["excluded"]
        & (w["concentration"] > 0)
        & key.notna()
        & np.isfinite(w[response])
    )
    d = w[sel].assign(compound_key=key[sel])
    return [
        (ck, ch, grp)
        for (ck, ch), grp in d.groupby(["compound_key", "channel"], sort=True)
        if grp["concentration"].nunique() >= min_concentrations
    ]


def _curve_row(ck: Any, ch: Any, grp: pd.DataFrame, *, unit: str) -> dict[str, Any]:
    """What one curve's wells are: who, how many points, which concentration range."""
    first = grp.iloc[0]
    return {
        "compound_key": str(ck),
        "sample_id": first["sample_id"],
        "compound": first["compound"],
        "channel": int(ch),
        "n_points": len(grp),
        "n_concentrations": int(grp["concentration"].nunique()),
        "concentration_min": float(grp["concentration"].min()),
        "concentration_max": float(grp["concentration"].max()),
        "concentration_unit": unit,
        "n_hit_wells": int(grp["hit"].sum()),
    }


def _dose_dtype(col: str) -> str:
    if col in (
        "compound_key",
        "sample_id",
        "compound",
        "concentration_unit",
        "direction",
        "status",
    ):
        return "object"
    if col in ("converged", "fit_ok"):
        return "bool"
    if col == "channel":
        return "int16"
    if col in ("n_points", "n_concentrations", "iterations", "n_hit_wells"):
        return "int32"
    return "float64"


# --------------------------------------------------------------------------- step 5: metrics
def write_metrics(
    *,
    wells: str | Path,
    plates: str | Path,
    hits: str | Path,
    dose_response: str | Path,
    plots: list[str | Path],
    out: str | Path,
) -> Path:
    """``qc/metrics.json``: the flat key figures the catalog keeps (numbers and strings only)."""
    pl = pd.read_parquet(plates)
    h = pd.read_parquet(hits, columns=["score"])
    dr = pd.read_parquet(dose_response, columns=["fit_ok"])
    w = pd.read_parquet(wells, columns=["control", "excluded", "hit", "plate", "channel", "well"])
    meta_screen = parquet_meta(wells, "screen") or {}
    settings_used = parquet_meta(wells, "settings") or {}
    samples = w[(w["control"] == "sample") & ~w["excluded"]].drop_duplicates(
        ["plate", "channel", "well"]
    )

    def med(col: str) -> float | None:
        v = pl[col].dropna()
        return None if v.empty else round(float(v.median()), 6)

    metrics: dict[str, Any] = {
        "modality": "screening",
        "input_kind": parquet_meta(wells, "input_kind"),
        "plate_format": int(pl["n_wells"].iloc[0]) if len(pl) else None,
        "n_plates": int(pl["plate"].nunique()),
        "n_plate_readings": len(pl),
        "n_replicates": int(pl["replicate"].nunique()),
        "n_channels": int(pl["channel"].nunique()),
        "n_wells": len(w),
        "n_excluded_wells": int(w["excluded"].sum()),
        "normalisation": settings_used.get("normalisation"),
        "score_method": (settings_used.get("score") or {}).get("method"),
        "hit_threshold": (settings_used.get("hits") or {}).get("threshold"),
        "n_hits": len(h),
        "hit_rate": round(len(h) / len(samples), 6) if len(samples) else None,
        "plates_qc_pass": int(pl["qc_pass"].sum()),
        "plates_qc_fail": int((~pl["qc_pass"]).sum()),
        # a reading without positive or negative controls has no Z' (the verdict line says so)
        "plates_without_controls": int(((pl["n_positive"] == 0) | (pl["n_negative"] == 0)).sum()),
        "z_prime_median": med("z_prime"),
        "robust_z_prime_median": med("robust_z_prime"),
        "signal_to_background_median": med("signal_to_background"),
        "cv_negative_median": med("cv_negative"),
        "n_dose_response_fits": len(dr),
        "n_dose_response_fits_ok": int(dr["fit_ok"].sum()),
        "n_plots": len(plots),
    }
    metrics.update(meta_screen)
    return write_json(out, metrics)


@dataclass(frozen=True, slots=True)
class ScreenResult:
    """A processed screen: :class:`ScoredScreen` and its dose-response fits."""

    scored: ScoredScreen
    dose_response: pd.DataFrame
    dose_settings: dict[str, Any]


def process_screen(
    *,
    run_dir: str | Path,
    block: dict[str, Any] | None,
    raw: list[str | Path],
    samples: list[dict[str, Any]] | None = None,
    by_run_id: bool = False,
) -> ScreenResult:
    """:func:`score_screen` then :func:`fit_dose_response` on its wells, for one workflow job:
    on a busy node each extra job costs seconds of interpreter start-up, more than the fits
    themselves.  :func:`write_screen` writes the result."""
    scored = score_screen(
        run_dir=run_dir, block=block, raw=raw, samples=samples, by_run_id=by_run_id
    )
    return ScreenResult(
        scored=scored,
        dose_response=fit_dose_response(scored.wells, block=block),
        dose_settings=dose_settings(block),
    )


def write_screen(
    result: ScreenResult,
    *,
    wells_out: str | Path,
    plates_out: str | Path,
    hits_out: str | Path,
    dose_response_out: str | Path,
    facts_out: str | Path,
) -> dict[str, Any]:
    """Write a processed screen: the four ``data/*.parquet`` tables and ``_meta/facts.json``.
    Returns the screen-wide figures (also stored in the tables' metadata)."""
    scored = result.scored
    write_parquet(scored.wells, wells_out, meta=scored.meta)
    write_parquet(scored.plates, plates_out, meta=scored.meta)
    write_parquet(scored.hits, hits_out, meta=scored.meta)
    write_json(facts_out, {"facts": scored.facts, "conflicts": scored.conflicts})
    write_parquet(result.dose_response, dose_response_out, meta={"settings": result.dose_settings})
    return scored.figures
