"""``metadata.jsonld``: schema.org Dataset + Croissant 1.1 + provenance, for one version.

* schema.org for search engines and catalogues (name, description, license, creator, dates,
  keywords, the samples' ontology terms under ``about`` as ``DefinedTerm`` IRIs);
* Croissant 1.1 for ML loaders: a ``cr:FileObject`` (with sha256) per file, a ``cr:FileSet``
  per Zarr store (with a RecordSet whose fields give each image / matrix array's shape and
  dtype) and per folder of Parquet parts, and a ``cr:RecordSet`` per Parquet table whose
  fields carry the column types, descriptions and units (``mlcroissant`` reads the records
  straight from the Parquet files);
* linked data a knowledge graph can load: the ``@context`` is ``metadata/context.jsonld``
  (no document-wide language; dates, IRIs and numbers typed), project terms are in the BINDS
  vocabulary ``metadata/binds-vocab.ttl``, the dataset ``@id`` is absolute
  (:func:`dataset_iri`);
* provenance (``prov:wasGeneratedBy``): the raw inputs with their sha256, the software
  versions, the workflow, the run times.  Never credentials or host secrets.

Two settings (environment, or arguments of :func:`build_metadata`):

``BINDS_BASE_URL``
    Prefix of the dataset IRIs, default :data:`DEFAULT_BASE_URL`; the ``@id`` of a version is
    ``<base>/<access>/<modality>/<dataset_id>/v<N>``.
``BINDS_CONTENT_BASE_URL``
    Where the store's files can be fetched (e.g. ``https://s3.example.org/binds-curated``).
    When set, every ``contentUrl`` is absolute (``<content base>/<version prefix>/<path>``), so
    ``mlcroissant`` fetches the files over HTTP wherever the document was read from; unset,
    links are relative to the version folder (reading a local or mounted copy).
"""

from __future__ import annotations

import importlib.metadata as im
import json
import os
import platform
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines import modalities
from pipelines.resources import metadata_dir
from pipelines.toolkit.run_ids import NameHider
from pipelines.toolkit.stage import StagedDataset

DEFAULT_BASE_URL = "https://binds.example.org/datasets"
CROISSANT_VERSION = "http://mlcommons.org/croissant/1.1"
SD_VERSION = "1.1"  # version of this document's layout (docs/formats/store.md)
BINDS_VOCAB = "https://binds.example.org/terms/"
OBO = "http://purl.obolibrary.org/obo/"
DUO_IRI = OBO + "DUO_"  # data-use conditions (access.data_use)
#: CURIE prefix -> (IRI prefix, the ontology's IRI for ``inDefinedTermSet``, bundled vocabulary)
ONTOLOGIES = {
    "NCBITaxon": (OBO + "NCBITaxon_", OBO + "ncbitaxon.owl", "NCBITaxon"),
    "UBERON": (OBO + "UBERON_", OBO + "uberon.owl", "UBERON"),
    "CL": (OBO + "CL_", OBO + "cl.owl", "CL"),
    "CHEBI": (OBO + "CHEBI_", OBO + "chebi.owl", "CHEBI"),
    "EFO": ("http://www.ebi.ac.uk/efo/EFO_", "http://www.ebi.ac.uk/efo/efo.owl", "EFO"),
    "PUBCHEM.COMPOUND": (
        "http://rdf.ncbi.nlm.nih.gov/pubchem/compound/CID",
        "https://pubchem.ncbi.nlm.nih.gov/",
        None,
    ),
}
SAMPLE_TERMS = {
    "organism": "binds:organism",
    "tissue": "binds:tissue",
    "cell_type": "binds:cellType",
    "compound": "binds:compound",
}
ENCODINGS = {
    ".parquet": "application/x-parquet",
    ".png": "image/png",
    ".json": "application/json",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".html": "text/html",
    ".txt": "text/plain",
    ".pdf": "application/pdf",
}
ZARR_SUFFIXES = (".zarr",)
# what every version depends on; each modality adds its own (ModalitySpec.software)
SOFTWARE = ("binds-pipelines", "snakemake", "prefect", "numpy", "pyarrow", "pandas", "boto3")
ZARR_ENCODING = "application/x-zarr"  # no registered media type; the Zarr v3 spec's working name
ZARR_DTYPES = {
    "float16": "cr:Float16",
    "float32": "cr:Float32",
    "float64": "cr:Float64",
    "int8": "cr:Int8",
    "int16": "cr:Int16",
    "int32": "cr:Int32",
    "int64": "cr:Int64",
    "uint8": "cr:UInt8",
    "uint16": "cr:UInt16",
    "uint32": "cr:UInt32",
    "uint64": "cr:UInt64",
    "bool": "sc:Boolean",
}
# AnnData groups that are matrices (obs x var, obs x k, ...); obs/var columns are in the
# Parquet tables, uns holds parameters
ANNDATA_MATRIX_GROUPS = ("X", "layers", "obsm", "varm", "obsp", "varp", "raw")


