"""Cryo-EM density maps: MRC/CCP4 -> OME-Zarr multiscale with half maps and mask, QC, FSC.

Entry points (all keyword-only, no Snakemake/Prefect imports):

- :func:`resolve_inputs` - which file is the map, the half maps, the mask (block or names);
- :func:`preflight` / :func:`inspect_inputs` - header checks of every file before compute;
  ``inspect_inputs`` also writes ``_meta/facts.json`` (header facts, YAML conflicts);
- :func:`convert_maps` - ``data/map.ome.zarr`` (streaming, see :mod:`.ngff`);
- :func:`map_qc`, :func:`fsc_half_maps` - QC files (see :mod:`.qc`);
- :func:`write_metrics` - ``qc/metrics.json``;
- :func:`make_demo_run` - a synthetic run folder (see :mod:`.demo`).

The output format is documented in ``docs/formats/cryoem.md``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, Problem
from pipelines.modalities import ModalitySpec
from pipelines.modalities.cryoem.demo import make_demo_run
from pipelines.modalities.cryoem.mrc import MapHeader, open_header, read_header
from pipelines.modalities.cryoem.qc import fsc_half_maps, grid_problems, map_qc
from pipelines.toolkit.inputs import InputSet, RunFolder, sample_of_files
from pipelines.toolkit.qc import Figure, QcCheck, number

# not `run_ids`: a modality's attribute of that name is its own run-id hook (pipelines.run.runner)
from pipelines.toolkit.run_ids import run_ids as ids_in_path_order
from pipelines.toolkit.stage import write_json

__all__ = [
    "DESCRIPTION",
    "MODALITY",
    "RAW_PATTERNS",
    "CryoemInputs",
    "convert_maps",
    "fsc_half_maps",
    "inspect_inputs",
    "list_inputs",
    "make_demo_run",
    "map_qc",
    "preflight",
    "resolve_inputs",
    "write_metrics",
]

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Cryo-EM density maps (MRC/CCP4, with optional half maps and mask) -> OME-Zarr, map QC, FSC"
)
RAW_PATTERNS: tuple[str, ...] = tuple(
    f"**/*{ext}"
    for ext in (
        ".mrc",
        ".map",
        ".ccp4",
        ".mrc.gz",
        ".map.gz",
        ".ccp4.gz",
        ".mrc.bz2",
        ".map.bz2",
        ".ccp4.bz2",
    )
)


def _fsc_resolution(m: Mapping[str, Any]) -> Figure:
    res = m.get("resolution_fsc0143_angstrom")
    if res == "beyond Nyquist":
        return (
            "the FSC never fell below 0.143, so no resolution can be read (see FSC 0.143 crossing)"
        )
    return None if res is None else number(m, "resolution_fsc0143_angstrom")


def _fsc_crossed(m: Mapping[str, Any]) -> Figure:
    res = m.get("resolution_fsc0143_angstrom")
    if res is None:
        return "no half maps given" if not m.get("n_half_maps") else None
    return 0.0 if res == "beyond Nyquist" else 1.0


#: The QC of a map, declared once (pipelines.toolkit.qc): both need the half maps.
QC: tuple[QcCheck, ...] = (
    QcCheck(
        name="FSC 0.143 crossing",
        metric="resolution_fsc0143_angstrom",
        unit="",
        threshold=1,
        direction=">=",
        value=_fsc_crossed,
        labels={1.0: "crossed", 0.0: "never crossed"},
        meaning="the half-map FSC falls below 0.143 before Nyquist; if it never does, the "
        "half maps are not independent (or the map is oversampled)",
        on_fail="check that the half maps were refined independently and that the voxel size "
        "is right; re-run with the right half maps",
    ),
    QcCheck(
        name="resolution",
        metric="resolution_fsc0143_angstrom",
        unit="Å",
        threshold="expected_resolution_angstrom",
        direction="<=",
        value=_fsc_resolution,
        meaning="the gold-standard FSC 0.143 resolution reaches the resolution expected for "
        "this sample (smaller is better)",
        on_fail="tell the researcher the map is below the expected resolution; check masking, "
        "particle count and the expectation in experiment.yaml",
        absent="no half maps given (the FSC resolution needs two half maps)",
    ),
)


MODALITY = ModalitySpec(
    name="cryoem",
    main_data="data/map.ome.zarr",
    description=DESCRIPTION,
    technique="cryo-electron microscopy",
    raw_patterns=RAW_PATTERNS,
    software=("mrcfile", "zarr", "numcodecs", "scipy", "matplotlib"),
    qc=QC,
)
EXPERIMENT_FILE = "experiment.yaml"
# Names that mark a half map (RELION run_half1_..., EMDB emd_N_half_map_1, cryoSPARC map_half_A)
_HALF = re.compile(r"half[_\-.]?(?:map[_\-.]?)?([12ab])(?![0-9a-z])", re.IGNORECASE)
_HALF_GLOBS = {"1": ("*half*1*", "*_half_map_1*"), "2": ("*half*2*", "*_half_map_2*")}
_MASK = re.compile(r"msk|mask", re.IGNORECASE)


# ------------------------------------------------------------------------------ inputs
@dataclass(frozen=True, slots=True)
class CryoemInputs:
    """The files of one run, by role.  ``problems`` lists what prevents a run (none: runnable)."""

    run_dir: Path
    map: Path | None
    half_maps: tuple[Path, ...] = ()
    mask: Path | None = None
    problems: tuple[Problem, ...] = ()
    ignored: tuple[Path, ...] = field(default=())
    #: str(path) -> the name it goes by instead (human data: run ids, :meth:`by_run_id`)
    aliases: Mapping[str, str] = field(default_factory=dict)

    def by_run_id(self) -> CryoemInputs:
        """These inputs named by their run ids (human data: ``run-001`` ... in path order, as
        ``_meta/run_ids.json`` records them) in every file the workflow writes."""
        ids = ids_in_path_order(self.all_files)
        return replace(self, aliases={str(p): rid for rid, p in ids.items()})

    def name(self, path: Path | None) -> str | None:
        """``path`` as the user knows it: relative to the run folder when inside it (its run
        id for human data)."""
        if path is None:
            return None
        if self.aliases:
            return self.aliases.get(str(path), "a file of the run folder")
        for p, base in ((path, self.run_dir), (path.resolve(), self.run_dir.resolve())):
            try:  # unresolved first: a symlink in the run folder keeps its name there
                return p.relative_to(base).as_posix()
            except ValueError:
                continue
        return str(path)

    @property
    def all_files(self) -> list[Path]:
        return [p for p in (self.map, *self.half_maps, self.mask) if p is not None]


def _raw_files(folder: RunFolder, problems: list[Problem]) -> list[Path]:
    return folder.find(RAW_PATTERNS, problems=problems)


def _half_number(rel: str) -> str | None:
    name = rel.rsplit("/", 1)[-1]
    if m := _HALF.search(name):
        return {"1": "1", "a": "1", "2": "2", "b": "2"}[m.group(1).lower()]
    low = name.lower()
    for num, globs in _HALF_GLOBS.items():
        if any(fnmatch.fnmatch(low, g) for g in globs):
            return num
    return None


def resolve_inputs(*, run_dir: str | Path, block: dict[str, Any] | None = None) -> CryoemInputs:
    """Find the map, half maps and mask of a run folder.  Cheap (names only); raises nothing.

    Files named in the ``cryoem`` block of experiment.yaml win; the rest is recognised by name
    among the raw files (``RAW_PATTERNS``): half maps contain ``half`` followed by 1/2 (or A/B),
    masks contain ``mask`` or ``msk``, and the one remaining file is the map.
    """
    run_dir = Path(os.path.abspath(run_dir))
    block = dict(block or {})
    problems: list[Problem] = []
    folder = RunFolder(run_dir)
    raw = _raw_files(folder, problems)
    map_path, mask, half_maps = _named_inputs(folder, block, problems)
    explicit = {p.resolve() for p in (map_path, mask, *half_maps) if p}
    rest = [p for p in raw if p.resolve() not in explicit]
    if block.get("half_maps") is None:
        half_maps, rest = _half_maps_by_name(folder, rest, problems)
    elif len(half_maps) not in (0, 2) and not problems:
        problems.append(
            Problem(
                f"{len(half_maps)} half map(s) given, the FSC needs exactly two",
                file=EXPERIMENT_FILE,
                where="cryoem.half_maps",
                hint="list both half maps, or write 'half_maps: []' for none",
            )
        )
    if block.get("mask") is None:  # absent or null: recognise by name; false: no mask
        mask, rest = _mask_by_name(folder, rest, problems)
    ignored: list[Path] = []
    if map_path is None and not block.get("map"):
        map_path = _map_by_elimination(
            folder, rest, has_half_maps=bool(half_maps), problems=problems
        )
    else:
        ignored = rest
    return CryoemInputs(
        run_dir=run_dir,
        map=map_path,
        half_maps=tuple(half_maps),
        mask=mask,
        problems=tuple(problems),
        ignored=tuple(ignored),
    )


def _named_inputs(
    folder: RunFolder, block: dict[str, Any], problems: list[Problem]
) -> tuple[Path | None, Path | None, list[Path]]:
    """The map, mask and half maps experiment.yaml names (each through the run-folder guard)."""

    def named(key: str, value: Any) -> Path | None:
        try:
            p = folder.reference(str(value), where=f"cryoem.{key}")
        except InputError as err:
            problems.extend(err.problems)
            return None
        if not p.is_file():
            problems.append(
                Problem(
                    f"{value!r} is not a file",
                    file=EXPERIMENT_FILE,
                    where=f"cryoem.{key}",
                    hint="name the map file, relative to the run folder",
                )
            )
            return None
        return p

    map_path = named("map", block["map"]) if block.get("map") else None
    mask = named("mask", block["mask"]) if block.get("mask") else None
    half_maps = [
        p
        for i, value in enumerate(block.get("half_maps") or [])
        if (p := named(f"half_maps[{i}]", value)) is not None
    ]
    return map_path, mask, half_maps


def _half_maps_by_name(
    folder: RunFolder, rest: list[Path], problems: list[Problem]
) -> tuple[list[Path], list[Path]]:
    """Exactly one file named like half map 1 and one like half map 2; (half maps, the rest)."""
    by_num: dict[str, list[Path]] = {"1": [], "2": []}
    for p in rest:
        if (num := _half_number(folder.rel(p))) is not None:
            by_num[num].append(p)
    found = by_num["1"] + by_num["2"]
    rest = [p for p in rest if p not in found]
    if len(by_num["1"]) == 1 and len(by_num["2"]) == 1:
        return [by_num["1"][0], by_num["2"][0]], rest
    if found:
        problems.append(
            Problem(
                f"found {len(by_num['1'])} file(s) named like half map 1 and "
                f"{len(by_num['2'])} like half map 2: {', '.join(folder.rel(p) for p in found)}",
                file=EXPERIMENT_FILE,
                where="cryoem.half_maps",
                hint="name exactly two with 'half_maps: [A_half_1.mrc, A_half_2.mrc]', or 'half_maps: []' for none",
            )
        )
    return [], rest


def _mask_by_name(
    folder: RunFolder, rest: list[Path], problems: list[Problem]
) -> tuple[Path | None, list[Path]]:
    masks = [p for p in rest if _MASK.search(folder.rel(p).rsplit("/", 1)[-1])]
    rest = [p for p in rest if p not in masks]
    if len(masks) > 1:
        problems.append(
            Problem(
                f"several files look like a mask: {', '.join(folder.rel(p) for p in masks)}",
                file=EXPERIMENT_FILE,
                where="cryoem.mask",
                hint="name the one to use with 'mask: FILE'",
            )
        )
    return (masks[0] if len(masks) == 1 else None), rest


def _map_by_elimination(
    folder: RunFolder, rest: list[Path], *, has_half_maps: bool, problems: list[Problem]
) -> Path | None:
    """The one map file left once half maps and mask are recognised."""
    if len(rest) == 1:
        return rest[0]
    if not rest:
        hint = (
            "name the full (sharpened or unsharpened) map with 'map: FILE' in the cryoem block"
            if has_half_maps
            else "copy the .mrc/.map/.ccp4 file into the run folder"
        )
        problems.append(
            Problem(
                "no map found (.mrc, .map, .ccp4, optionally .gz/.bz2)",
                file=str(folder.root),
                where="cryoem.map",
                hint=hint,
            )
        )
    else:
        problems.append(
            Problem(
                f"several candidate maps: {', '.join(folder.rel(p) for p in rest)}",
                file=EXPERIMENT_FILE,
                where="cryoem.map",
                hint="name the map with 'map: FILE' in the cryoem block "
                "(half maps and mask are recognised by 'half'/'mask' in their names)",
            )
        )
    return None


def list_inputs(run_dir: str | Path, experiment: dict[str, Any]) -> InputSet:
    """Every file the cryo-EM workflow reads (map, half maps, mask), and what stops it."""
    found = resolve_inputs(run_dir=run_dir, block=(experiment or {}).get("cryoem"))
    files = tuple(sorted(found.all_files))
    problems = list(found.problems)
    # samples[].files is checked like in every modality (a map has one sample: nothing to tag)
    sample_of_files(run_dir, experiment or {}, files, modality="cryoem", problems=problems)
    return InputSet(files=files, problems=tuple(problems))


def voxel_override(block: dict[str, Any] | None) -> tuple[float, float, float] | None:
    """``cryoem.voxel_size`` (a number, or [x, y, z] in angstrom) as (z, y, x), or None."""
    value = (block or {}).get("voxel_size")
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    x, y, z = (float(v) for v in value)
    return (z, y, x)


# ------------------------------------------------------------------------------ checks
def _check(
    run_dir: Path, block: dict[str, Any], *, by_run_id: bool = False
) -> tuple[CryoemInputs, dict[str, MapHeader], list[Problem], list[dict[str, Any]]]:
    inputs = resolve_inputs(run_dir=run_dir, block=block)
    if by_run_id:
        inputs = inputs.by_run_id()
    problems = list(inputs.problems)
    headers: dict[str, MapHeader] = {}
    roles = [
        ("map", inputs.map),
        ("half_map_1", inputs.half_maps[0] if inputs.half_maps else None),
        ("half_map_2", inputs.half_maps[1] if len(inputs.half_maps) > 1 else None),
        ("mask", inputs.mask),
    ]
    for role, path in roles:
        if path is None:
            continue
        header, found = read_header(path, display=inputs.name(path))
        problems += found
        if header is not None:
            headers[role] = header
    ref = headers.get("map")
    if ref is not None:
        problems += grid_problems(ref, [h for r, h in headers.items() if r != "map"])
    if "half_map_1" in headers and "half_map_2" in headers and ref is None:
        problems += grid_problems(headers["half_map_1"], [headers["half_map_2"]])
    conflicts: list[dict[str, Any]] = []
    override = voxel_override(block)
    if ref is not None:
        header_voxel = ref.voxel_size_zyx
        if override is None and min(header_voxel) <= 0:
            problems.append(
                Problem(
                    f"voxel size {header_voxel} Å (z, y, x) from the header is not positive",
                    file=ref.display,
                    where="header CELLA/MX/MY/MZ",
                    hint="set it in experiment.yaml: 'cryoem: {voxel_size: 1.06}' (angstrom)",
                )
            )
        elif (
            override is not None
            and min(header_voxel) > 0
            and any(abs(a - b) > 1e-3 * b for a, b in zip(override, header_voxel, strict=True))
        ):
            conflicts.append(
                {
                    "field": "voxel_size_zyx_angstrom",
                    "experiment_yaml": list(override),
                    "header": [round(v, 6) for v in header_voxel],
                    "used": "experiment_yaml",
                    "message": f"{EXPERIMENT_FILE}: cryoem.voxel_size {list(override)} Å "
                    f"differs from the header of {ref.display} "
                    f"{[round(v, 4) for v in header_voxel]} Å (z, y, x); using experiment.yaml",
                }
            )
    return inputs, headers, problems, conflicts


def preflight(run_dir: Path, experiment: dict) -> list[Problem]:
    """Cheap checks before any compute: file roles, headers, sizes, grids.  Raises nothing."""
    block = dict((experiment or {}).get("cryoem") or {})
    try:
        return _check(Path(run_dir), block)[2]
    except Exception as err:  # preflight must report, never crash binds validate
        return [Problem(f"cannot check the cryo-EM files: {err}", file=str(run_dir))]


def inspect_inputs(
    *,
    run_dir: str | Path,
    block: dict[str, Any] | None,
    facts_json: str | Path,
    by_run_id: bool = False,
) -> dict[str, Any]:
    """Check every input header, write ``_meta/facts.json``; raise :class:`InputError` on problems.

    The facts fill metadata.jsonld: shape, voxel size (after a YAML override), mode, labels,
    space group and axis order of the map, the files by role, and the run's block parameters.
    """
    block = dict(block or {})
    inputs, headers, problems, conflicts = _check(Path(run_dir), block, by_run_id=by_run_id)
    if problems:
        raise InputError(problems)
    ref = headers["map"]
    voxel = voxel_override(block) or ref.voxel_size_zyx
    for p in inputs.ignored:
        log.warning("not used (the map is named in experiment.yaml): %s", inputs.name(p))
    facts: dict[str, Any] = {
        "map_file": ref.display,
        "map_shape_zyx": list(ref.shape_zyx),
        "voxel_size_zyx_angstrom": [round(v, 6) for v in voxel],
        "voxel_size_source": "experiment.yaml" if voxel_override(block) else "header",
        "mrc_mode": ref.mode,
        "dtype": str(ref.dtype),
        "axis_order_crs": ref.facts()["axis_order_crs"],
        "space_group": ref.space_group,
        "cell_angles_deg": ref.facts()["cell_angles_deg"],
        "translation_zyx_angstrom": [round(t, 6) for t in ref.translation_zyx(voxel)],
        "labels": " | ".join(ref.labels),
        "extended_header_bytes": ref.ext_header_bytes,
        "compression": ref.compression or "none",
        "half_maps": [headers[r].display for r in ("half_map_1", "half_map_2") if r in headers],
        "mask": headers["mask"].display if "mask" in headers else None,
        "symmetry": block.get("symmetry"),
        "expected_resolution_angstrom": block.get("expected_resolution"),
        "contour_level": block.get("contour_level"),
    }
    # facts are flat (metadata.jsonld lists them as PropertyValues); None = not known
    facts = {k: v for k, v in facts.items() if v is not None}
    write_json(facts_json, {"facts": facts, "conflicts": conflicts})
    return facts


# ------------------------------------------------------------------------------ conversion
def convert_maps(
    *,
    map: str | Path,
    out: str | Path,
    half_maps: list[str | Path] | tuple = (),
    mask: str | Path | None = None,
    voxel_size_zyx: tuple[float, float, float] | None = None,
    mask_threshold: float = 0.5,
    names: dict[str, str] | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    """Write ``out`` (``data/map.ome.zarr``): the map as the root multiscale image, half maps as
    the images ``half_map_1`` and ``half_map_2``, the mask as the label image ``labels/mask``.

    Streams each file brick by brick (memory independent of the map size), compressing
    ``threads`` chunks at once.  ``names`` maps a path to the name shown in errors and
    attributes (default: the file name).

    Raises
    ------
    InputError
        A file is broken (truncated, wrong mode, NaN/Inf), or half maps / mask are not on the
        map's grid.
    """
    # zarr is imported here, not at module level: the header-check job starts ~1.4 s faster
    from pipelines.modalities.cryoem.ngff import open_root, write_image

    names = {str(k): v for k, v in (names or {}).items()}

    def header(p: str | Path) -> MapHeader:
        return open_header(p, display=names.get(str(p), Path(p).name))

    ref = header(map)
    halves = [header(p) for p in half_maps]
    mask_header = header(mask) if mask else None
    if problems := grid_problems(ref, halves + ([mask_header] if mask_header else [])):
        raise InputError(problems)
    voxel = tuple(voxel_size_zyx) if voxel_size_zyx else ref.voxel_size_zyx
    root = open_root(out)

    def attrs(h: MapHeader, role: str) -> dict[str, Any]:
        return {
            "role": role,
            "source_file": h.display,
            "mrc_header": h.header_fields,
            "header_facts": h.facts(),
            "voxel_size_source": "experiment.yaml" if voxel_size_zyx else "header",
        }

    # (role, header, group path in the store, extra attributes, label threshold)
    parts: list[tuple[str, MapHeader, str, dict[str, Any], float | None]] = [
        (
            "map",
            ref,
            "",
            {
                "half_maps": [f"half_map_{i + 1}" for i in range(len(halves))],
                "mask": "labels/mask" if mask_header else None,
            },
            None,
        )
    ]
    parts += [(f"half_map_{i + 1}", h, f"half_map_{i + 1}", {}, None) for i, h in enumerate(halves)]
    if mask_header:
        root.require_group("labels").update_attributes(
            {"ome": {"version": "0.5", "labels": ["mask"]}}
        )
        parts.append(("mask", mask_header, "labels/mask", {}, mask_threshold))
    images = {
        role: write_image(
            root,
            h,
            path=path,
            name=role,
            voxel_size_zyx=voxel,
            binds_attrs=attrs(h, role) | extra,
            label_threshold=threshold,
            threads=threads,
        )
        for role, h, path, extra, threshold in parts
    }
    return {
        role: {"shapes": [list(s) for s in w.shapes], "dtype": w.dtype}
        for role, w in images.items()
    }


# ------------------------------------------------------------------------------ metrics
def write_metrics(
    *,
    zarr_path: str | Path,
    stats_json: str | Path,
    facts_json: str | Path,
    metrics_json: str | Path,
    fsc_json: str | Path | None = None,
) -> dict[str, Any]:
    """``qc/metrics.json``: the flat key figures the catalog keeps (numbers and strings)."""
    import zarr

    from pipelines.modalities.cryoem.ngff import FORMAT_NAME, FORMAT_VERSION

    facts = json.loads(Path(facts_json).read_text())["facts"]
    stats = json.loads(Path(stats_json).read_text())
    group = zarr.open_group(str(zarr_path), mode="r")
    ome = group.attrs["ome"]
    datasets = ome["multiscales"][0]["datasets"]
    binds = group.attrs["binds"]
    if binds.get("format") != FORMAT_NAME or binds.get("format_version") != FORMAT_VERSION:
        raise RuntimeError(f"{zarr_path} was not written by this version of the cryoem workflow")
    nz, ny, nx = facts["map_shape_zyx"]
    vz, vy, vx = facts["voxel_size_zyx_angstrom"]
    metrics: dict[str, Any] = {
        "map_file": facts["map_file"],
        "nz": nz,
        "ny": ny,
        "nx": nx,
        "voxel_size_z_angstrom": vz,
        "voxel_size_y_angstrom": vy,
        "voxel_size_x_angstrom": vx,
        "voxel_size_source": facts["voxel_size_source"],
        "mrc_mode": facts["mrc_mode"],
        "dtype": facts["dtype"],
        "pyramid_levels": len(datasets),
        "map_min": stats["min"],
        "map_max": stats["max"],
        "map_mean": stats["mean"],
        "map_rms": stats["rms"],
        "n_half_maps": len(facts["half_maps"]),
        "has_mask": int("mask" in facts),
        "format": f"{FORMAT_NAME}/{FORMAT_VERSION}",
        "ngff_version": ome["version"],
    }
    if facts.get("symmetry"):
        metrics["symmetry"] = facts["symmetry"]
    expected = facts.get("expected_resolution_angstrom")
    if expected is not None:
        metrics["expected_resolution_angstrom"] = expected
    if fsc_json:
        fsc = json.loads(Path(fsc_json).read_text())
        metrics["fsc_masked"] = int(fsc["masked"])
        metrics["nyquist_resolution_angstrom"] = fsc["nyquist_resolution_angstrom"]
        for key in ("resolution_fsc0143_angstrom", "resolution_fsc05_angstrom"):
            # None: the FSC never fell below the threshold (resolution at the Nyquist limit)
            metrics[key] = fsc[key] if fsc[key] is not None else "beyond Nyquist"
        res = fsc["resolution_fsc0143_angstrom"]
        if expected is not None:
            # the FSC never crossing 0.143 is no resolution (the QC verdict fails it)
            metrics["meets_expected_resolution"] = int(res is not None and res <= expected)
    write_json(metrics_json, metrics)
    return metrics
