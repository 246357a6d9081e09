"""Sample-level annotations (CELLxGENE-style obs fields), gene groups by organism, privacy.

Privacy (issues 5 and 22): human donors appear only as a pseudonymous ``donor_id``.  The
detector of :mod:`pipelines.toolkit.privacy` checks the tables this modality reads (sample
sheet, ``.h5ad`` obs: column names and text values) and the sample ids, donor ids and
descriptions, for any organism; the privacy gate (:mod:`pipelines.run.privacy_gate`, with
:func:`pipelines.toolkit.privacy.experiment_findings`) checks the
whole run folder of human data before any of this runs.  Problems name the place and the kind
of identifier, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.errors import Problem

HUMAN = "NCBITaxon:9606"
UNKNOWN = "unknown"


# --------------------------------------------------------------------------- gene groups
@dataclass(frozen=True, slots=True)
class GeneGroups:
    """Regular expressions on gene symbols (var['feature_name']) for QC gene groups."""

    mt: str
    ribo: str
    hb: str


# Symbol conventions differ by organism: human MT-CO1 / RPL3 / HBB, mouse mt-Co1 / Rpl3 / Hba-a1,
# fly mt:CoI / RpL32, zebrafish mt-co1 / rpl3 / hbaa1.
GENE_GROUPS: dict[str, GeneGroups] = {
    HUMAN: GeneGroups(mt=r"^MT-", ribo=r"^RP[SL]\d", hb=r"^HB(?:A\d|B|D|E\d|G\d|M|Q\d|Z)$"),
    "NCBITaxon:10090": GeneGroups(mt=r"^mt-", ribo=r"^Rp[sl]\d", hb=r"^Hb[ab]-"),
    "NCBITaxon:10116": GeneGroups(mt=r"^Mt-|^mt-", ribo=r"^Rp[sl]\d", hb=r"^Hb[ab]"),
    "NCBITaxon:7955": GeneGroups(mt=r"^mt-", ribo=r"^rp[sl]\d", hb=r"^hb[ab]"),
    "NCBITaxon:7227": GeneGroups(mt=r"^mt:", ribo=r"^Rp[SL]\d", hb=r"^glob\d"),
}
DEFAULT_GENE_GROUPS = GeneGroups(mt=r"(?i)^mt[-:]", ribo=r"(?i)^rp[sl]\d", hb=r"(?i)^hb[ab]")


def gene_groups(organism: str | None) -> GeneGroups:
    return GENE_GROUPS.get(organism or "", DEFAULT_GENE_GROUPS)


# --------------------------------------------------------------------------- samples
def samples(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in experiment.get("samples") or [] if isinstance(s, dict)]


def organism(experiment: dict[str, Any]) -> str | None:
    return next((s["organism"] for s in samples(experiment) if s.get("organism")), None)


#: CELLxGENE schema 5.x obs fields taken from an experiment.yaml sample: obs column -> sample key
CELLXGENE_SAMPLE_FIELDS = {
    "donor_id": "donor_id",
    "organism_ontology_term_id": "organism",
    "tissue_ontology_term_id": "tissue",
    "cell_type_ontology_term_id": "cell_type",
    "sex_ontology_term_id": "sex",
    "disease_ontology_term_id": "disease",
    "development_stage_ontology_term_id": "development_stage",
    "self_reported_ethnicity_ontology_term_id": "self_reported_ethnicity",
}


def sample_fields(
    sample: dict[str, Any], *, assay: str, suspension_type: str
) -> dict[str, str | bool]:
    """CELLxGENE (schema 5.x) obs fields of one experiment.yaml sample.

    A field the sample does not give is ``unknown``, except ``self_reported_ethnicity``, which
    CELLxGENE wants as ``na`` for a non-human organism.  ``tissue_type`` is ``tissue`` (no
    organoid or cell culture flag in experiment.yaml yet); ``is_primary_data`` is true: the
    cells are this experiment's own measurement, not a re-use of published data.
    """
    out: dict[str, str | bool] = {"sample_id": str(sample.get("id"))}
    for column, key in CELLXGENE_SAMPLE_FIELDS.items():
        out[column] = str(sample.get(key) or UNKNOWN)
    if not sample.get("self_reported_ethnicity") and sample.get("organism") not in (None, HUMAN):
        out["self_reported_ethnicity_ontology_term_id"] = "na"
    out["assay_ontology_term_id"] = assay
    out["suspension_type"] = suspension_type
    out["tissue_type"] = "tissue"
    out["is_primary_data"] = True
    return out


# --------------------------------------------------------------------------- privacy
# The detector and the gate live in pipelines.toolkit.privacy / pipelines.run.privacy_gate (every
# modality, run by `binds validate` and before any rule for human data); these two keep the
# transcriptomics readers' own check, for any organism, on the tables they read.


def identifier_kind(column: str) -> str | None:
    """What direct identifier a column name suggests (None when it looks harmless)."""
    from pipelines.toolkit import privacy

    return privacy.detector().column_kind(column)


def table_privacy_problems(table: Any, *, file: str, what: str = "column") -> list[Problem]:
    """Problems for columns of a pandas DataFrame named like a direct identifier or holding one
    (text values); each names the column and the kind, never a value."""
    from pipelines.toolkit import privacy

    det = privacy.detector()
    findings = privacy.scan_columns([str(c) for c in table.columns], file=file, what=what)
    # an age column is refused for human data by the privacy gate; a mouse's age is no one's
    findings = [f for f in findings if privacy.AGE_COLUMN not in f.kind]
    flagged = {f.where for f in findings}
    for n, col in enumerate(table.columns, start=1):
        series = table[col]
        if f"{what} {str(col)!r}" in flagged or not (
            series.dtype == object or str(series.dtype) in ("string", "category")
        ):
            continue
        label = repr(str(col)) if not det.kinds(str(col), id_like=True) else str(n)
        kinds: set[str] = set()
        for value in series.astype(str).unique()[:100_000]:
            kinds.update(det.kinds(value, id_like=str(col) in ("donor_id", "sample_id")))
        findings += [privacy.Finding(file, f"{what} {label}", k) for k in sorted(kinds)]
    return [f.problem() for f in findings]


def experiment_privacy_problems(
    experiment: dict[str, Any], *, file: str = "experiment.yaml"
) -> list[Problem]:
    """Sample ids, donor ids and descriptions holding a direct identifier (any organism)."""
    from pipelines.toolkit import privacy

    only = {
        "samples": [
            {k: s[k] for k in ("id", "donor_id", "description") if k in s}
            for s in samples(experiment)
        ]
    }
    return [f.problem() for f in privacy.experiment_findings(only, file=file)]