@cache
def context() -> dict[str, Any]:
    """The JSON-LD ``@context`` of every metadata.jsonld (``metadata/context.jsonld``)."""
    return json.loads((metadata_dir() / "context.jsonld").read_text("utf-8"))["@context"]


def base_url(value: str | None = None) -> str:
    """The dataset IRI prefix: ``value``, else ``BINDS_BASE_URL``, else the default."""
    url = value or os.environ.get("BINDS_BASE_URL") or DEFAULT_BASE_URL
    if "://" not in url:
        raise ValueError(f"BINDS_BASE_URL must be an absolute URL, got {url!r}")
    return url.rstrip("/")


def dataset_iri(
    access: str, modality: str, dataset_id: str, version: int, *, base: str | None = None
) -> str:
    return f"{base_url(base)}/{access}/{modality}/{dataset_id}/v{version}"


def term_iri(curie: str) -> str | None:
    """The IRI of an ontology id (``NCBITaxon:9606`` -> ``http://purl.obolibrary.org/obo/NCBITaxon_9606``)."""
    prefix, _, local = curie.partition(":")
    return ONTOLOGIES[prefix][0] + local if prefix in ONTOLOGIES and local else None


curie_iri = term_iri  # the former name


def defined_term(curie: str) -> dict[str, Any] | None:
    """A schema.org DefinedTerm node for an ontology id, its label from the bundled vocabulary."""
    iri = term_iri(curie)
    if iri is None:
        return None
    prefix = curie.partition(":")[0]
    _, term_set, vocab = ONTOLOGIES[prefix]
    term: dict[str, Any] = {
        "@id": iri,
        "@type": "DefinedTerm",
        "termCode": curie,
        "inDefinedTermSet": term_set,
    }
    if vocab:
        from pipelines.describe.metadata import vocabulary

        found = vocabulary(vocab).get(curie)
        if found:
            term["name"] = found.label
    return term


def _arrow_type(t) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "sc:Boolean"
    if pa.types.is_integer(t):
        return "sc:Integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "sc:Float"
    if pa.types.is_timestamp(t):
        return "sc:DateTime"
    if pa.types.is_date(t):
        return "sc:Date"
    return "sc:Text"


def _record_set_id(rel_path: str) -> str:
    return _node_id(
        rel_path.removeprefix("data/")
        .removeprefix("qc/")
        .removesuffix(".parquet")
        .replace("/", "_")
    )


def _node_id(text: str, used: set[str] | None = None) -> str:
    """An ``@id`` without whitespace (Croissant refuses it; sample-sheet columns have spaces),
    unique within ``used``."""
    base = re.sub(r"\s+", "_", text.strip())
    out, n = base, 1
    while used is not None and out in used:
        n += 1
        out = f"{base}_{n}"
    if used is not None:
        used.add(out)
    return out


