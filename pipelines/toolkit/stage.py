"""The staged dataset: what a workflow writes and ``binds publish`` uploads.

Layout (the contract between the modality workflows and the store)::

    <stage>/
        data/            standard outputs (*.ome.zarr, *.zarr, *.parquet)      -> published
        qc/              PNG plots, metrics.json and other QC tables            -> published
        qc/metrics.json  flat JSON object of key QC figures (numbers, strings);
                         copied into the catalog row and metadata.jsonld
        _meta/           run bookkeeping, NOT published as files:
            experiment.json   validated experiment.yaml (normalised: dates as ISO strings)
            run.json          run_dir, modality, dataset_id, inputs with sha256
            facts.json        optional, from the modality: {"facts": {...}, "conflicts": [...]}
                              header facts (voxel size, polarity, chemistry...) for metadata.jsonld
            errors/<rule>.json  written by a rule that met bad input (see pipelines.toolkit.smk)

A version's identity is the digest of ``data/`` and ``qc/`` only, so outputs must be
deterministic (no timestamps or run ids inside data or QC files).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PUBLISHED_DIRS = ("data", "qc")
# in <stage>/_meta/ (the stage's names: StagedDataset.events_file / .snakemake_log)
EVENTS_FILE = "snakemake-events.jsonl"
SNAKEMAKE_LOG = "snakemake.log"
#: Files Snakemake leaves inside ``directory()`` outputs (and our own scratch files): never
#: published, never listed in a manifest (zarr warns about every unknown file in a store).
_NOT_PUBLISHED_PREFIXES = (".snakemake", ".binds-")


def is_published_name(name: str) -> bool:
    """Whether a file called ``name`` inside data/ or qc/ belongs to a version."""
    return not name.startswith(_NOT_PUBLISHED_PREFIXES)


@dataclass(frozen=True, slots=True)
class StagedDataset:
    """A staged dataset folder.  Cheap to construct; reads lazily."""

    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def qc_dir(self) -> Path:
        return self.root / "qc"

    @property
    def meta_dir(self) -> Path:
        return self.root / "_meta"

    @property
    def errors_dir(self) -> Path:
        return self.meta_dir / "errors"

    @property
    def events_file(self) -> Path:
        """The run's job record: one JSON line per Snakemake event (the binds logger plugin)."""
        return self.meta_dir / EVENTS_FILE

    @property
    def snakemake_log(self) -> Path:
        """Snakemake's own console log of the last run."""
        return self.meta_dir / SNAKEMAKE_LOG

    def _json(self, path: Path, default: Any) -> Any:
        if not path.exists():
            return default
        return json.loads(path.read_text())

    @property
    def experiment(self) -> dict[str, Any]:
        return self._json(self.meta_dir / "experiment.json", {})

    @property
    def run_info(self) -> dict[str, Any]:
        return self._json(self.meta_dir / "run.json", {})

    @property
    def metrics(self) -> dict[str, Any]:
        return self._json(self.qc_dir / "metrics.json", {})

    @property
    def facts(self) -> dict[str, Any]:
        return self._json(self.meta_dir / "facts.json", {"facts": {}, "conflicts": []})

    def published_files(self) -> list[tuple[str, Path]]:
        """(relative posix path, absolute path) of every file to publish, sorted."""
        out: list[tuple[str, Path]] = []
        for top in PUBLISHED_DIRS:
            base = self.root / top
            if not base.exists():
                continue
            for p in base.rglob("*"):
                if p.is_file() and is_published_name(p.name):
                    out.append((p.relative_to(self.root).as_posix(), p))
        out.sort()
        return out

    def write_meta(self, name: str, obj: Any) -> Path:
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        path = self.meta_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(path)
        return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON deterministically (sorted keys, fixed indent): QC files are part of a version's identity.

    NaN and infinities (a median of no cells, a ratio over zero) are written as ``null``: JSON has
    no such numbers, and a QC figure that cannot be computed must not crash the writer.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(
        _finite_or_null(obj), indent=2, sort_keys=True, allow_nan=False, default=_json_default
    )
    # a kill mid-write leaves the old file or none, never half a JSON document
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _finite_or_null(obj: Any) -> Any:
    """``obj`` as plain JSON types, with every non-finite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    try:
        plain = _json_default(obj)  # numpy scalars and arrays, paths
    except TypeError:
        return obj  # json.dumps raises its own error for it
    return _finite_or_null(plain)


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return o.as_posix()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
