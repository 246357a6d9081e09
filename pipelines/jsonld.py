"""``metadata.jsonld``: schema.org Dataset + Croissant 1.0 + provenance, for one version.

* schema.org for search engines and catalogues (name, description, license, creator, dates,
  keywords, the samples' ontology terms under ``about``);
* Croissant 1.0 for ML loaders: a ``cr:FileObject`` (with sha256) per file, a ``cr:FileSet``
  per Zarr store, and a ``cr:RecordSet`` per Parquet table whose fields carry the column types
  (``mlcroissant`` reads the records straight from the Parquet files);
* provenance (``prov:wasGeneratedBy``): the raw inputs with their sha256, the software
  versions, the workflow, the run times.  Never credentials or host secrets.
"""

from __future__ import annotations

import importlib.metadata as im
import json
import platform
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines import modalities
from pipelines.staging import StagedDataset

CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "binds": "https://binds.example.org/terms/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
OBO = {"NCBITaxon": "http://purl.obolibrary.org/obo/NCBITaxon_", "UBERON": "http://purl.obolibrary.org/obo/UBERON_",
       "CL": "http://purl.obolibrary.org/obo/CL_", "CHEBI": "http://purl.obolibrary.org/obo/CHEBI_",
       "PUBCHEM.COMPOUND": "http://rdf.ncbi.nlm.nih.gov/pubchem/compound/CID"}
ENCODINGS = {".parquet": "application/x-parquet", ".png": "image/png", ".json": "application/json",
             ".csv": "text/csv", ".tsv": "text/tab-separated-values", ".html": "text/html",
             ".txt": "text/plain", ".pdf": "application/pdf"}
ZARR_SUFFIXES = (".zarr",)
# what every version depends on; each modality adds its own (ModalitySpec.software)
SOFTWARE = ("binds-pipelines", "snakemake", "prefect", "numpy", "pyarrow", "pandas", "boto3")


def curie_iri(curie: str) -> str | None:
    prefix, _, local = curie.partition(":")
    return OBO[prefix] + local if prefix in OBO and local else None


def _arrow_type(t) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "sc:Boolean"
    if pa.types.is_integer(t):
        return "sc:Integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "sc:Float"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "sc:Date"
    return "sc:Text"


def record_set(rel_path: str, abs_path: Path, *, file_set: bool = False) -> dict[str, Any] | None:
    """A Croissant RecordSet describing the Parquet file's columns (lists as repeated fields).

    With ``file_set``, ``rel_path`` is a folder of Parquet parts with the schema of ``abs_path``.
    """
    import pyarrow as pa

    try:
        schema = pq.read_schema(abs_path)
    except Exception:  # noqa: BLE001 - not a readable Parquet file: describe it as a file only
        return None
    rs_id = rel_path.removeprefix("data/").removeprefix("qc/").removesuffix(".parquet").replace("/", "_")
    fields = []
    for f in schema:
        t = f.type
        repeated = pa.types.is_list(t) or pa.types.is_large_list(t)
        if repeated:
            t = t.value_type
        if pa.types.is_struct(t) or pa.types.is_map(t) or pa.types.is_list(t):
            continue  # nested beyond one list: readable with pyarrow, not described field by field
        field = {
            "@type": "cr:Field",
            "@id": f"{rs_id}/{f.name}",
            "name": f.name,
            "dataType": _arrow_type(t),
            "source": {("fileSet" if file_set else "fileObject"): {"@id": rel_path},
                       "extract": {"column": f.name}},
        }
        desc = (f.metadata or {}).get(b"description")
        if desc:
            field["description"] = desc.decode()
        if repeated:
            field["repeated"] = True
        fields.append(field)
    return {"@type": "cr:RecordSet", "@id": rs_id, "name": rs_id,
            "description": f"Rows of {rel_path}", "field": fields}


def _software_versions(modality: str) -> dict[str, str]:
    out = {}
    for name in (*SOFTWARE, *modalities.spec(modality).software):
        try:
            out[name] = im.version(name)
        except im.PackageNotFoundError:
            continue
    return out