def record_set(rel_path: str, abs_path: Path, *, file_set: bool = False) -> dict[str, Any] | None:
    """A Croissant RecordSet of the Parquet file's columns (lists as array fields), with each
    column's description and unit from its Arrow field metadata.

    With ``file_set``, ``rel_path`` is a folder of Parquet parts with the schema of ``abs_path``.
    """
    import pyarrow as pa

    try:
        schema = pq.read_schema(abs_path)
    except Exception:
        return None
    rs_id = _record_set_id(rel_path)
    fields = []
    used: set[str] = set()
    for f in schema:
        t = f.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        is_list = pa.types.is_list(t) or pa.types.is_large_list(t)
        if is_list:
            t = t.value_type
        if (
            pa.types.is_struct(t)
            or pa.types.is_map(t)
            or pa.types.is_list(t)
            or pa.types.is_null(t)
        ):
            continue  # nested beyond one list: readable with pyarrow, not described field by field
        field_id = _node_id(f"{rs_id}/{f.name}", used)
        field: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": field_id,
            "name": f.name,
            "dataType": _arrow_type(t),
            "source": {
                ("fileSet" if file_set else "fileObject"): {"@id": rel_path},
                "extract": {"column": f.name},
            },
        }
        md = f.metadata or {}
        if md.get(b"description"):
            field["description"] = md[b"description"].decode()
        if md.get(b"unit"):
            field["binds:unit"] = md[b"unit"].decode()
        if is_list:
            field["isArray"] = True
            field["arrayShape"] = "-1"
        fields.append(field)
    fmt = (schema.metadata or {}).get(b"binds.format")
    fmt_version = (schema.metadata or {}).get(b"binds.format_version", b"?")
    rs: dict[str, Any] = {
        "@type": "cr:RecordSet",
        "@id": rs_id,
        "name": rs_id,
        "description": f"Rows of {rel_path}",
        "field": fields,
    }
    if fmt:
        rs["binds:tableFormat"] = f"{fmt.decode()}/{fmt_version.decode()}"
    return rs


def _zarr_arrays(store_dir: Path) -> list[tuple[str, list[int], str, list[str] | None]]:
    """(path inside the store, shape, dtype, dimension names) of every image / matrix.

    Read from the Zarr v3 ``zarr.json`` files (no zarr import): arrays of two or more
    dimensions, and AnnData sparse matrices (a group with ``encoding-type`` csr/csc and a
    ``shape``, its dtype that of its ``data`` array).
    """
    out = []
    sparse_groups: set[str] = set()
    is_anndata = (store_dir / "obs").is_dir() and (store_dir / "var").is_dir()
    for meta_path in sorted(store_dir.rglob("zarr.json")):
        rel = meta_path.parent.relative_to(store_dir).as_posix()
        if rel == ".":
            continue
        if is_anndata and rel.split("/")[0] not in ANNDATA_MATRIX_GROUPS:
            continue
        if any(rel.startswith(g + "/") for g in sparse_groups):
            continue
        meta = json.loads(meta_path.read_text())
        attrs = meta.get("attributes") or {}
        if meta.get("node_type") == "group" and attrs.get("encoding-type") in (
            "csr_matrix",
            "csc_matrix",
        ):
            sparse_groups.add(rel)
            data_meta = store_dir / rel / "data" / "zarr.json"
            dtype = (
                json.loads(data_meta.read_text()).get("data_type") if data_meta.is_file() else None
            )
            out.append((rel, list(attrs["shape"]), str(dtype), None))
        elif meta.get("node_type") == "array" and len(meta.get("shape", [])) >= 2:
            out.append(
                (rel, list(meta["shape"]), str(meta.get("data_type")), meta.get("dimension_names"))
            )
    return out


