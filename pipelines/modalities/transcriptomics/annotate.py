"""Sample-level annotations (CELLxGENE-style obs fields), gene groups by organism, privacy.

Privacy rule (issue 5): human donors appear only as a pseudonymous ``donor_id``.  Table columns
(sample sheet, ``.h5ad`` obs) named like a direct identifier (a person's name, birth date,
address, phone, e-mail, record numbers) and values that are e-mail addresses are refused, and so
are experiment.yaml donor ids shaped like a person's name and sample descriptions holding an
e-mail address or a birth date.  The check is deliberately conservative: a false alarm costs a
column rename, a miss publishes a person.
"""

from __future__ import annotations

import re
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
_PERSON_NAME_COLUMNS = {
    "name_of_patient",
    "first_name",
    "firstname",
    "last_name",
    "lastname",
    "surname",
    "given_name",
    "family_name",
    "full_name",
    "fullname",
    "maiden_name",
    "patient_name",
    "donor_name",
    "subject_name",
    "participant_name",
    "person_name",
    "forename",
}
_IDENTIFIER_NUMBER_COLUMNS = {
    "ssn",
    "social_security_number",
    "mrn",
    "medical_record_number",
    "nhs_number",
    "passport",
    "passport_number",
    "insurance_number",
    "health_insurance_number",
    "national_id",
}
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PERSON_NAME = re.compile(r"^[A-Z][a-z]+(?:[._ -][A-Z][a-z]+)+$")
_BIRTH_TEXT = re.compile(r"(?i)\b(born|birth|d\.?o\.?b\.?)\b.{0,20}\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")


def _norm(column: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(column).lower()).strip("_")


def identifier_kind(column: str) -> str | None:
    """What direct identifier a column name suggests (None when it looks harmless)."""
    c = _norm(column)
    if c in _PERSON_NAME_COLUMNS:
        return "a person's name"
    if "birth" in c or c == "dob" or c.endswith("_dob") or c.startswith("dob_"):
        return "a birth date"
    if (
        "address" in c
        or "street" in c
        or c in {"zip", "zip_code", "zipcode", "postcode", "postal_code"}
    ):
        return "an address"
    if "email" in c or "e_mail" in c or "phone" in c or "telephone" in c or c in {"mobile", "fax"}:
        return "contact details"
    if c in _IDENTIFIER_NUMBER_COLUMNS:
        return "an identifying number"
    return None


def table_privacy_problems(table: Any, *, file: str, what: str = "column") -> list[Problem]:
    """Problems for columns of a pandas DataFrame that look like direct identifiers."""
    problems: list[Problem] = []
    hint = (
        "remove it before delivery; donors are identified only by a pseudonymous donor_id "
        "(e.g. D01), the key to names stays with the requesting lab"
    )
    for col in table.columns:
        kind = identifier_kind(str(col))
        if kind:
            problems.append(
                Problem(
                    f"{what} looks like {kind}: direct identifiers are not accepted",
                    file=file,
                    where=f"{what} '{col}'",
                    hint=hint,
                )
            )
            continue
        series = table[col]
        if series.dtype == object or str(series.dtype) in ("string", "category"):
            values = series.astype(str)
            hits = values[values.str.fullmatch(_EMAIL.pattern)]
            if len(hits):
                row = hits.index[0]
                problems.append(
                    Problem(
                        "holds e-mail addresses: direct identifiers are not accepted",
                        file=file,
                        where=f"{what} '{col}', row {row!r}",
                        hint=hint,
                    )
                )
    return problems


def experiment_privacy_problems(
    experiment: dict[str, Any], *, file: str = "experiment.yaml"
) -> list[Problem]:
    """Donor ids shaped like a person's name; descriptions with an e-mail address or birth date."""
    problems: list[Problem] = []
    for i, s in enumerate(samples(experiment)):
        donor = s.get("donor_id")
        if isinstance(donor, str) and (_PERSON_NAME.match(donor) or _EMAIL.search(donor)):
            problems.append(
                Problem(
                    f"donor_id {donor!r} looks like a person's name or e-mail",
                    file=file,
                    where=f"samples[{i}].donor_id",
                    hint="use a pseudonymous code such as D01; the key stays with the requesting lab",
                )
            )
        desc = s.get("description")
        if isinstance(desc, str) and (_EMAIL.search(desc) or _BIRTH_TEXT.search(desc)):
            problems.append(
                Problem(
                    "the description holds an e-mail address or a birth date",
                    file=file,
                    where=f"samples[{i}].description",
                    hint="describe the sample, not the person; remove direct identifiers",
                )
            )
    return problems
