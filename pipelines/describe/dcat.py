"""DCAT-AP 3 export of the catalog (``binds catalog --format dcat``), for data portals and the
NBDC RDF portal.

* one ``dcat:Catalog`` (the store, as seen by one audience);
* per dataset a ``dcat:DatasetSeries``; per version a ``dcat:Dataset`` (``dcat:inSeries``,
  ``dcat:version``, ``dcat:hasVersion`` / ``dcat:isVersionOf`` links and
  ``dcat:previousVersion``), with its licence (SPDX), access rights (the EU access-right
  authority: open -> PUBLIC, consortium -> RESTRICTED, restricted -> NON_PUBLIC), keywords,
  themes (the samples' ontology classes), dates, publisher (the support unit);
* one ``dcat:Distribution`` per data entry (a Zarr store, a Parquet table or folder of parts)
  and one for ``metadata.jsonld`` (Croissant), with byte size, media type and, for single
  files, an ``spdx:Checksum`` (sha256); multi-file entries name their manifest;
* VoID statistics (``void:Dataset`` with ``void:triples``, ``void:entities``, classes and
  properties) of the exported graph itself, for the RDF portal.

Only the access levels the audience may see are read, so a restricted dataset never appears
in an export made for the open level.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCTERMS, FOAF, RDF, RDFS, XSD

from pipelines.describe.jsonld import base_url, dataset_iri, term_iri
from pipelines.store.identifiers import ACCESS_LEVELS

DCAT = Namespace("http://www.w3.org/ns/dcat#")  # DCAT 3 (rdflib's lacks DatasetSeries, version)
SPDX = Namespace("http://spdx.org/rdf/terms#")
VOID = Namespace("http://rdfs.org/ns/void#")
ADMS = Namespace("http://www.w3.org/ns/adms#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
FILE_TYPE = "http://publications.europa.eu/resource/authority/file-type/"
BINDS = Namespace("https://binds.example.org/terms/")
ACCESS_RIGHT = "http://publications.europa.eu/resource/authority/access-right/"
ACCESS_RIGHTS = {"open": "PUBLIC", "consortium": "RESTRICTED", "restricted": "NON_PUBLIC"}
MEDIA = {
    ".parquet": "https://www.iana.org/assignments/media-types/application/vnd.apache.parquet",
    ".zarr": "https://www.iana.org/assignments/media-types/application/octet-stream",
    ".jsonld": "https://www.iana.org/assignments/media-types/application/ld+json",
}
FORMATS = {
    ".parquet": "Apache Parquet",
    ".zarr": "Zarr v3",
    ".jsonld": "JSON-LD (schema.org + Croissant 1.1)",
}


def audience_levels(levels: Sequence[str], audience: str) -> list[str]:
    """``levels`` less those ``audience`` may not see: an export never holds a level above its
    audience (open: open only; consortium: open and consortium; restricted: all)."""
    visible = ACCESS_LEVELS[: ACCESS_LEVELS.index(audience) + 1]
    return [lv for lv in levels if lv in visible]


def catalog_turtle(
    df, *, store, levels: Sequence[str], audience: str = "open", base: str | None = None
) -> str:
    """:func:`catalog_graph` as Turtle; the curator's export (``audience="restricted"``) holds
    the versions held under embargo at ``levels`` too."""
    if audience == "restricted":
        import pandas as pd

        from pipelines.describe.embargo import held_frame

        held = held_frame(store, levels)
        if len(held):
            df = pd.concat([df, held], ignore_index=True)
    return catalog_graph(df, store=store, base=base, audience=audience).serialize(format="turtle")


def catalog_graph(df, *, store, base: str | None = None, audience: str = "open") -> Graph:
    """The DCAT-AP 3 graph of the catalog rows ``df`` (already limited to what ``audience`` sees).

    ``store`` gives each version's manifest and metadata.jsonld (checksums, titles, samples).
    """
    base = base_url(base)
    g = _bound_graph()
    cat = URIRef(f"{base}/catalog/{audience}")
    _catalog(g, cat, base=base, audience=audience)
    rows = sorted(df.to_dict("records"), key=lambda r: (r["dataset_id"], r["version"]))
    store = _Prefetched(store, rows)  # every manifest and metadata.jsonld once, in parallel
    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["access"], r["modality"], r["dataset_id"]), []).append(r)
    for (access, modality, dataset_id), versions in sorted(series.items()):
        s_iri = URIRef(f"{base}/{access}/{modality}/{dataset_id}")
        _series(g, s_iri, cat, dataset_id=dataset_id, modality=modality, last=versions[-1])
        previous = None
        for r in versions:
            v_iri = URIRef(dataset_iri(access, modality, dataset_id, int(r["version"]), base=base))
            _dataset(g, v_iri, r, store=store, base=base)
            _series_member(g, v_iri, s_iri, cat, previous=previous)
            previous = v_iri
        g.add((s_iri, DCAT.last, previous))
    _void(g, URIRef(f"{base}/catalog/{audience}#void"), cat)
    return g


def _bound_graph() -> Graph:
    """An empty graph with the prefixes the Turtle export is written with."""
    g = Graph()
    for prefix, ns in (
        ("dcat", DCAT),
        ("dct", DCTERMS),
        ("foaf", FOAF),
        ("spdx", SPDX),
        ("void", VOID),
        ("adms", ADMS),
        ("binds", BINDS),
        ("xsd", XSD),
        ("vcard", VCARD),
    ):
        g.bind(prefix, ns)
    return g


def _catalog(g: Graph, cat: URIRef, *, base: str, audience: str) -> None:
    """The dcat:Catalog itself: title, description, publisher, when it was exported."""
    g.add((cat, RDF.type, DCAT.Catalog))
    g.add((cat, DCTERMS.title, Literal(f"BINDS curated datasets ({audience} level)", lang="en")))
    g.add(
        (
            cat,
            DCTERMS.description,
            Literal(
                "Datasets of the BINDS support units (cryo-EM, metabolomics, transcriptomics, screening), "
                "one dcat:Dataset per version, versions grouped in a dcat:DatasetSeries.",
                lang="en",
            ),
        )
    )
    publisher = URIRef(f"{base}/agents/binds")
    g.add((cat, DCTERMS.publisher, publisher))
    _agent(g, publisher, "BINDS data accumulation and utilisation unit")
    g.add(
        (
            cat,
            DCTERMS.modified,
            Literal(dt.datetime.now(dt.UTC).replace(microsecond=0), datatype=XSD.dateTime),
        )
    )


def _series(
    g: Graph, s_iri: URIRef, cat: URIRef, *, dataset_id: str, modality: str, last: dict[str, Any]
) -> None:
    """The dcat:DatasetSeries of one dataset's versions, titled after its newest (``last``)."""
    g.add((s_iri, RDF.type, DCAT.DatasetSeries))
    g.add((s_iri, RDF.type, DCAT.Dataset))  # a series is a dataset (DCAT 3); no inference assumed
    g.add((cat, DCAT.dataset, s_iri))
    g.add((s_iri, DCTERMS.title, Literal(last["title"] or dataset_id, lang="en")))
    g.add(
        (
            s_iri,
            DCTERMS.description,
            Literal(
                f"All versions of {dataset_id} ({modality}); newest: v{last['version']}.",
                lang="en",
            ),
        )
    )
    g.add((s_iri, DCTERMS.identifier, Literal(dataset_id)))