def zarr_record_set(rel_path: str, store_dir: Path) -> dict[str, Any] | None:
    """A RecordSet describing the arrays of a Zarr store: one field per image / matrix, with
    its shape (``arrayShape``) and element type (``dataType``).  Read the arrays with zarr,
    ome-zarr or anndata (``pipelines.access.open``); the fields document them."""
    arrays = _zarr_arrays(store_dir)
    if not arrays:
        return None
    rs_id = rel_path.removeprefix("data/").replace("/", "_").replace(".", "_")
    fields = []
    for path, shape, dtype, dims in arrays:
        encoding = _attrs(store_dir / path).get("encoding-type", "")
        kind = {"csr_matrix": "sparse CSR matrix", "csc_matrix": "sparse CSC matrix"}.get(
            encoding, "array"
        )
        desc = f"{kind} {path!r} of {rel_path}, shape {'x'.join(map(str, shape))}, {dtype}"
        if dims:
            desc += f", dimensions {', '.join(map(str, dims))}"
        field: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": _node_id(f"{rs_id}/{path}"),
            "name": path,
            "description": desc,
            "dataType": ZARR_DTYPES.get(dtype, "sc:Float"),
            "isArray": True,
            "arrayShape": ",".join(map(str, shape)),
            "source": {"fileSet": {"@id": rel_path}, "extract": {"fileProperty": "content"}},
        }
        fields.append(field)
    return {
        "@type": "cr:RecordSet",
        "@id": rs_id,
        "name": rs_id,
        "description": f"Arrays (images, matrices) of the Zarr store {rel_path}; open it with "
        "zarr / ome-zarr / anndata, these fields give shapes and types",
        "field": fields,
    }


def _attrs(node_dir: Path) -> dict[str, Any]:
    meta = node_dir / "zarr.json"
    return json.loads(meta.read_text()).get("attributes", {}) if meta.is_file() else {}


def _software_versions(modality: str) -> dict[str, str]:
    out = {}
    for name in (*SOFTWARE, *modalities.spec(modality).software):
        try:
            out[name] = im.version(name)
        except im.PackageNotFoundError:
            continue
    return out


def _property_value(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, (str, int, float, bool)):
        value = json.dumps(value, sort_keys=True)
    return {"@type": "PropertyValue", "name": name, "propertyID": f"binds:{name}", "value": value}