def build_metadata(*, stage: StagedDataset, experiment: dict[str, Any], dataset_id: str, version: int,
                   files: list[dict[str, Any]], created: str, content_digest: str) -> dict[str, Any]:
    """The metadata.jsonld document of one version (a plain dict, JSON-serialisable)."""
    exp = experiment
    modality = exp["modality"]
    technique = modalities.spec(modality).technique
    distribution: list[dict[str, Any]] = []
    record_sets: list[dict[str, Any]] = []
    zarr_roots: set[str] = set()
    parquet_dirs: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        parts = f["path"].split("/")
        zroot = next((("/".join(parts[: i + 1])) for i, p in enumerate(parts) if p.endswith(ZARR_SUFFIXES)), None)
        if zroot:
            zarr_roots.add(zroot)
            continue
        # a folder named *.parquet holding part files (one per run): one table, one RecordSet
        pdir = next(("/".join(parts[: i + 1]) for i, p in enumerate(parts[:-1]) if p.endswith(".parquet")), None)
        if pdir:
            parquet_dirs.setdefault(pdir, []).append(f)
            continue
        suffix = Path(f["path"]).suffix.lower()
        distribution.append({
            "@type": "cr:FileObject", "@id": f["path"], "name": f["path"], "contentUrl": f["path"],
            "contentSize": f"{f['size']} B", "encodingFormat": ENCODINGS.get(suffix, "application/octet-stream"),
            "sha256": f["sha256"],
        })
        if suffix == ".parquet":
            rs = record_set(f["path"], stage.root / f["path"])
            if rs and rs["field"]:
                record_sets.append(rs)
    for pdir, parts_ in sorted(parquet_dirs.items()):
        distribution.append({
            "@type": "cr:FileSet", "@id": pdir, "name": pdir,
            "description": f"Parquet table in {len(parts_)} part file(s); per-file sha256 in manifest.json",
            "encodingFormat": "application/x-parquet", "includes": f"{pdir}/*.parquet",
        })
        rs = record_set(pdir, stage.root / sorted(parts_, key=lambda f: f["path"])[0]["path"], file_set=True)
        if rs and rs["field"]:
            record_sets.append(rs)
    samples = exp.get("samples") or []
    about = []
    for s in samples:
        for key in ("organism", "tissue", "cell_type", "compound"):
            val = s.get(key)
            if isinstance(val, str) and ":" in val:
                term = {"@type": "DefinedTerm", "termCode": val, "name": f"{key} of sample {s['id']}"}
                if iri := curie_iri(val):
                    term["url"] = iri  # not "@id": Croissant resolves every @id as a node reference
                about.append(term)
    requester = exp.get("requester") or {}
    creator: list[dict[str, Any]] = []
    if requester.get("pi"):
        person = {"@type": "Person", "name": requester["pi"]}
        if requester.get("orcid"):
            orcid = requester["orcid"]
            person["url"] = orcid if orcid.startswith("https://") else f"https://orcid.org/{orcid}"
        if requester.get("affiliation") or requester.get("lab"):
            person["affiliation"] = {"@type": "Organization",
                                     "name": requester.get("affiliation") or requester.get("lab")}
        creator.append(person)
    creator.append({"@type": "Organization", "name": exp.get("support_unit") or "BINDS support unit"})
    facts = stage.facts
    run = stage.run_info
    license_id = exp["license"]
    doc: dict[str, Any] = {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "@id": f"{dataset_id}/v{version}",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": dataset_id,
        "alternateName": exp["title"],
        "description": exp.get("description") or exp["title"],
        "identifier": [dataset_id, exp["request_id"]],
        "version": f"{version}.0.0",
        "license": f"https://spdx.org/licenses/{license_id}.html",
        "url": f"{exp['access']['level']}/{modality}/{dataset_id}/v{version}/",
        "datePublished": created,
        "dateCreated": exp["acquired"],
        "creator": creator,
        "keywords": sorted({modality, technique, *(exp.get("keywords") or [])}),
        "measurementTechnique": technique,
        "isAccessibleForFree": exp["access"]["level"] == "open",
        "conditionsOfAccess": exp["access"]["level"],
        "citeAs": f"BINDS {exp['request_id']}: {exp['title']} (dataset {dataset_id}, version {version})",
        "about": about,
        "distribution": distribution,
        "recordSet": record_sets,
        "binds:modality": modality,
        "binds:contentDigest": content_digest,
        "binds:instrument": exp.get("instrument"),
        "binds:samples": samples,
        "binds:parameters": exp.get(modality) or {},
        "binds:qc": stage.metrics,
        "additionalProperty": [
            {"@type": "PropertyValue", "name": k,
             "value": v if isinstance(v, (str, int, float, bool)) else json.dumps(v, sort_keys=True)}
            for k, v in sorted((facts.get("facts") or {}).items())
        ],
        "prov:wasGeneratedBy": {
            "@type": "prov:Activity",
            "name": f"binds run ({modality} workflow)",
            "prov:startedAtTime": run.get("started"),
            "prov:endedAtTime": run.get("staged"),
            "binds:workflow": run.get("workflow"),
            "binds:software": _software_versions(modality),
            "binds:python": platform.python_version(),
            "prov:used": run.get("inputs", []),
        },
    }
    # mlcroissant loops forever on an empty JSON object; leave out what is empty
    doc = {k: v for k, v in doc.items() if v not in ({}, None) or k in ("recordSet", "distribution")}
    doc["prov:wasGeneratedBy"] = {k: v for k, v in doc["prov:wasGeneratedBy"].items() if v not in ({}, None, [])}
    if exp["access"].get("embargo_until"):
        doc["binds:embargoUntil"] = exp["access"]["embargo_until"]
    if facts.get("conflicts"):
        doc["binds:metadataConflicts"] = facts["conflicts"]
    if exp.get("operator"):
        doc["binds:operator"] = exp["operator"]
    return doc