def _series_member(
    g: Graph, v_iri: URIRef, s_iri: URIRef, cat: URIRef, *, previous: URIRef | None
) -> None:
    """Version ``v_iri`` in the catalog and in its series, after ``previous``."""
    g.add((cat, DCAT.dataset, v_iri))
    g.add((v_iri, DCAT.inSeries, s_iri))
    g.add((s_iri, DCAT.hasVersion, v_iri))
    g.add((v_iri, DCAT.isVersionOf, s_iri))
    if previous is not None:
        g.add((v_iri, DCAT.previousVersion, previous))


class _Prefetched:
    """The manifests and metadata documents of ``rows``, read once each, in parallel (16 at a
    time on S3) with a progress bar on a terminal; ``get`` answers from them."""

    def __init__(self, store, rows: list[dict[str, Any]]) -> None:
        from pipelines.access.catalog_log import get_many
        from pipelines.describe.catalog import StoreSource
        from pipelines.progress import counting

        keys = [r["path"] + name for r in rows for name in ("manifest.json", "metadata.jsonld")]
        with counting("reading the versions", len(keys)) as advance:
            self.blobs = get_many(StoreSource(store), keys, progress=advance)

    def get(self, key: str) -> bytes:
        return self.blobs[key]


def _agent(g: Graph, node, name: str) -> None:
    g.add((node, RDF.type, FOAF.Agent))
    g.add((node, FOAF.name, Literal(name)))


