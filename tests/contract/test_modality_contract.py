"""The modality contract (issue 10).

* A fifth, toy modality (CSV -> Parquet) that lives only in ``tests/contract/toy_site/`` (its
  own package plus a ``.dist-info`` registering it in the ``binds.modalities`` entry-point
  group, as `pip install` of a plugin would) runs through `binds run` to a published, verified
  version, without any file of binds-pipelines naming it.
* Every registered modality keeps the contract and agrees with the schema enums, the
  Snakemake config schema, docs/formats/, envs/ and workflows/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import modalities
from pipelines.resources import project_root

TOY_SITE = Path(__file__).resolve().parent / "toy_site"
ROOT = project_root()


def binds(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_fifth_modality_from_its_own_package_runs_to_a_verified_version(tmp_path, binds_cli):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(TOY_SITE), os.environ.get("PYTHONPATH", "")])
    )
    listed = subprocess.run(
        [sys.executable, "-c", "from pipelines import modalities; print(modalities.names())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "toytable" in listed.stdout
    sys.path.insert(0, str(TOY_SITE))
    try:
        import binds_toytable
    finally:
        sys.path.remove(str(TOY_SITE))
    run = binds_toytable.make_demo_run(tmp_path / "run")
    assert binds("validate", run, env=env).returncode == 0
    store = tmp_path / "store"
    out = binds(
        "run",
        run,
        "--store",
        store,
        "--work-dir",
        tmp_path / "work",
        "--cores",
        "1",
        "--json",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["created"] and result["modality"] == "toytable"
    vdir = store / result["prefix"] / f"v{result['version']}"
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {"data/table.parquet", "qc/metrics.json"}
    doc = json.loads((vdir / "metadata.jsonld").read_text())
    assert doc["measurementTechnique"] == "tabulation"
    verify = binds("verify", "--store", store, env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # a misspelled key of its block is refused like any built-in's
    bad = run / "experiment.yaml"
    bad.write_text(bad.read_text().replace("delimiter:", "delimitor:"))
    refused = binds("validate", run, env=env)
    assert (
        refused.returncode == 2 and "toytable" in refused.stderr and "delimitor" in refused.stderr
    )


@pytest.mark.parametrize("name", modalities.BUILTIN)
def test_builtin_modality_keeps_the_contract(name):
    assert modalities.contract_problems(name) == []
    spec = modalities.spec(name)
    assert spec.description and spec.technique and spec.raw_patterns
    for kind in ("workflow", "schema", "env", "docs"):
        assert spec.path(kind).is_file(), (name, kind)
    schema = json.loads(spec.path("schema").read_text())
    assert schema["$id"].endswith(f"/{name}.schema.json")
    assert schema.get("additionalProperties") is False, "unknown keys of the block are refused"
    # every rule of the workflow is named after the modality (one namespace for all)
    rules = re.findall(
        r"^rule (\w+):",
        "\n".join(p.read_text() for p in spec.path("workflow").parent.glob("*.smk")),
        re.MULTILINE,
    )
    assert rules and all(r.startswith(f"{name}_") for r in rules), rules
    # the conda env of HPC runs holds the modality's stack; it never pip-installs the whole
    # project (that re-resolves every dependency of binds into the env)
    import yaml

    env = yaml.safe_load(spec.path("env").read_text())
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in deps
    pip = next((d["pip"] for d in env["dependencies"] if isinstance(d, dict)), [])
    assert not [p for p in pip if p.startswith(("-e", "--editable", ".."))], pip
    for dist in spec.software:  # what provenance names is what the env installs
        names = {re.split(r"[<>=!~ ]", d)[0].lower() for d in deps + pip}
        conda_names = {"igraph": "python-igraph", "matplotlib": "matplotlib-base"}
        assert (
            dist.lower() in names
            or conda_names.get(dist, "") in names
            or (dist == "matplotlib" and "matplotlib" in names)
        ), (name, dist)


def test_the_registry_and_the_experiment_schema_agree():
    from pipelines.describe.metadata import experiment_schema

    schema = json.loads((ROOT / "metadata" / "schemas" / "experiment.schema.json").read_text())
    assert schema["properties"]["modality"]["enum"] == list(modalities.BUILTIN)
    for name in modalities.BUILTIN:
        assert schema["properties"][name] == {"$ref": f"{name}.schema.json"}
    assert experiment_schema()["properties"]["modality"]["enum"][: len(modalities.BUILTIN)] == list(
        modalities.BUILTIN
    )
    assert sorted(
        p.stem for p in (ROOT / "workflows").iterdir() if (p / "main.smk").is_file()
    ) == sorted(modalities.BUILTIN)
    documented = {p.stem for p in (ROOT / "docs" / "formats").glob("*.md")} - {"store"}
    assert documented == set(modalities.BUILTIN)


def test_screening_raw_patterns_cover_every_extension_its_readers_take():
    from pipelines.modalities.screening import MODALITY
    from pipelines.modalities.screening.readers import TABLE_EXTENSIONS

    assert {p.removeprefix("**/*") for p in MODALITY.raw_patterns} == set(TABLE_EXTENSIONS)
