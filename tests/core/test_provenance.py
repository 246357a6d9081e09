"""``ro-crate-metadata.json`` of a published version: a Provenance Run Crate 0.5 that
rocrate-validator accepts offline, and that agrees with metadata.jsonld and manifest.json."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path

from rocrate_offline import validate_offline

from pipelines.describe.provenance import CRATE_PATH, WORKFLOW_DIR
from pipelines.describe.usage import USAGE_PATH


def _graph(version_dir: Path) -> dict[str, dict]:
    crate = json.loads((version_dir / CRATE_PATH).read_text())
    return {e["@id"]: e for e in crate["@graph"]}


def _ids(value) -> list[str]:
    if value is None:
        return []
    return [v["@id"] for v in (value if isinstance(value, list) else [value])]


def _types(entity) -> set[str]:
    t = entity["@type"]
    return set(t if isinstance(t, list) else [t])


def test_crate_passes_the_provenance_run_crate_profile_offline(cryoem_version):
    version_dir, *_ = cryoem_version
    issues, fetched = validate_offline(version_dir, severity="REQUIRED")
    required = [i for i in issues if i["severity"] == "REQUIRED"]
    assert required == [], required
    assert fetched == [], f"the validator tried to download {fetched}"


def test_crate_agrees_with_metadata_jsonld_and_the_manifest(cryoem_version):
    version_dir, manifest, _staged, run_dir = cryoem_version
    g = _graph(version_dir)
    meta = json.loads((version_dir / "metadata.jsonld").read_text())
    prov = meta["prov:wasGeneratedBy"]
    run = g["#run"]
    # same raw inputs (name, size, sha256), referenced where they were read, never copied
    # metadata.jsonld gives sizes as schema.org contentSize text ("3539968 B")
    used = {(u["name"], int(u["contentSize"].split()[0]), u["sha256"]) for u in prov["prov:used"]}
    objects = [g[i] for i in _ids(run["object"]) if _types(g[i]) == {"File"}]
    assert {(o["name"], int(o["contentSize"]), o["sha256"]) for o in objects} == used
    # human data (the cryo-EM demo's samples are human): the maps by run id, a local
    # identifier (_meta/run_ids.json maps it to the file); experiment.yaml where it was read
    run_ids = json.loads((version_dir / "_meta" / "run_ids.json").read_text())["run_ids"]
    for o in objects:
        if o["name"] in run_ids:
            assert o["@id"] == f"#raw/{o['name']}"
        else:
            assert (
                o["@id"].startswith(run_dir.resolve().as_uri()) and o["name"] == "experiment.yaml"
            )
    assert {o["name"] for o in objects} == {*run_ids, "experiment.yaml"}
    assert not any((version_dir / o["name"]).exists() for o in objects)
    # same times
    assert run["startTime"] == prov["prov:startedAtTime"]
    assert run["endTime"] == prov["prov:endedAtTime"]
    # every published file is in the crate with the manifest's sha256 and size (Zarr: its folder)
    for f in manifest["files"]:
        if f["path"].startswith("data/map.ome.zarr/"):
            continue
        assert (
            g[f["path"]]["sha256"] == f["sha256"] and int(g[f["path"]]["contentSize"]) == f["size"]
        )
    zarr = g["data/map.ome.zarr/"]
    assert int(zarr["contentSize"]) == sum(
        f["size"] for f in manifest["files"] if f["path"].startswith("data/map.ome.zarr/")
    )
    # the main entity: the workflow with name, version, git commit, stored beside the data
    wf = g[_ids(g["./"]["mainEntity"])[0]]
    assert {"File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"} <= _types(wf)
    assert wf["version"] == version("binds-pipelines") and wf["identifier"].startswith("git:")
    assert (version_dir / WORKFLOW_DIR / "Snakefile").is_file()


def test_one_create_action_per_job_with_steps_controls_and_usage(cryoem_version):
    version_dir, _manifest, _staged, _ = cryoem_version
    g = _graph(version_dir)
    usage = json.loads((version_dir / USAGE_PATH).read_text())
    jobs = {f"#job-{j['jobid']}": j for j in usage["jobs"]}
    assert set(jobs) >= {"#job-1"} and len(jobs) == 5  # inspect, convert, map_qc, fsc, metrics
    controls = [e for e in g.values() if "ControlAction" in _types(e)]
    assert {_ids(c["object"])[0] for c in controls} == set(jobs)
    steps = {e["name"]: e for e in g.values() if "HowToStep" in _types(e)}
    assert set(steps) == {j["rule"] for j in jobs.values()}
    organize = next(e for e in g.values() if "OrganizeAction" in _types(e))
    assert set(_ids(organize["object"])) == {c["@id"] for c in controls}
    for jid, job in jobs.items():
        action = g[jid]
        assert g[_ids(action["instrument"])[0]]["name"] == job["rule"]
        assert action["startTime"] == job["start"] and action["endTime"] == job["end"]
        assert action["startTime"] <= action["endTime"]
        results = [g[i] for i in _ids(action["result"])]
        assert results and all("contentSize" in r for r in results)
        usage_pv = {g[i]["name"]: g[i]["value"] for i in _ids(action["resourceUsage"])}
        assert usage_pv["wall_s"] == job["wall_s"] and usage_pv["threads"] == job["threads"]
    convert = next(g[j] for j, job in jobs.items() if job["rule"] == "cryoem_convert")
    assert "data/map.ome.zarr/" in _ids(convert["result"])
    params = {
        g[i]["name"]: g[i]["value"]
        for i in _ids(convert["object"])
        if "PropertyValue" in _types(g[i])
    }
    assert params["mask_threshold"] == 0.5
    # the agents: the support unit and the operator; never a credential
    names = {e.get("name") for e in g.values() if _types(e) & {"Person", "Organization"}}
    assert {"structure-analysis", "demo"} <= names
    text = (version_dir / CRATE_PATH).read_text()
    assert "AWS_" not in text and "SECRET" not in text.upper()


def test_manifest_lists_the_documents_outside_the_content_digest(cryoem_version):
    version_dir, manifest, *_ = cryoem_version
    docs = {d["path"]: d for d in manifest["documents"]}
    assert {CRATE_PATH, USAGE_PATH, f"{WORKFLOW_DIR}/Snakefile"} <= set(docs)
    for path, d in docs.items():
        body = (version_dir / path).read_bytes()
        assert len(body) == d["size"] and hashlib.sha256(body).hexdigest() == d["sha256"]
    assert not any(f["path"] in docs for f in manifest["files"])
    # the crate adds well under 1 % to the version's bytes
    assert docs[CRATE_PATH]["size"] <= 0.01 * manifest["bytes"]


def test_recommended_checks_left_are_the_documented_ones(cryoem_version):
    """docs/formats/store.md lists what the RECOMMENDED checks still say; nothing else may."""
    version_dir, *_ = cryoem_version
    issues, fetched = validate_offline(version_dir, severity="RECOMMENDED")
    documented = {
        "SoftwareApplication id",
        "Application url",
        "README.md encodingFormat",
        "README.md about",
        "Main Workflow Bioschemas compliance",
        "FormalParameter inverse exampleOfWork",
    }
    assert {i["check"] for i in issues} <= documented
    assert fetched == []