def _dataset(g: Graph, v: URIRef, r: dict[str, Any], *, store, base: str) -> None:
    """One version as a dcat:Dataset, from its catalog row ``r``, manifest and metadata."""
    prefix = r["path"]
    manifest = json.loads(store.get(prefix + "manifest.json"))
    try:
        meta = json.loads(store.get(prefix + "metadata.jsonld"))
    except KeyError:
        meta = {}
    g.add((v, RDF.type, DCAT.Dataset))
    _describe_version(g, v, r, meta=meta)
    _access_rights(g, v, r)
    licence = URIRef(f"https://spdx.org/licenses/{r['licence']}") if r.get("licence") else None
    if licence is not None:
        g.add((v, DCTERMS.license, licence))
        g.add((licence, RDF.type, DCTERMS.LicenseDocument))
    _publisher(g, v, r, base=base)
    _themes(g, v, r, meta=meta)
    g.add((v, BINDS.modality, Literal(r["modality"])))
    g.add((v, BINDS.accessLevel, Literal(r["access"])))
    g.add((v, BINDS.contentDigest, Literal(r["content_digest"])))
    g.add((v, DCAT.landingPage, URIRef(str(v))))
    g.add((URIRef(str(v)), RDF.type, FOAF.Document))
    _distributions(g, v, r, manifest=manifest, base=base, licence=licence)


def _describe_version(g: Graph, v: URIRef, r: dict[str, Any], *, meta: dict[str, Any]) -> None:
    """Title, description, identifier, version and dates of version ``v``."""
    g.add(
        (
            v,
            DCTERMS.title,
            Literal(f"{r['title'] or r['dataset_id']} (version {r['version']})", lang="en"),
        )
    )
    desc = meta.get("description") or r["title"] or r["dataset_id"]
    g.add(
        (
            v,
            DCTERMS.description,
            Literal(desc if isinstance(desc, str) else json.dumps(desc), lang="en"),
        )
    )
    g.add((v, DCTERMS.identifier, Literal(f"{r['dataset_id']}/v{r['version']}")))
    g.add((v, DCAT.version, Literal(str(r["version"]))))
    g.add((v, ADMS.versionNotes, Literal(f"content {r['content_digest']}", lang="en")))
    if r.get("created") is not None:
        created = (
            r["created"].to_pydatetime() if hasattr(r["created"], "to_pydatetime") else r["created"]
        )
        g.add((v, DCTERMS.issued, Literal(created.replace(microsecond=0), datatype=XSD.dateTime)))
    if r.get("acquired") is not None:
        g.add((v, DCTERMS.created, Literal(r["acquired"], datatype=XSD.date)))