def _sample_node(dataset: str, s: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {
        "@id": f"{dataset}#sample-{s['id']}",
        "@type": "binds:Sample",
        "identifier": s["id"],
    }
    if s.get("description"):
        node["description"] = s["description"]
    rest = {}
    for key, val in sorted(s.items()):
        if key in ("id", "description"):
            continue
        if key in SAMPLE_TERMS and isinstance(val, str) and term_iri(val):
            node[SAMPLE_TERMS[key]] = term_iri(val)
        else:
            rest[key] = val
    if rest:
        node["binds:sampleAttributes"] = rest
    return node


def build_metadata(
    *,
    stage: StagedDataset,
    experiment: dict[str, Any],
    dataset_id: str,
    version: int,
    files: list[dict[str, Any]],
    created: str,
    content_digest: str,
    base: str | None = None,
    content_base: str | None = None,
) -> dict[str, Any]:
    """The metadata.jsonld document of one version (a plain dict, JSON-serialisable).

    ``base`` / ``content_base``: the dataset IRI prefix and the absolute URL prefix of the
    store's files (default ``BINDS_BASE_URL`` / ``BINDS_CONTENT_BASE_URL``; see the module doc).
    """
    exp = experiment
    modality = exp["modality"]
    technique = modalities.spec(modality).technique
    access = exp["access"]["level"]
    iri = dataset_iri(access, modality, dataset_id, version, base=base)
    content_base = content_base or os.environ.get("BINDS_CONTENT_BASE_URL") or None
    distribution, record_sets = distribution_and_record_sets(
        files=files,
        stage_root=stage.root,
        content_prefix=_content_prefix(
            content_base, access=access, modality=modality, dataset_id=dataset_id, version=version
        ),
    )
    samples = exp.get("samples") or []
    parameters = exp.get(modality) or {}
    if hider := NameHider.of(stage.meta_dir):  # human data: raw files by run id, never by name
        samples, parameters = hider.value(samples), hider.value(parameters)
    tested = compounds_in_tables(files=files, stage_root=stage.root)
    facts = stage.facts
    metrics = stage.metrics
    citation = (
        f"BINDS {exp['request_id']}: {exp['title']} (dataset {dataset_id}, version {version})"
    )
    doc: dict[str, Any] = {
        "@context": context(),
        "@type": "sc:Dataset",
        "@id": iri,
        "conformsTo": CROISSANT_VERSION,
        "sdVersion": SD_VERSION,
        "name": dataset_id,
        "alternateName": exp["title"],
        "description": exp.get("description") or exp["title"],
        "identifier": [dataset_id, exp["request_id"]],
        "version": f"{version}.0.0",
        "license": f"https://spdx.org/licenses/{exp['license']}.html",
        "url": iri,
        "datePublished": created,
        "dateCreated": exp["acquired"],
        "creator": creators(experiment=exp),
        "keywords": sorted({modality, technique, *(exp.get("keywords") or [])}),
        "measurementTechnique": technique,
        "isAccessibleForFree": access == "open",
        "conditionsOfAccess": access,
        "citation": citation,
        "citeAs": citation,
        "about": sample_terms(samples=samples, extra=tested),
        "distribution": distribution,
        "recordSet": record_sets,
        "binds:modality": modality,
        "binds:accessLevel": access,
        "binds:contentDigest": content_digest,
        "binds:instrument": exp.get("instrument"),
        "binds:sample": [_sample_node(iri, s) for s in samples],
        "binds:compoundInData": [term_iri(c) for c in tested],
        "binds:parameters": parameters,
        "binds:qc": metrics,
        "binds:qcVerdict": _qc_verdict(stage, modality),
        "variableMeasured": [
            _property_value(k, v)
            for k, v in sorted(metrics.items())
            if isinstance(v, (int, float, str, bool))
        ],
        "additionalProperty": [
            _property_value(k, v) for k, v in sorted((facts.get("facts") or {}).items())
        ],
        "prov:wasGeneratedBy": generated_by(modality=modality, run=stage.run_info),
        **data_formats(record_sets=record_sets, metrics=metrics),
    }
    instrument = exp.get("instrument") or {}
    if instrument.get("model"):
        doc["binds:instrumentModel"] = instrument["model"]
    return _without_empty(doc) | _optional_keys(experiment=exp, facts=facts)


def _content_prefix(
    content_base: str | None, *, access: str, modality: str, dataset_id: str, version: int
) -> str:
    """The absolute URL prefix of the version's files ("" without a content base: relative)."""
    if not content_base:
        return ""
    return f"{content_base.rstrip('/')}/{access}/{modality}/{dataset_id}/v{version}/"


def _without_empty(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without its empty values (its provenance's too); ``recordSet`` and
    ``distribution`` stay, even empty."""
    # mlcroissant loops forever on an empty JSON object; leave out what is empty
    kept = {
        k: v
        for k, v in doc.items()
        if v not in ({}, None, []) or k in ("recordSet", "distribution")
    }
    kept["prov:wasGeneratedBy"] = {
        k: v for k, v in kept["prov:wasGeneratedBy"].items() if v not in ({}, None, [])
    }
    return kept


def _optional_keys(*, experiment: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The optional last keys: embargo, data use (DUO), metadata conflicts, operator."""
    exp = experiment
    terms: dict[str, Any] = {}
    if exp["access"].get("embargo_until"):
        terms["binds:embargoUntil"] = exp["access"]["embargo_until"]
    if exp["access"].get("data_use"):
        terms["binds:dataUse"] = [
            DUO_IRI + code.removeprefix("DUO:") for code in exp["access"]["data_use"]
        ]
    if facts.get("conflicts"):
        terms["binds:metadataConflicts"] = facts["conflicts"]
    if exp.get("operator"):
        terms["binds:operator"] = exp["operator"]
    return terms


def distribution_and_record_sets(
    *, files: list[dict[str, Any]], stage_root: Path, content_prefix: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Croissant ``distribution`` (a FileObject per plain file, a FileSet per Parquet part
    folder and per Zarr store) and the ``recordSet`` of every table and array read from them.

    ``content_prefix``: prepended to each path for ``contentUrl`` ("" keeps paths relative).
    """
    plain, parquet_dirs, zarr_roots = _group_files(files)
    distribution: list[dict[str, Any]] = []
    record_sets: list[dict[str, Any]] = []
    for f in plain:
        suffix = Path(f["path"]).suffix.lower()
        distribution.append(
            {
                "@type": "cr:FileObject",
                "@id": f["path"],
                "name": f["path"],
                "contentUrl": content_prefix + f["path"],
                "contentSize": f"{f['size']} B",
                "encodingFormat": ENCODINGS.get(suffix, "application/octet-stream"),
                "sha256": f["sha256"],
            }
        )
        if suffix == ".parquet":
            rs = record_set(f["path"], stage_root / f["path"])
            if rs and rs["field"]:
                record_sets.append(rs)
    for pdir, parts_ in sorted(parquet_dirs.items()):
        distribution.append(
            {
                "@type": "cr:FileSet",
                "@id": pdir,
                "name": pdir,
                "description": f"Parquet table in {len(parts_)} part file(s); per-file sha256 in manifest.json",
                "encodingFormat": "application/x-parquet",
                "includes": f"{pdir}/*.parquet",
                "contentSize": f"{sum(p['size'] for p in parts_)} B",
            }
        )
        first_part = sorted(parts_, key=lambda f: f["path"])[0]["path"]
        rs = record_set(pdir, stage_root / first_part, file_set=True)
        if rs and rs["field"]:
            record_sets.append(rs)
    for zroot, zfiles in sorted(zarr_roots.items()):
        kind = (
            "OME-Zarr 0.5 image (Zarr v3)" if zroot.endswith(".ome.zarr") else "AnnData on Zarr v3"
        )
        distribution.append(
            {
                "@type": "cr:FileSet",
                "@id": zroot,
                "name": zroot,
                "description": f"{kind}: {len(zfiles)} files, {sum(z['size'] for z in zfiles)} bytes; "
                "per-file sha256 in manifest.json",
                "encodingFormat": ZARR_ENCODING,
                "includes": f"{zroot}/**",
                "contentSize": f"{sum(z['size'] for z in zfiles)} B",
            }
        )
        zrs = zarr_record_set(zroot, stage_root / zroot)
        if zrs:
            record_sets.append(zrs)
    return distribution, record_sets


def _group_files(
    files: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """(plain files, files per Parquet part folder, files per Zarr store), in listing order."""
    plain: list[dict[str, Any]] = []
    zarr_roots: dict[str, list[dict[str, Any]]] = {}
    parquet_dirs: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        parts = f["path"].split("/")
        zroot = next(
            (("/".join(parts[: i + 1])) for i, p in enumerate(parts) if p.endswith(ZARR_SUFFIXES)),
            None,
        )
        if zroot:
            zarr_roots.setdefault(zroot, []).append(f)
            continue
        # a folder named *.parquet holding part files (one per run): one table, one RecordSet
        pdir = next(
            ("/".join(parts[: i + 1]) for i, p in enumerate(parts[:-1]) if p.endswith(".parquet")),
            None,
        )
        if pdir:
            parquet_dirs.setdefault(pdir, []).append(f)
            continue
        plain.append(f)
    return plain, parquet_dirs, zarr_roots


def sample_terms(
    *, samples: list[dict[str, Any]], extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The ``about`` list: each ontology term the samples name (organism, tissue ...), then
    the ``extra`` ids (compounds named in the data tables), once each."""
    about: list[dict[str, Any]] = []
    seen: set[str] = set()
    named = [s.get(key) for s in samples for key in SAMPLE_TERMS]
    for val in [*named, *extra]:
        if isinstance(val, str) and val not in seen and (term := defined_term(val)):
            seen.add(val)
            about.append(term)
    return about


#: Data-table columns that hold compound ontology ids, and the CURIE prefix of their values.
COMPOUND_ID_COLUMNS = {"compound_chebi": "", "compound_pubchem_cid": "PUBCHEM.COMPOUND:"}


def compounds_in_tables(*, files: list[dict[str, Any]], stage_root: Path) -> list[str]:
    """The compound ids (CURIEs) named in the version's plain Parquet tables, sorted, once each.

    A screen's compounds live in its plate maps, not in experiment.yaml's samples: without
    this the catalog could not select a screen by the compound it tested.  Only the id
    columns are read (a column projection), and only from tables that have one.
    """
    found: set[str] = set()
    for f in files:
        if not f["path"].endswith(".parquet") or "/" in f["path"].removeprefix("data/"):
            continue
        path = stage_root / f["path"]
        names = set(pq.read_schema(path).names) & set(COMPOUND_ID_COLUMNS)
        if not names:
            continue
        table = pq.read_table(path, columns=sorted(names))
        for name in sorted(names):
            prefix = COMPOUND_ID_COLUMNS[name]
            found.update(
                f"{prefix}{v}" for v in table.column(name).unique().to_pylist() if v is not None
            )
    return sorted(c for c in found if term_iri(c))


def creators(*, experiment: dict[str, Any]) -> list[dict[str, Any]]:
    """The requesting PI (with ORCID and affiliation when given), then the support unit."""
    requester = experiment.get("requester") or {}
    creator: list[dict[str, Any]] = []
    if requester.get("pi"):
        person: dict[str, Any] = {"@type": "Person", "name": requester["pi"]}
        if requester.get("orcid"):
            orcid = requester["orcid"]
            person["@id"] = orcid if orcid.startswith("https://") else f"https://orcid.org/{orcid}"
        if requester.get("affiliation") or requester.get("lab"):
            person["affiliation"] = {
                "@type": "Organization",
                "name": requester.get("affiliation") or requester.get("lab"),
            }
        creator.append(person)
    creator.append(
        {"@type": "Organization", "name": experiment.get("support_unit") or "BINDS support unit"}
    )
    return creator


def generated_by(*, modality: str, run: dict[str, Any]) -> dict[str, Any]:
    """``prov:wasGeneratedBy``: the run (times, workflow, software versions, inputs used)."""
    return {
        "@type": "prov:Activity",
        "name": f"binds run ({modality} workflow)",
        "prov:startedAtTime": run.get("started"),
        "prov:endedAtTime": run.get("staged"),
        "binds:workflow": run.get("workflow"),
        "binds:software": _software_versions(modality),
        "binds:python": platform.python_version(),
        "prov:used": [
            {
                "@type": "prov:Entity",
                "name": i.get("name") or i.get("path"),
                "sha256": i.get("sha256"),
                "contentSize": f"{i.get('size')} B",
            }
            for i in run.get("inputs", [])
        ],
    }


def _qc_verdict(stage: StagedDataset, modality: str) -> dict[str, Any]:
    """The version's one QC verdict (qc/verdict.json; pipelines.toolkit.qc)."""
    from pipelines.describe.verdict import read_verdict

    return read_verdict(stage.qc_dir, modality, stage.metrics).to_dict()


def data_formats(*, record_sets: list[dict[str, Any]], metrics: dict[str, Any]) -> dict[str, Any]:
    """``binds:dataFormats`` (every table's and the metrics' format) and ``binds:formatVersion``
    (their versions, joined by "/"); empty when no format is stamped."""
    formats = sorted(
        {rs["binds:tableFormat"] for rs in record_sets if rs.get("binds:tableFormat")}
        | ({metrics["format"]} if isinstance(metrics.get("format"), str) else set())
    )
    if not formats:
        return {}
    return {
        "binds:dataFormats": formats,
        "binds:formatVersion": "/".join(sorted({f.rpartition("/")[2] for f in formats})),
    }
