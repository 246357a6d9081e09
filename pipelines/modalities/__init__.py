"""One module per modality: plain, typed processing functions (no Snakemake, Prefect or boto3).

Each ``pipelines.modalities.<name>`` module provides, besides its processing functions:

``MODALITY: ModalitySpec``
    Its name, description, measurement technique, raw-file patterns, software, and (outside
    this package) the paths of its workflow, block schema, conda env and format doc.
``list_inputs(run_dir: Path, experiment: dict) -> InputSet``
    Its input resolver: every file the workflow will read, through the run-folder guard of
    :mod:`pipelines.toolkit.inputs`; the same list feeds the rules and ``run.json``.
``preflight(run_dir: Path, experiment: dict) -> list[Problem]``
    Cheap checks of the raw files (headers, sizes, file lists) run by ``binds validate`` and
    before any compute in ``binds run``.  Returns every problem found; raises nothing.
``make_demo_run(run_dir: Path, *, seed: int = 0) -> Path``
    Writes a realistic synthetic run folder (raw files + experiment.yaml) for ``binds demo``.

Its Snakemake rules live in ``workflows/<name>/main.smk`` and end in ``<stage>/qc/metrics.json``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from pipelines.errors import InputError, Problem

#: The entry-point group through which a modality in its own package registers itself:
#: ``[project.entry-points."binds.modalities"] nmr = "binds_nmr"`` (the value is the module
#: that defines ``MODALITY``), the way pytest finds plugins through ``pytest11``.
ENTRY_POINT_GROUP = "binds.modalities"
# The modalities shipped with binds-pipelines.  Listed here (not only as entry points) so that
# a source checkout works before it is installed; every Snakemake job imports this package, so
# it imports nothing heavy: a modality's module is imported only when it is asked for.
BUILTIN = {
    name: f"pipelines.modalities.{name}"
    for name in ("cryoem", "metabolomics", "transcriptomics", "screening")
}


@dataclass(frozen=True, slots=True)
class ModalitySpec:
    """What the rest of binds needs to know about a modality: its module declares one as
    ``MODALITY``.

    Built-in modalities keep their workflow, block schema, conda env and format doc at the
    conventional places (``workflows/<name>/main.smk``, ``metadata/schemas/<name>.schema.json``,
    ``envs/<name>.yaml``, ``docs/formats/<name>.md``); a modality in its own package gives the
    paths of its own files.
    """

    name: str
    #: One line for ``binds init`` and the docs.
    description: str
    #: schema.org ``measurementTechnique`` (and a keyword) of its datasets.
    technique: str
    #: Globs (relative to the run folder, ``**/`` for any depth) of files ``binds init`` lists.
    raw_patterns: tuple[str, ...]
    #: Distributions whose versions go into every version's provenance.
    software: tuple[str, ...] = ()
    #: Its QC checks, declared once (:class:`pipelines.toolkit.qc.QcCheck`: name, metric, unit,
    #: threshold, direction, meaning, what to do on failure): :func:`pipelines.describe.verdict.evaluate`
    #: makes the one verdict the report, ``binds run``/``show``, the catalog, Prefect and
    #: metadata.jsonld show.  Empty: the modality has no pass/fail criteria.
    qc: tuple[Any, ...] = ()
    #: ``qc/metrics.json`` -> a note for the verdict line ("" for none), e.g. plates without
    #: usable controls.
    qc_note: Callable[[Mapping[str, Any]], str] | None = None
    #: The ``data/`` entry a reader opens when it names none (``pipelines.access.open``), e.g.
    #: ``data/map.ome.zarr``: the catalog lists it first among the version's ``data_paths``.
    main_data: str | None = None
    workflow: Path | None = None
    schema: Path | None = None
    env: Path | None = None
    docs: Path | None = None

    def path(self, kind: str) -> Path:
        """The ``workflow``, ``schema``, ``env`` or ``docs`` file (conventional when not given)."""
        given = getattr(self, kind)
        if given is not None:
            return Path(given)
        from pipelines.resources import project_root

        root = project_root()
        return {
            "workflow": root / "workflows" / self.name / "main.smk",
            "schema": root / "metadata" / "schemas" / f"{self.name}.schema.json",
            "env": root / "envs" / f"{self.name}.yaml",
            "docs": root / "docs" / "formats" / f"{self.name}.md",
        }[kind]


@cache
def _plugins() -> dict[str, str]:
    found = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN:
            found[ep.name] = ep.value
    return found


def names() -> tuple[str, ...]:
    """Every registered modality: the built-in ones, then plugins (sorted).  Imports nothing."""
    return (*BUILTIN, *sorted(_plugins()))


def get(name: str) -> ModuleType:
    """The module of modality ``name`` (it defines ``MODALITY``, ``list_inputs``, ``preflight``,
    ``make_demo_run``)."""
    modules = {**BUILTIN, **_plugins()}
    if name not in modules:
        raise InputError(
            Problem(
                f"unknown modality {name!r}", where="modality", hint=f"one of {', '.join(names())}"
            )
        )
    return importlib.import_module(modules[name])


def spec(name: str) -> ModalitySpec:
    """The :class:`ModalitySpec` of ``name``; checks the module keeps the contract."""
    module = get(name)
    declared = getattr(module, "MODALITY", None)
    if not isinstance(declared, ModalitySpec) or declared.name != name:
        raise TypeError(
            f"{module.__name__} must define MODALITY = ModalitySpec(name={name!r}, ...)"
        )
    return declared


#: What every modality module provides besides ``MODALITY`` (checked by the contract test).
REQUIRED_FUNCTIONS: tuple[str, ...] = ("list_inputs", "preflight", "make_demo_run")


def contract_problems(name: str) -> list[str]:
    """What modality ``name`` misses of the contract (empty: it keeps it)."""
    problems = []
    try:
        s = spec(name)
    except (TypeError, ImportError) as err:
        return [str(err)]
    module = get(name)
    problems += [
        f"{module.__name__} has no {fn}()"
        for fn in REQUIRED_FUNCTIONS
        if not callable(getattr(module, fn, None))
    ]
    problems += [
        f"{name}: {kind} file {s.path(kind)} is missing"
        for kind in ("workflow", "schema")
        if not s.path(kind).is_file()
    ]
    return problems


def find_raw_files(run_dir: str | Path, modality: str) -> list[Path]:
    """Files of ``run_dir`` matching the modality's raw patterns (for ``binds init``), sorted,
    without hidden folders or links leading out of the run folder."""
    from pipelines.toolkit.inputs import RunFolder

    return RunFolder(Path(run_dir)).find(spec(modality).raw_patterns, problems=[])


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) importing ``name`` from ``package.<table[name]>`` on
    first use: every Snakemake job is a fresh process and should pay only for what it calls."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
