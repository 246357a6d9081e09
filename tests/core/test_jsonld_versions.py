"""metadata.jsonld of every demo and real-data version: Croissant 1.1 that mlcroissant accepts
without error or warning and reads records from, and linked data rdflib loads cleanly."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import rdflib
from rdflib.namespace import XSD

from pipelines.describe.jsonld import BINDS_VOCAB, ONTOLOGIES

pytestmark = pytest.mark.usefixtures("keep_logging")
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "https://schema.org/"
# schema.org terms the documents may use (anything else in that namespace would be invented)
SCHEMA_TERMS = {
    "Dataset",
    "DefinedTerm",
    "Organization",
    "Person",
    "PropertyValue",
    "about",
    "additionalProperty",
    "affiliation",
    "alternateName",
    "citation",
    "conditionsOfAccess",
    "contentSize",
    "contentUrl",
    "creator",
    "dateCreated",
    "datePublished",
    "description",
    "distribution",
    "encodingFormat",
    "identifier",
    "inDefinedTermSet",
    "isAccessibleForFree",
    "keywords",
    "license",
    "measurementTechnique",
    "name",
    "propertyID",
    "sha256",
    "termCode",
    "url",
    "value",
    "variableMeasured",
    "version",
    "Boolean",
    "Float",
    "Integer",
    "Text",
    "Date",
    "DateTime",
}
ONTOLOGY_IRI_PREFIXES = tuple(base for base, _, _ in ONTOLOGIES.values())
NON_TEXT = re.compile(
    r"^([a-z][a-z0-9+.-]*://|sha256:|[0-9a-f]{32,}$|\d{4}-\d\d-\d\d|-?\d+(\.\d+)?( B)?$)"
)


def _versions(store: Path) -> list[Path]:
    found = sorted(store.glob("*/*/*/v*/metadata.jsonld"))
    assert found, f"no versions in {store}"
    return found


@pytest.fixture(params=["demo_store", "real_store"])
def versions(request) -> list[Path]:
    return _versions(request.getfixturevalue(request.param))


def _dataset(path: Path):
    import mlcroissant as mlc

    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger().addHandler(handler)
    try:
        ds = mlc.Dataset(jsonld=str(path))
    finally:
        logging.getLogger().removeHandler(handler)
    issues = ds.metadata.ctx.issues
    assert not issues.errors and not issues.warnings, f"{path}: {issues.report()}"
    assert "WARNING" not in log.getvalue(), log.getvalue()
    return ds


def test_croissant_1_1_validates_and_reads_every_parquet_record_set(versions):
    for path in versions:
        doc = json.loads(path.read_text())
        assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1" and doc["sdVersion"]
        ds = _dataset(path)
        manifest = json.loads((path.parent / "manifest.json").read_text())
        sha = {f["path"]: f["sha256"] for f in manifest["files"]}
        objects = [d for d in doc["distribution"] if d["@type"] == "cr:FileObject"]
        assert objects and all(o["sha256"] == sha[o["contentUrl"]] for o in objects)
        for rs in doc["recordSet"]:
            extracts = [f["source"]["extract"] for f in rs["field"]]
            if any("fileProperty" in e for e in extracts):
                continue  # the arrays of a Zarr store: described, read with zarr / anndata
            rows = list(_take(ds.records(rs["@id"]), 3))
            src = rs["field"][0]["source"]
            n_rows = _parquet_rows(path.parent / src.get("fileObject", src.get("fileSet"))["@id"])
            assert len(rows) == min(3, n_rows), (
                f"{path}: {len(rows)} records from {rs['@id']} of {n_rows} rows"
            )
            if rows:
                assert set(rows[0]) == {f["@id"] for f in rs["field"]}


def _parquet_rows(path: Path) -> int:
    files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _take(it, n):
    for i, row in enumerate(it):
        if i >= n:
            return
        yield row


def test_every_zarr_store_is_a_file_set_with_its_arrays(versions):
    import zarr

    for path in versions:
        doc = json.loads(path.read_text())
        manifest = json.loads((path.parent / "manifest.json").read_text())
        stores = {
            m.group(0) for f in manifest["files"] if (m := re.match(r"data/[^/]+\.zarr", f["path"]))
        }
        sets = {d["@id"]: d for d in doc["distribution"] if d["@type"] == "cr:FileSet"}
        for zstore in stores:
            assert zstore in sets and sets[zstore]["includes"] == f"{zstore}/**"
            rs = next(
                r
                for r in doc["recordSet"]
                if r["field"][0]["source"].get("fileSet", {}).get("@id") == zstore
            )
            root = zarr.open_group(path.parent / zstore, mode="r")
            for field in rs["field"]:
                node = root[field["name"]]
                shape = node.shape if hasattr(node, "shape") else tuple(node.attrs["shape"])
                assert field["arrayShape"] == ",".join(map(str, shape)) and field["isArray"] is True
                assert field["dataType"].startswith(("cr:", "sc:"))
            names = {f["name"] for f in rs["field"]}
            assert {"0"} <= names or {"X", "layers/counts"} <= names, names


def test_every_parquet_column_has_its_description_and_unit(versions):
    """Every table is written by the shared writer (binds.format in its schema metadata), and
    its Croissant fields carry the same descriptions and units."""
    checked = 0
    for path in versions:
        doc = json.loads(path.read_text())
        for rs in doc["recordSet"]:
            src = rs["field"][0]["source"]
            if "fileProperty" in src["extract"]:
                continue
            rel = src.get("fileObject", src.get("fileSet"))["@id"]
            file = path.parent / rel
            schema = pq.read_schema(file if file.is_file() else sorted(file.glob("*.parquet"))[0])
            assert b"binds.format" in (schema.metadata or {}), (
                f"{rel} is not written by pipelines/toolkit/tables.py"
            )
            checked += 1
            for field in rs["field"]:
                md = schema.field(field["name"]).metadata or {}
                assert (
                    field.get("description") and field["description"] == md[b"description"].decode()
                ), (rel, field["name"])
                assert field.get("binds:unit") == (md[b"unit"].decode() if b"unit" in md else None)
    assert checked >= 10


def test_linked_data_loads_with_rdflib_cleanly(versions):
    vocab = rdflib.Graph().parse(ROOT / "metadata" / "binds-vocab.ttl")
    defined = {str(s) for s in vocab.subjects()}
    for path in versions:
        g = rdflib.Graph().parse(path, format="json-ld")
        doc = json.loads(path.read_text())
        dataset = rdflib.URIRef(doc["@id"])
        assert (
            doc["@id"].startswith("https://")
            and (dataset, rdflib.RDF.type, rdflib.URIRef(SCHEMA + "Dataset")) in g
        )
        assert "@language" not in doc["@context"] or doc["@context"]["@language"] is None
        terms = list(g.objects(dataset, rdflib.URIRef(SCHEMA + "about")))
        assert terms and all(
            # OBO PURLs, EFO, PubChem's RDF compound IRIs (a screen's plate-map compounds)
            isinstance(t, rdflib.URIRef) and str(t).startswith(ONTOLOGY_IRI_PREFIXES)
            for t in terms
        )
        for t in terms:
            assert (t, rdflib.URIRef(SCHEMA + "inDefinedTermSet"), None) in g
        organisms = list(g.objects(None, rdflib.URIRef(BINDS_VOCAB + "organism")))
        assert organisms and all(isinstance(o, rdflib.URIRef) for o in organisms)
        for _s, p, o in g:
            if isinstance(o, rdflib.Literal) and o.language:
                assert not NON_TEXT.match(str(o)), (
                    f"{path}: {p} {o!r} is a language-tagged non-text value"
                )
            for term in (p, o if p == rdflib.RDF.type else None):
                if term is None:
                    continue
                if str(term).startswith(SCHEMA):
                    assert str(term)[len(SCHEMA) :] in SCHEMA_TERMS, (
                        f"{path}: invented schema.org term {term}"
                    )
                if str(term).startswith(BINDS_VOCAB):
                    assert str(term) in defined, (
                        f"{path}: {term} is not in metadata/binds-vocab.ttl"
                    )
        published = g.value(dataset, rdflib.URIRef(SCHEMA + "datePublished"))
        created = g.value(dataset, rdflib.URIRef(SCHEMA + "dateCreated"))
        assert published.datatype == XSD.dateTime and created.datatype == XSD.date
        sizes = [
            o
            for o in g.objects(None, rdflib.URIRef(SCHEMA + "value"))
            if isinstance(o.toPython(), (int, float))
        ]
        assert sizes, "QC figures are typed numbers"


def test_croissant_links_resolve_when_read_from_s3(demo_store, s3_bucket, s3_endpoint, monkeypatch):
    """With BINDS_CONTENT_BASE_URL every contentUrl is absolute: mlcroissant reads the document
    and the Parquet records over HTTP from the bucket (open level: public-read policy)."""
    import boto3
    import mlcroissant as mlc

    from pipelines.run.publishing import publish
    from pipelines.store import open_store
    from pipelines.toolkit.stage import StagedDataset

    bucket = s3_bucket.removeprefix("s3://")
    boto3.client("s3", endpoint_url=s3_endpoint).put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{bucket}/curated/open/*",
                    }
                ],
            }
        ),
    )
    monkeypatch.setenv("BINDS_CONTENT_BASE_URL", f"{s3_endpoint}/{bucket}/curated")
    stage = StagedDataset(demo_store.parent / "runs" / ".work" / "screening" / "stage")
    result = publish(stage, open_store(f"{s3_bucket}/curated"))
    url = f"{s3_endpoint}/{bucket}/curated/{result.prefix}v{result.version}/metadata.jsonld"
    ds = mlc.Dataset(jsonld=url)
    assert not ds.metadata.ctx.issues.errors and not ds.metadata.ctx.issues.warnings
    doc = json.loads(
        boto3.client("s3", endpoint_url=s3_endpoint)
        .get_object(Bucket=bucket, Key=f"curated/{result.prefix}v{result.version}/metadata.jsonld")[
            "Body"
        ]
        .read()
    )
    assert all(
        d["contentUrl"].startswith(s3_endpoint)
        for d in doc["distribution"]
        if d["@type"] == "cr:FileObject"
    )
    first = next(iter(ds.records("hits")))
    assert first["hits/well"] and first["hits/score"] is not None