def _access_rights(g: Graph, v: URIRef, r: dict[str, Any]) -> None:
    """The EU access-right of version ``v``: its level's, or NON_PUBLIC while under embargo."""
    rights = ACCESS_RIGHTS[r["access"]]
    until = r.get("embargo_until")
    if until is not None and until == until:  # not NaT/NaN (pandas)
        from pipelines.describe.embargo import today

        until = until.date() if hasattr(until, "date") and callable(until.date) else until
        if until > today():  # under embargo: nobody may access it before that day
            rights = "NON_PUBLIC"
            g.add((v, DCTERMS.available, Literal(until, datatype=XSD.date)))
            g.add((v, ADMS.versionNotes, Literal(f"under embargo until {until}", lang="en")))
    g.add((v, DCTERMS.accessRights, URIRef(ACCESS_RIGHT + rights)))
    g.add((URIRef(ACCESS_RIGHT + rights), RDF.type, DCTERMS.RightsStatement))


def _publisher(g: Graph, v: URIRef, r: dict[str, Any], *, base: str) -> None:
    """The support unit that published version ``v``, as its publisher and contact point."""
    unit = URIRef(f"{base}/agents/{_slug(r.get('support_unit') or 'binds')}")
    g.add((v, DCTERMS.publisher, unit))
    _agent(g, unit, r.get("support_unit") or "BINDS support unit")
    contact = URIRef(f"{unit}#contact")
    g.add((v, DCAT.contactPoint, contact))
    g.add((contact, RDF.type, VCARD.Kind))
    g.add((contact, VCARD.fn, Literal(r.get("support_unit") or "BINDS support unit")))


def _themes(g: Graph, v: URIRef, r: dict[str, Any], *, meta: dict[str, Any]) -> None:
    """Keywords, and the ontology terms of the samples (organisms ... compounds) as themes."""
    for kw in sorted({r["modality"], *(meta.get("keywords") or [])}):
        g.add((v, DCAT.keyword, Literal(kw, lang="en")))
    for col in ("organisms", "tissues", "cell_types", "compounds"):
        for curie in _items(r.get(col)):
            iri = term_iri(curie)
            if iri:
                g.add((v, DCAT.theme, URIRef(iri)))
                g.add(
                    (URIRef(iri), RDF.type, URIRef("http://www.w3.org/2004/02/skos/core#Concept"))
                )
                g.add(
                    (
                        URIRef(iri),
                        URIRef("http://www.w3.org/2004/02/skos/core#prefLabel"),
                        Literal(curie),
                    )
                )


def _distributions(
    g: Graph,
    v: URIRef,
    r: dict[str, Any],
    *,
    manifest: dict[str, Any],
    base: str,
    licence: URIRef | None,
) -> None:
    """One dcat:Distribution per data path of version ``v``, and one for its metadata.jsonld."""
    prefix = r["path"]
    files = manifest["files"]
    access_url = URIRef(f"{base}/{prefix}")
    for entry in _items(r.get("data_paths")):
        members = [f for f in files if f["path"] == entry or f["path"].startswith(entry + "/")]
        suffix = (
            ".zarr" if entry.endswith(".zarr") else ".parquet" if entry.endswith(".parquet") else ""
        )
        _distribution(
            g,
            v,
            URIRef(f"{base}/{prefix}{entry}"),
            access_url,
            title=entry,
            members=members,
            suffix=suffix,
            manifest_url=URIRef(f"{base}/{prefix}manifest.json"),
            licence=licence,
        )
    md = manifest.get("metadata") or {}
    if md:
        _distribution(
            g,
            v,
            URIRef(f"{base}/{prefix}metadata.jsonld"),
            access_url,
            title="metadata.jsonld",
            members=[{"path": "metadata.jsonld", "size": md["size"], "sha256": md["sha256"]}],
            suffix=".jsonld",
            manifest_url=None,
            licence=licence,
        )


