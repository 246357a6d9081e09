"""`binds catalog --format dcat`: DCAT-AP 3 Turtle that pySHACL finds conformant with the
DCAT-AP 3.0.1 shapes (../shared/standards/dcat-ap-3.0.1), per audience."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import rdflib
from rdflib.namespace import RDF
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.toolkit.stage import StagedDataset

pytestmark = pytest.mark.usefixtures("keep_logging")
STANDARDS = Path(__file__).resolve().parents[3] / "shared" / "standards" / "dcat-ap-3.0.1"
if not STANDARDS.is_dir():
    STANDARDS = Path("/work/shared/standards/dcat-ap-3.0.1")
DCAT = rdflib.Namespace("http://www.w3.org/ns/dcat#")
SPDX = rdflib.Namespace("http://spdx.org/rdf/terms#")
VOID = rdflib.Namespace("http://rdfs.org/ns/void#")


@pytest.fixture(scope="module")
def mixed_store(demo_store, tmp_path_factory):
    """The demo store plus a restricted and a second (consortium) version of the screening demo."""
    tmp = tmp_path_factory.mktemp("dcat")
    store_dir = tmp / "store"
    shutil.copytree(demo_store, store_dir)
    store = open_store(store_dir)
    src = demo_store.parent / "runs" / ".work" / "screening" / "stage"
    for level, dataset_id, tweak in (
        ("restricted", "secret-screen", b""),
        ("consortium", "shared-screen", b""),
        ("consortium", "shared-screen", b" "),
    ):
        stage_dir = tmp / f"{dataset_id}-{level}-{len(tweak)}"
        shutil.copytree(src, stage_dir)
        exp_path = stage_dir / "_meta" / "experiment.json"
        exp = json.loads(exp_path.read_text())
        exp.update(access={"level": level}, dataset_id=dataset_id, title=f"{dataset_id} title")
        exp_path.write_text(json.dumps(exp))
        if tweak:  # other content: a second version
            (stage_dir / "qc" / "notes.txt").write_bytes(b"second version" + tweak)
        publish(StagedDataset(stage_dir), store)
    return store_dir


def _export(store: Path, audience: str) -> rdflib.Graph:
    out = CliRunner().invoke(
        app, ["catalog", "--store", str(store), "--format", "dcat", "--for", audience]
    )
    assert out.exit_code == 0, out.output
    return rdflib.Graph().parse(data=out.stdout, format="turtle")


def _validate(graph: rdflib.Graph, *names: str) -> None:
    import pyshacl

    shapes = rdflib.Graph()
    for name in names:
        shapes.parse(STANDARDS / name)
    ok, _, text = pyshacl.validate(graph, shacl_graph=shapes, inference="none")
    assert ok, text[:4000]


def test_export_conforms_to_dcat_ap_3(mixed_store):
    graph = _export(mixed_store, "consortium")
    _validate(graph, "dcat-ap-SHACL.ttl")
    _validate(graph, "html-shapes.ttl", "html-range.ttl")
    datasets = set(graph.subjects(RDF.type, DCAT.Dataset)) - set(
        graph.subjects(RDF.type, DCAT.DatasetSeries)
    )
    assert len(datasets) == 6  # 4 demo versions + 2 versions of shared-screen
    series = [
        s for s in graph.subjects(RDF.type, DCAT.DatasetSeries) if str(s).endswith("shared-screen")
    ]
    assert len(series) == 1 and len(list(graph.objects(series[0], DCAT.hasVersion))) == 2
    v2 = next(v for v in graph.objects(series[0], DCAT.hasVersion) if str(v).endswith("/v2"))
    assert str(graph.value(v2, DCAT.previousVersion)).endswith("/v1")
    sums = [str(v) for v in graph.objects(None, SPDX.checksumValue)]
    assert sums and all(len(s) == 64 for s in sums)
    rights = {
        str(o) for o in graph.objects(None, rdflib.URIRef("http://purl.org/dc/terms/accessRights"))
    }
    assert rights == {
        "http://publications.europa.eu/resource/authority/access-right/PUBLIC",
        "http://publications.europa.eu/resource/authority/access-right/RESTRICTED",
    }
    void = next(graph.subjects(RDF.type, VOID.Dataset))
    assert int(graph.value(void, VOID.triples)) > 100 and int(graph.value(void, VOID.entities)) > 10
    licences = {
        str(o) for o in graph.objects(None, rdflib.URIRef("http://purl.org/dc/terms/license"))
    }
    assert "https://spdx.org/licenses/CC-BY-4.0" in licences


def test_restricted_datasets_never_reach_an_open_export(mixed_store):
    graph = _export(mixed_store, "open")
    text = graph.serialize(format="turtle")
    assert "secret-screen" not in text and "shared-screen" not in text
    assert len(set(graph.subjects(RDF.type, DCAT.Dataset))) == 8  # 4 versions + 4 series
    _validate(graph, "dcat-ap-SHACL.ttl")
    assert "secret-screen" in _export(mixed_store, "restricted").serialize(format="turtle")
