"""The ``transcriptomics:`` block of experiment.yaml as typed parameters.

Defaults live in one place, ``metadata/schemas/transcriptomics.schema.json``: this module reads
them from the schema, so the docs, the validator and the code cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.toolkit.params import block_schema, with_defaults

BLOCK = "transcriptomics"


def schema() -> dict[str, Any]:
    return block_schema(BLOCK)


@dataclass(frozen=True, slots=True)
class QCParams:
    n_mads: float
    mito_n_mads: float
    max_pct_mito: float
    min_genes: int
    min_cells: int


@dataclass(frozen=True, slots=True)
class DoubletParams:
    enabled: bool
    remove: bool
    expected_rate: float


@dataclass(frozen=True, slots=True)
class BulkParams:
    counts: str | None
    sample_sheet: str | None
    sample_column: str | None
    match: str
    suffix: str
    min_count: int
    min_samples: int | None
    group_column: str | None


@dataclass(frozen=True, slots=True)
class Params:
    """Every parameter of the workflow, defaults filled in (see the schema for their meaning)."""

    input_kind: str
    input_path: str | None
    assay_ontology_term_id: str | None
    suspension_type: str
    seed: int
    qc: QCParams
    doublets: DoubletParams
    n_hvg: int
    n_pcs: int
    n_neighbors: int
    leiden_resolution: float
    marker_method: str
    n_markers: int
    bulk: BulkParams

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types, for ``uns['binds']['parameters']`` and the QC summaries."""
        from dataclasses import asdict

        return asdict(self)


def params_from_experiment(experiment: dict[str, Any]) -> Params:
    """The modality block of a validated experiment (a dict), with defaults filled in."""
    d = with_defaults(block_schema(BLOCK), experiment.get(BLOCK), where=BLOCK)
    return Params(
        input_kind=d["input"]["kind"],
        input_path=d["input"]["path"],
        assay_ontology_term_id=d["assay_ontology_term_id"],
        suspension_type=d["suspension_type"],
        seed=int(d["seed"]),
        qc=QCParams(**d["qc"]),
        doublets=DoubletParams(**d["doublets"]),
        n_hvg=int(d["n_hvg"]),
        n_pcs=int(d["n_pcs"]),
        n_neighbors=int(d["n_neighbors"]),
        leiden_resolution=float(d["leiden_resolution"]),
        marker_method=d["marker_method"],
        n_markers=int(d["n_markers"]),
        bulk=BulkParams(**d["bulk"]),
    )
