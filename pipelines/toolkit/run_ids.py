"""Run ids: the names the raw files of human data go by in everything a run writes.

A raw file's name is chosen at the instrument, often from the sample sheet: for patients'
samples it may hold what the privacy gate refuses, or lead back to a person through a hospital's
own records.  So for human data (:func:`applies`) every modality names its raw files
``run-001``, ``run-002`` ... (:func:`run_ids`: in path order, over the files its workflow
reads) in store keys, Snakemake wildcards, Prefect and Slurm names, tables, Zarr attributes,
metadata documents, the RO-Crate and the QC report.  The mapping back to the files stays in the
version's ``_meta/run_ids.json`` (:data:`RUN_IDS_FILE`), published at the dataset's access
level, never open (the gate refuses human data at ``open``).

Other data keep the names the staff gave: the path relative to the run folder
(:func:`raw_names`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.toolkit.inputs import RunFolder

HUMAN = "NCBITaxon:9606"

#: A run id, or several (an mtx folder: the ids of its files, space-separated)
RUN_ID = re.compile(r"run-\d{3,}(?: run-\d{3,})*")

#: In a stage's and a version's ``_meta/``: run id -> the raw file it stands for (human data).
RUN_IDS_FILE = "run_ids.json"


def applies(experiment: Mapping[str, Any]) -> bool:
    """The privacy gate applies: a human sample, or ``personal_data: true``.  (``personal_data:
    false`` does not switch it off for human samples: the scan is cheap, a miss publishes a
    person.)"""
    if experiment.get("personal_data") is True:
        return True
    samples = experiment.get("samples")
    return isinstance(samples, list) and any(
        isinstance(s, dict) and s.get("organism") == HUMAN for s in samples
    )


def run_ids(files: Iterable[Path]) -> dict[str, Path]:
    """``run-001``, ``run-002`` ... for ``files`` in path order."""
    return {f"run-{n:03d}": p for n, p in enumerate(sorted(files), start=1)}


def raw_names(
    run_dir: str | Path, experiment: Mapping[str, Any], files: Iterable[Path]
) -> dict[Path, str]:
    """``{absolute path: the name it goes by}``: its run id for human data, else its path relative to
    the run folder.  ``files`` is every raw file the modality's workflow reads (the same list
    ``binds run`` records, so that the ids match ``_meta/run_ids.json``)."""
    files = [Path(os.path.abspath(p)) for p in files]
    if applies(experiment):
        return {p: rid for rid, p in run_ids(files).items()}
    folder = RunFolder(Path(run_dir))
    return {p: folder.rel(p) for p in files}


def recorded(meta_dir: Path) -> dict[str, dict[str, Any]]:
    """``_meta/run_ids.json`` of a stage or a version: ``{run id: {"name", "sha256"}}``, or
    ``{}`` (not human data)."""
    path = meta_dir / RUN_IDS_FILE
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text())["run_ids"])


def samples_by_run_id(meta_dir: Path) -> dict[str, list[str]]:
    """``{sample id: [run ids]}`` as recorded at validation (what a sample's ``files`` named)."""
    path = meta_dir / RUN_IDS_FILE
    if not path.is_file():
        return {}
    return {k: list(v) for k, v in json.loads(path.read_text()).get("samples", {}).items()}


@dataclass(frozen=True)
class NameHider:
    """Human data: what a document built from the experiment and the rules' params would say
    of a raw file, by run id (``_meta/run_ids.json`` of a stage or a version)."""

    run_id_of: Mapping[str, str]  # the file's path in the run folder -> its run id
    samples: Mapping[str, list[str]]  # sample id -> the run ids its ``files`` matched

    @classmethod
    def of(cls, meta_dir: Path) -> NameHider | None:
        """None when the run is not human data (no ``run_ids.json``)."""
        ids = recorded(meta_dir)
        if not ids:
            return None
        return cls({v["name"]: rid for rid, v in ids.items()}, samples_by_run_id(meta_dir))

    def text(self, text: str) -> str:
        """``text`` with every raw file's name (its path in the run folder, also inside an
        absolute path) replaced by its run id; longest first, so a name inside another one
        does not leave half a name."""
        for name in sorted(self.run_id_of, key=len, reverse=True):
            if name in text:
                text = text.replace(name, self.run_id_of[name])
        return text

    def value(self, value: Any) -> Any:
        """A JSON-like value (a sample, a modality block, a rule's params) with its file names,
        keys included, by run id; a sample's ``files`` (names or globs) become its run ids."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            out = {self.text(str(k)): self.value(v) for k, v in value.items()}
            if "id" in value and "files" in value:  # a sample of experiment.yaml
                out["files"] = list(self.samples.get(str(value["id"]), []))
            return out
        return value