def _distribution(
    g: Graph,
    v: URIRef,
    d: URIRef,
    access_url: URIRef,
    *,
    title: str,
    members: list[dict[str, Any]],
    suffix: str,
    manifest_url: URIRef | None,
    licence: URIRef | None,
) -> None:
    g.add((v, DCAT.distribution, d))
    if licence is not None:
        g.add((d, DCTERMS.license, licence))
    if suffix in (".parquet", ".jsonld"):
        ftype = URIRef(FILE_TYPE + ("PARQUET" if suffix == ".parquet" else "JSON_LD"))
        g.add((d, DCTERMS["format"], ftype))
        g.add((ftype, RDF.type, DCTERMS.MediaTypeOrExtent))
    g.add((d, RDF.type, DCAT.Distribution))
    g.add((d, DCTERMS.title, Literal(title, lang="en")))
    g.add((d, DCAT.accessURL, access_url))
    g.add(
        (
            d,
            DCAT.byteSize,
            Literal(sum(int(m["size"]) for m in members), datatype=XSD.nonNegativeInteger),
        )
    )
    if suffix in MEDIA:
        g.add((d, DCAT.mediaType, URIRef(MEDIA[suffix])))
        g.add((URIRef(MEDIA[suffix]), RDF.type, DCTERMS.MediaType))
    if len(members) == 1:
        g.add(
            (
                d,
                DCTERMS.description,
                Literal(f"{title}: one {FORMATS.get(suffix, 'file')} file", lang="en"),
            )
        )
        g.add((d, DCAT.downloadURL, d))
        checksum = BNode()
        g.add((d, SPDX.checksum, checksum))
        g.add((checksum, RDF.type, SPDX.Checksum))
        g.add((checksum, SPDX.algorithm, SPDX.checksumAlgorithm_sha256))
        g.add((SPDX.checksumAlgorithm_sha256, RDF.type, SPDX.ChecksumAlgorithm))
        g.add((checksum, SPDX.checksumValue, Literal(members[0]["sha256"], datatype=XSD.hexBinary)))
    else:
        desc = f"{len(members)} files ({FORMATS.get(suffix, 'files')}); the sha256 of each is in manifest.json"
        g.add((d, DCTERMS.description, Literal(desc, lang="en")))
        if manifest_url is not None:
            g.add((d, RDFS.seeAlso, manifest_url))


def _void(g: Graph, node: URIRef, cat: URIRef) -> None:
    """VoID statistics of the graph as it is before they are added."""
    triples = len(g)
    subjects = {s for s in g.subjects() if isinstance(s, URIRef)}
    classes: dict[Any, int] = {}
    for _, _, o in g.triples((None, RDF.type, None)):
        classes[o] = classes.get(o, 0) + 1
    properties: dict[Any, int] = {}
    for _, p, _ in g:
        properties[p] = properties.get(p, 0) + 1
    g.add((node, RDF.type, VOID.Dataset))
    g.add((node, DCTERMS.title, Literal("VoID statistics of this catalog export", lang="en")))
    g.add((node, FOAF.primaryTopic, cat))
    g.add((node, VOID.triples, Literal(triples, datatype=XSD.integer)))
    g.add((node, VOID.entities, Literal(len(subjects), datatype=XSD.integer)))
    g.add((node, VOID.classes, Literal(len(classes), datatype=XSD.integer)))
    g.add((node, VOID.properties, Literal(len(properties), datatype=XSD.integer)))
    for cls, n in sorted(classes.items()):
        part = BNode()
        g.add((node, VOID.classPartition, part))
        g.add((part, VOID["class"], cls))
        g.add((part, VOID.entities, Literal(n, datatype=XSD.integer)))
    for prop, n in sorted(properties.items()):
        part = BNode()
        g.add((node, VOID.propertyPartition, part))
        g.add((part, VOID.property, prop))
        g.add((part, VOID.triples, Literal(n, datatype=XSD.integer)))


def _items(value) -> list[Any]:
    return [] if value is None else list(value)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "unit"


__all__ = ["audience_levels", "catalog_graph", "catalog_turtle"]
