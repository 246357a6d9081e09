"""``ro-crate-metadata.json``: a Provenance Run Crate (Workflow Run RO-Crate 0.5) for one version.

The version folder is the crate root; the crate describes it without copying anything:

* the **workflow** (``binds-pipelines``' Snakefile: name, version, git commit) is the main
  entity (``File``, ``SoftwareSourceCode``, ``ComputationalWorkflow``, ``HowTo``), with one
  ``HowToStep`` per rule that ran and one tool (``SoftwareApplication``) per rule;
* the **run** is a ``CreateAction`` (the workflow as instrument, the raw inputs and the
  parameters as object, the published outputs as result, start and end as in metadata.jsonld);
* every **Snakemake job** is a ``CreateAction`` (its rule's tool as instrument, inputs and
  outputs with sha256 and contentSize, start and end, resource usage), each wrapped by a
  ``ControlAction`` naming its step; an ``OrganizeAction`` (Snakemake as instrument) groups them;
* **parameters** are ``FormalParameter`` (workflow inputs, each rule's params) with their values
  as ``PropertyValue``; **software** versions are ``SoftwareApplication`` entities;
* the **agents** are the support unit (and the operator when experiment.yaml names one).

Raw inputs are referenced where they were read (``file://`` URIs of the run folder), files of
the version by their path in it, intermediate files of the staging folder by ``file://`` URI.
Never credentials, store host names or environment variables.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as im
import json
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipelines.describe.usage import USAGE_PATH, build_usage, collect_jobs
from pipelines.toolkit.run_ids import RUN_ID, NameHider
from pipelines.toolkit.run_ids import recorded as recorded_run_ids
from pipelines.toolkit.stage import StagedDataset

CRATE_PATH = "ro-crate-metadata.json"
#: where the workflow definition goes in the version (its main entity is WORKFLOW_DIR/Snakefile)
WORKFLOW_DIR = "_meta/workflow"
RO_CRATE = "https://w3id.org/ro/crate/1.1"
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.5": "Workflow Run Crate",
    "https://w3id.org/ro/wfrun/provenance/0.5": "Provenance Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
CONTEXT: list[Any] = [
    "https://w3id.org/ro/crate/1.1/context",
    {
        # terms of the Workflow Run Crate context (https://w3id.org/ro/terms/workflow-run)
        "wfrun": "https://w3id.org/ro/terms/workflow-run#",
        "ParameterConnection": "wfrun:ParameterConnection",
        "connection": "wfrun:connection",
        "sourceParameter": "wfrun:sourceParameter",
        "targetParameter": "wfrun:targetParameter",
        "resourceUsage": "wfrun:resourceUsage",
        "sha256": "http://schema.org/sha256",
        "binds": "https://binds.example.org/terms/",
    },
]
SNAKEMAKE_URL = "https://snakemake.github.io"
QUDT = "https://qudt.org/vocab/unit/"
FORMAL_PARAMETER_PROFILE = "https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"
_DESCRIBE = re.compile(r"^(?P<name>\S+) (?P<version>\S+)(?: \((?P<git>[^)]+)\))?$")


def _ref(ident: str) -> dict[str, str]:
    return {"@id": ident}


def _refs(idents) -> list[dict[str, str]]:
    return [{"@id": i} for i in idents]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _value(v: Any) -> str | int | float | bool:
    return (
        v if isinstance(v, (str, int, float, bool)) else json.dumps(v, sort_keys=True, default=str)
    )


def _additional_type(v: Any) -> str:
    if isinstance(v, bool):
        return "Boolean"
    if isinstance(v, int):
        return "Integer"
    if isinstance(v, float):
        return "Float"
    return "Text"


def software_versions() -> dict[str, str]:
    """binds-pipelines and its declared dependencies, with the versions installed here."""
    out = {"binds-pipelines": im.version("binds-pipelines")}
    for req in im.requires("binds-pipelines") or []:
        if "extra ==" in req:
            continue
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        try:
            out[name] = im.version(name)
        except im.PackageNotFoundError:
            continue
    return dict(sorted(out.items()))


def parse_workflow(describe: str | None) -> dict[str, str | None]:
    """``binds-pipelines 0.1.0 (b466995-dirty)`` (run.json) -> name, version, git commit."""
    m = _DESCRIBE.match(describe or "")
    if not m:
        return {"name": "binds-pipelines", "version": None, "git": None}
    git = m.group("git")
    commit = git.rsplit("-g", 1)[-1] if git and "-g" in git else git
    return {
        "name": m.group("name"),
        "version": m.group("version"),
        "git": git,
        "commit": commit.removesuffix("-dirty") if commit else None,
    }


@dataclass(slots=True)
class _Graph:
    """Entities by @id, in insertion order (the crate's @graph)."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, entity: dict[str, Any]) -> str:
        ident = entity["@id"]
        if ident in self.nodes:
            self.nodes[ident].update(
                {k: v for k, v in entity.items() if k not in self.nodes[ident]}
            )
        else:
            self.nodes[ident] = entity
        return ident


@dataclass(slots=True)
class VersionDocuments:
    """What a version stores besides data/ and qc/: (path, bytes) pairs, and the usage totals
    for the manifest and the catalog row."""

    documents: list[tuple[str, bytes]]
    usage_summary: dict[str, Any]


def _dumps(doc: dict[str, Any]) -> bytes:
    """JSON with one entity (crate) or one job (usage record) per line: readable and diffable,
    and written by the C encoder (``indent`` would fall back to pure Python: 10x slower)."""

    def one(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, allow_nan=False, default=str)

    parts = []
    for key, value in doc.items():
        if isinstance(value, list) and key in ("@graph", "jobs"):
            body = ",\n  ".join(one(v) for v in value)
            parts.append(f"{one(key)}: [\n  {body}\n ]" if value else f"{one(key)}: []")
        else:
            parts.append(f"{one(key)}: {one(value)}")
    return ("{\n " + ",\n ".join(parts) + "\n}\n").encode()


def version_documents(
    *,
    stage: StagedDataset,
    experiment: dict[str, Any],
    dataset_id: str,
    version: int,
    files: list[dict[str, Any]],
    created: str,
    metadata_bytes: bytes | None = None,
    sacct_rows: dict[str, dict[str, Any]] | None = None,
) -> VersionDocuments:
    """``_meta/usage.json`` and ``ro-crate-metadata.json`` of a version being published."""
    jobs, notes = collect_jobs(stage, sacct_rows=sacct_rows)
    usage = build_usage(
        stage=stage,
        experiment=experiment,
        dataset_id=dataset_id,
        version=version,
        files=files,
        created=created,
        extra_stored_bytes=len(metadata_bytes or b""),
        jobs=jobs,
        notes=notes,
    )
    usage_bytes = _dumps(usage)
    extra = [
        {
            "path": USAGE_PATH,
            "size": len(usage_bytes),
            "sha256": hashlib.sha256(usage_bytes).hexdigest(),
            "encodingFormat": "application/json",
            "name": "usage record (compute and storage used by this version)",
        }
    ]
    if metadata_bytes is not None:
        extra.append(
            {
                "path": "metadata.jsonld",
                "size": len(metadata_bytes),
                "sha256": hashlib.sha256(metadata_bytes).hexdigest(),
                "encodingFormat": "application/ld+json",
                "name": "schema.org / Croissant metadata of this version",
            }
        )
    sources = workflow_sources(experiment["modality"])
    run_ids = stage.meta_dir / "run_ids.json"  # human data: run id -> raw file (privacy_gate)
    if run_ids.is_file():
        sources = [*sources, ("_meta/run_ids.json", run_ids.read_bytes())]
    for path, body in sources:
        extra.append(
            {
                "path": path,
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "encodingFormat": "text/x-snakemake"
                if path.endswith((".smk", "Snakefile"))
                else ("application/json" if path.endswith(".json") else "application/yaml"),
                "name": path.removeprefix(WORKFLOW_DIR + "/"),
            }
        )
    crate = build_crate(
        stage=stage,
        experiment=experiment,
        dataset_id=dataset_id,
        version=version,
        files=files,
        created=created,
        jobs=jobs,
        documents=extra,
    )
    return VersionDocuments(
        documents=[(CRATE_PATH, _dumps(crate)), (USAGE_PATH, usage_bytes), *sources],
        usage_summary=usage["totals"],
    )


def workflow_sources(modality: str) -> list[tuple[str, bytes]]:
    """The workflow definition (Snakefile, the modality's rules, the config schema) as
    ``(path in the version, bytes)``: a few kB, so that the crate's main entity is in the crate
    (Workflow RO-Crate); the rules' scripts and ``pipelines`` are named by version and commit."""
    from pipelines.resources import project_root

    root = project_root()
    paths = [
        root / "Snakefile",
        *sorted((root / "workflows" / modality).glob("*.smk")),
        root / "workflows" / "common" / "config.schema.yaml",
    ]
    return [
        (f"{WORKFLOW_DIR}/{p.relative_to(root).as_posix()}", p.read_bytes())
        for p in paths
        if p.is_file()
    ]


def build_crate(
    *,
    stage: StagedDataset,
    experiment: dict[str, Any],
    dataset_id: str,
    version: int,
    files: list[dict[str, Any]],
    created: str,
    jobs: list[dict[str, Any]] | None = None,
    documents: list[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The crate of one version as a JSON-LD dict (see the module docstring)."""
    if jobs is None:
        jobs, _ = collect_jobs(stage)
    crate = _CrateBuilder(
        stage=stage, exp=experiment, jobs=jobs, files=files, documents=list(documents)
    )
    crate.add_agents()
    crate.add_software()
    crate.add_rules()
    crate.add_workflow()
    crate.add_run_inputs()
    for job in jobs:
        crate.add_job(job)
    results = crate.add_run()
    root = crate.root(dataset_id=dataset_id, version=version, created=created, results=results)
    nodes = [_single_values(n) for n in crate.g.nodes.values()]
    descriptor = {
        "@id": CRATE_PATH,
        "@type": "CreativeWork",
        "about": _ref("./"),
        "conformsTo": [_ref(RO_CRATE), _ref("https://w3id.org/workflowhub/workflow-ro-crate/1.0")],
    }
    return {"@context": CONTEXT, "@graph": [descriptor, _single_values(root), *nodes]}


_USAGE_PROPERTIES = (
    ("cpu_s", "SEC"),
    ("wall_s", "SEC"),
    ("core_s", "SEC"),
    ("max_rss_mb", "MegaBYTE"),
    ("io_in_mb", "MegaBYTE"),
    ("io_out_mb", "MegaBYTE"),
    ("threads", "NUM"),
    ("mem_mb", "MegaBYTE"),
)
#: prefix of the workflow's FormalParameters
_WF = "#workflow"


class _CrateBuilder:
    """The crate's graph, built one section at a time (agents, software, rules, workflow, run
    inputs, jobs, run, root); each ``add_*`` keeps the ids later sections refer to."""

    def __init__(
        self,
        *,
        stage: StagedDataset,
        exp: dict[str, Any],
        jobs: list[dict[str, Any]],
        files: list[dict[str, Any]],
        documents: list[dict[str, Any]],
    ) -> None:
        self.exp, self.jobs, self.documents = exp, jobs, documents
        self.modality = exp["modality"]
        self.run = stage.run_info
        self.g = _Graph()
        self.stage_root = stage.root.resolve()
        self.run_dir = Path(self.run.get("run_dir") or ".")
        self.run_uri = self.run_dir.resolve().as_uri()
        self.published = {f["path"]: f for f in files}
        self.published_dirs = {
            "/".join(p.split("/")[:i]) for p in self.published for i in range(1, p.count("/") + 1)
        }
        self.folder_outputs: set[str] = set()
        self.raw = {i["name"]: i for i in self.run.get("inputs", [])}
        # human data: the raw files by run id (run.json names them so); a job's input path is
        # looked up here, and an mtx folder stands for the run ids of its files
        self.run_id_of = {v["name"]: rid for rid, v in recorded_run_ids(stage.meta_dir).items()}
        self.hider = NameHider.of(stage.meta_dir)
        self.external: list[str] = []  # data entities outside the version: in the root's hasPart
        self.seen: dict[str, str] = {}
        self.versions = software_versions()
        self.control_ids: list[str] = []
        self.job_ids: list[str] = []

    # --- who
    def add_agents(self) -> None:
        exp, g = self.exp, self.g
        self.unit_id = "#unit-" + _slug(exp.get("support_unit") or "binds-support-unit")
        g.add(
            {
                "@id": self.unit_id,
                "@type": "Organization",
                "name": exp.get("support_unit") or "BINDS support unit",
                "url": "https://binds.example.org/",
            }
        )
        self.agents = [self.unit_id]
        if exp.get("operator"):
            op_id = "#operator-" + _slug(str(exp["operator"]))
            g.add(
                {
                    "@id": op_id,
                    "@type": "Person",
                    "name": str(exp["operator"]),
                    "affiliation": _ref(self.unit_id),
                }
            )
            self.agents.insert(0, op_id)
        requester = exp.get("requester") or {}
        self.authors = [self.unit_id]
        if requester.get("pi"):
            orcid = requester.get("orcid")
            pi_id = (
                (orcid if str(orcid).startswith("https://") else f"https://orcid.org/{orcid}")
                if orcid
                else "#requester-" + _slug(requester["pi"])
            )
            g.add({"@id": pi_id, "@type": "Person", "name": requester["pi"]})
            self.authors.insert(0, pi_id)

    # --- software: the workflow engine, the language, every package
    def add_software(self) -> None:
        g, versions = self.g, self.versions
        self.engine_id = g.add(
            {
                "@id": "#snakemake",
                "@type": "SoftwareApplication",
                "name": "Snakemake",
                "url": SNAKEMAKE_URL,
                "softwareVersion": versions.get("snakemake"),
            }
        )
        self.lang_id = g.add(
            {
                "@id": "#snakemake-language",
                "@type": "ComputerLanguage",
                "name": "Snakemake",
                "identifier": _ref(SNAKEMAKE_URL),
                "url": _ref(SNAKEMAKE_URL),
                "version": versions.get("snakemake"),
            }
        )
        self.software_ids = [
            g.add(
                {
                    "@id": f"#software-{_slug(name)}",
                    "@type": "SoftwareApplication",
                    "name": name,
                    "softwareVersion": ver,
                    "url": f"https://pypi.org/project/{name}/{ver}/",
                }
            )
            for name, ver in versions.items()
        ]
        self.software_ids.append(
            g.add(
                {
                    "@id": "#software-python",
                    "@type": "SoftwareApplication",
                    "name": "Python",
                    "softwareVersion": platform.python_version(),
                }
            )
        )

    # --- the rules that ran: a tool and a step each, their params as FormalParameters
    def add_rules(self) -> None:
        g = self.g
        self.wf = parse_workflow(self.run.get("workflow"))
        rules = list(dict.fromkeys(j["rule"] for j in self.jobs))
        self.tool_ids = {rule: f"#rule-{_slug(rule)}" for rule in rules}
        self.step_ids = {rule: f"#step-{_slug(rule)}" for rule in rules}
        params_by_rule: dict[str, dict[str, Any]] = {}
        for j in self.jobs:
            params_by_rule.setdefault(j["rule"], {}).update(j.get("params") or {})
        for pos, rule in enumerate(rules, start=1):
            fps = [
                g.add(
                    {
                        "@id": f"{self.tool_ids[rule]}/param/{_slug(key)}",
                        "@type": "FormalParameter",
                        "name": key,
                        "additionalType": _additional_type(val),
                        "conformsTo": _ref(FORMAL_PARAMETER_PROFILE),
                    }
                )
                for key, val in sorted(params_by_rule.get(rule, {}).items())
            ]
            g.add(
                {
                    "@id": self.tool_ids[rule],
                    "@type": "SoftwareApplication",
                    "name": rule,
                    "description": f"Snakemake rule {rule} of workflows/{self.modality}/ "
                    f"(binds-pipelines {self.wf.get('version') or ''})".replace(" )", ")"),
                    "softwareVersion": self.versions["binds-pipelines"],
                    "input": _refs(fps),
                }
            )
            g.add(
                {
                    "@id": self.step_ids[rule],
                    "@type": "HowToStep",
                    "name": rule,
                    "position": str(pos),
                    "workExample": _ref(self.tool_ids[rule]),
                }
            )

    # --- the workflow: the main entity, its inputs and output
    def add_workflow(self) -> None:
        g, modality, wf = self.g, self.modality, self.wf
        main_doc = next(
            (d for d in self.documents if d["path"] == f"{WORKFLOW_DIR}/Snakefile"), None
        )
        self.wf_id = main_doc["path"] if main_doc else "#workflow"

        def formal(ident: str, name: str, additional_type: str, **extra: Any) -> str:
            return g.add(
                {
                    "@id": ident,
                    "@type": "FormalParameter",
                    "name": name,
                    "additionalType": additional_type,
                    **extra,
                    "conformsTo": _ref(FORMAL_PARAMETER_PROFILE),
                }
            )

        wf_inputs = [
            formal(
                f"{_WF}/input/run_dir",
                "run_dir",
                "Dataset",
                description="the run folder of raw instrument files",
            ),
            formal(
                f"{_WF}/input/experiment",
                "experiment",
                "File",
                encodingFormat="application/yaml",
                description="experiment.yaml of the run folder",
            ),
        ]
        wf_inputs += [
            formal(
                f"{_WF}/input/{modality}.{_slug(key)}", f"{modality}.{key}", _additional_type(val)
            )
            for key, val in sorted((self.exp.get(modality) or {}).items())
        ]
        wf_output = formal(
            f"{_WF}/output/dataset",
            "dataset",
            "Dataset",
            description="the staged dataset: data/ and qc/",
        )
        workflow = {
            "@id": self.wf_id,
            "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
            "name": f"{wf['name']} {modality} workflow",
            "description": f"Snakefile of {wf['name']} with workflows/{modality}/*.smk (not copied "
            "into this crate: identified by version and git commit)",
            "programmingLanguage": _ref(self.lang_id),
            "hasPart": _refs(self.tool_ids.values()),
            "step": _refs(self.step_ids.values()),
            "input": _refs(wf_inputs),
            "output": [_ref(wf_output)],
            "softwareRequirements": _refs(self.software_ids),
        }
        if main_doc:
            workflow |= {
                "contentSize": str(main_doc["size"]),
                "sha256": main_doc["sha256"],
                "encodingFormat": main_doc["encodingFormat"],
            }
        if wf.get("version"):
            workflow["version"] = wf["version"]
        if wf.get("commit"):
            workflow["identifier"] = f"git:{wf['commit']}"
            workflow["binds:gitDescribe"] = wf.get("git")
        g.add(workflow)

    # --- files: where each path lives
    def file_entity(self, path: str) -> str:
        """The entity of a job's input or output path (string operations: 10,000s of them)."""
        if path in self.seen:
            return self.seen[path]
        g = self.g
        stage_prefix = self.stage_root.as_posix() + "/"
        norm = os.path.normpath(path)
        rel = norm[len(stage_prefix) :] if norm.startswith(stage_prefix) else None
        if rel is None and not os.path.isabs(norm):
            rel = norm
        if rel is not None and rel in self.published_dirs:
            self.folder_outputs.add(rel)
            ident = _published_entity(g, rel, self.published)
        elif rel is not None and rel in self.published:
            ident = _published_entity(g, rel, self.published)
        elif rel is not None:  # intermediate file of the staging folder (not published)
            target = self.stage_root / rel
            ent = {
                "@id": target.as_uri(),
                "@type": "File",
                "name": rel,
                "encodingFormat": _encoding(rel),
                "description": "intermediate file of the staging folder (not part of the version)",
            }
            if target.is_file():
                ent["contentSize"] = str(target.stat().st_size)
                ent["sha256"] = _sha256(target)
            ident = g.add(ent)
            self.external.append(ident)
        else:
            run_prefix = self.run_dir.resolve().as_posix() + "/"
            name = (
                norm[len(run_prefix) :] if norm.startswith(run_prefix) else os.path.basename(norm)
            )
            name = self.raw_name(name)
            ident = _raw_entity(g, self.run_uri, name, self.raw.get(name))
            self.external.append(ident)
        self.seen[path] = ident
        return ident

    def value(self, val: Any) -> str | int | float | bool:
        """A parameter's value as the crate gives it (human data: file names by run id)."""
        return _value(self.hider.value(val) if self.hider else val)

    def raw_name(self, name: str) -> str:
        """What the crate calls the raw file ``name`` (its run id for human data)."""
        if not self.run_id_of or name in self.raw:
            return name
        if name in self.run_id_of:
            return self.run_id_of[name]
        inside = sorted(rid for n, rid in self.run_id_of.items() if n.startswith(name + "/"))
        return " ".join(inside) or "a file of the run folder"

    # --- parameters of the run: the raw files read, the modality block's values
    def add_run_inputs(self) -> None:
        g, modality = self.g, self.modality
        self.run_objects = [
            _raw_entity(g, self.run_uri, name, info) for name, info in sorted(self.raw.items())
        ]
        self.raw_ids = list(self.run_objects)
        exp_file = next(
            (i for i in self.run_objects if g.nodes[i]["name"] == "experiment.yaml"), None
        )
        if exp_file:
            g.nodes[exp_file]["exampleOfWork"] = _ref(f"{_WF}/input/experiment")
        self.run_dir_id = g.add(
            {
                "@id": self.run_uri + "/",
                "@type": "Dataset",
                "name": self.run_dir.name,
                "description": "run folder (raw files, read in place)",
                "exampleOfWork": _ref(f"{_WF}/input/run_dir"),
                "hasPart": _refs(self.run_objects),
            }
        )
        self.run_objects += [
            g.add(
                {
                    "@id": f"#run/param/{modality}.{_slug(key)}",
                    "@type": "PropertyValue",
                    "name": f"{modality}.{key}",
                    "value": self.value(val),
                    "exampleOfWork": _ref(f"{_WF}/input/{modality}.{_slug(key)}"),
                }
            )
            for key, val in sorted((self.exp.get(modality) or {}).items())
        ]

    # --- one job: a CreateAction (inputs, outputs, usage) wrapped by a ControlAction
    def add_job(self, j: dict[str, Any]) -> None:
        g, rule = self.g, j["rule"]
        jid = f"#job-{_slug(str(j['jobid']))}"
        usage_ids = [
            g.add(
                {
                    "@id": f"{jid}/usage/{prop}",
                    "@type": "PropertyValue",
                    "propertyID": f"binds:{prop}",
                    "name": prop,
                    "value": j[prop],
                    "unitCode": _ref(QUDT + unit),
                }
            )
            for prop, unit in _USAGE_PROPERTIES
            if j.get(prop) is not None
        ]
        objects = [self.file_entity(p) for p in j.get("input", [])]
        objects += [
            g.add(
                {
                    "@id": f"{jid}/param/{_slug(key)}",
                    "@type": "PropertyValue",
                    "name": key,
                    "value": self.value(val),
                    "exampleOfWork": _ref(f"{self.tool_ids[rule]}/param/{_slug(key)}"),
                }
            )
            for key, val in sorted((j.get("params") or {}).items())
        ]
        self.job_ids.append(jid)
        action = {
            "@id": jid,
            "@type": "CreateAction",
            "name": f"{rule} (Snakemake job {j['jobid']})",
            "description": f"Snakemake job {j['jobid']} of rule {rule}"
            + (f", wildcards {j['wildcards']}" if j.get("wildcards") else ""),
            "instrument": _ref(self.tool_ids[rule]),
            "agent": _refs(self.agents),
            "object": _refs(dict.fromkeys(objects)),
            "result": _refs(dict.fromkeys(self.file_entity(p) for p in j.get("output", []))),
            "actionStatus": "http://schema.org/CompletedActionStatus",
            "resourceUsage": _refs(usage_ids),
        }
        if j.get("start"):
            action["startTime"] = j["start"]
        if j.get("end"):
            action["endTime"] = j["end"]
        if j.get("wildcards"):
            action["binds:wildcards"] = json.dumps(j["wildcards"], sort_keys=True)
        if j.get("slurm"):
            action["identifier"] = [f"slurm:{a['job_id']}" for a in j["slurm"]]
        g.add(action)
        self.control_ids.append(
            g.add(
                {
                    "@id": f"#control-{_slug(str(j['jobid']))}",
                    "@type": "ControlAction",
                    "name": f"orchestrate {rule} (job {j['jobid']})",
                    "instrument": _ref(self.step_ids[rule]),
                    "object": _ref(jid),
                }
            )
        )

    # --- the run and its orchestration; returns the ids of its top-level results
    def add_run(self) -> list[str]:
        g, run, modality = self.g, self.run, self.modality
        results = _top_level_results(g, self.published, self.folder_outputs)
        times = {
            **({"startTime": run["started"]} if run.get("started") else {}),
            **({"endTime": run["staged"]} if run.get("staged") else {}),
        }
        g.add(
            {
                "@id": "#run",
                "@type": "CreateAction",
                "name": f"binds run of {self.run_dir.name} ({modality})",
                "description": f"binds run: the {modality} workflow from the run folder to the staged "
                "dataset published as this version",
                "instrument": _ref(self.wf_id),
                "agent": _refs(self.agents),
                "object": _refs([self.run_dir_id, *self.run_objects]),
                "result": _refs(results),
                "actionStatus": "http://schema.org/CompletedActionStatus",
                **times,
            }
        )
        g.add(
            {
                "@id": "#orchestrate",
                "@type": "OrganizeAction",
                "name": "Snakemake scheduling the jobs",
                "description": "Snakemake ran the workflow's jobs (one ControlAction per job)",
                "instrument": _ref(self.engine_id),
                "agent": _refs(self.agents),
                "object": _refs(self.control_ids),
                "result": _ref("#run"),
                **times,
            }
        )
        return results

    # --- the root
    def root(
        self, *, dataset_id: str, version: int, created: str, results: list[str]
    ) -> dict[str, Any]:
        g, exp = self.g, self.exp
        doc_ids = [
            g.add(
                {
                    "@id": d["path"],
                    "@type": "File",
                    "name": d.get("name", d["path"]),
                    "contentSize": str(d["size"]),
                    "sha256": d["sha256"],
                    "encodingFormat": d.get("encodingFormat", "application/json"),
                }
            )
            for d in self.documents
        ]
        for url, name in PROFILES.items():
            g.add(
                {
                    "@id": url,
                    "@type": "CreativeWork",
                    "name": name,
                    "version": url.rsplit("/", 1)[-1],
                }
            )
        license_id = f"https://spdx.org/licenses/{exp['license']}.html"
        g.add(
            {
                "@id": license_id,
                "@type": "CreativeWork",
                "name": exp["license"],
                "identifier": exp["license"],
            }
        )
        return {
            "@id": "./",
            "@type": "Dataset",
            "name": exp.get("title") or dataset_id,
            "description": exp.get("description") or exp.get("title") or dataset_id,
            "identifier": f"{dataset_id}/v{version}",
            "version": str(version),
            "datePublished": created,
            "license": _ref(license_id),
            "conformsTo": _refs(PROFILES),
            "mainEntity": _ref(self.wf_id),
            "publisher": _ref(self.unit_id),
            "author": _refs(self.authors),
            "hasPart": _refs(
                dict.fromkeys(
                    [self.wf_id, *results, *doc_ids, self.run_dir_id, *self.raw_ids, *self.external]
                )
            ),
            "mentions": _refs(["#run", *self.job_ids]),
        }


def _single_values(entity: dict[str, Any]) -> dict[str, Any]:
    """RO-Crate 1.1 prefers ``{"@id": x}`` to ``[{"@id": x}]``."""
    return {
        k: (v[0] if isinstance(v, list) and len(v) == 1 and k != "@type" else v)
        for k, v in entity.items()
    }


def _encoding(path: str) -> str:
    import mimetypes

    name = path.lower()
    for suffix, mime in (
        (".parquet", "application/vnd.apache.parquet"),
        (".json", "application/json"),
        (".jsonld", "application/ld+json"),
        (".tsv", "text/tab-separated-values"),
        (".yaml", "application/yaml"),
        (".yml", "application/yaml"),
        (".mzml", "application/xml"),
        (".mrc", "application/octet-stream"),
    ):
        if name.endswith(suffix):
            return mime
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _sha256(path: Path) -> str:
    from pipelines.store.hashing import sha256_file

    return sha256_file(path)


def _raw_entity(g: _Graph, run_uri: str, name: str, info: dict[str, Any] | None) -> str:
    ent: dict[str, Any] = {
        # human data's run ids are no paths: a local identifier (the file is in run_ids.json)
        "@id": f"#raw/{quote(name)}" if RUN_ID.fullmatch(name) else f"{run_uri}/{quote(name)}",
        "@type": "File",
        "name": name,
        "encodingFormat": _encoding(name),
        "description": "raw input, referenced where it was read (not copied)",
    }
    if info:
        ent["contentSize"] = str(info["size"])
        ent["sha256"] = info["sha256"]
    return g.add(ent)


def _published_entity(g: _Graph, rel: str, published: dict[str, dict[str, Any]]) -> str:
    """A file of the version (File with sha256), or a folder of it such as a Zarr store (Dataset
    with its total size; its files' sha256 are in manifest.json)."""
    if rel in g.nodes or rel + "/" in g.nodes:
        return rel if rel in g.nodes else rel + "/"
    if rel in published:
        f = published[rel]
        return g.add(
            {
                "@id": rel,
                "@type": "File",
                "name": rel,
                "contentSize": str(f["size"]),
                "sha256": f["sha256"],
                "encodingFormat": _encoding(rel),
            }
        )
    parts = [f for k, f in published.items() if k.startswith(rel + "/")]
    h = hashlib.sha256()
    for f in sorted(parts, key=lambda f: f["path"]):
        h.update(f"{f['path']}\t{f['size']}\t{f['sha256']}\n".encode())
    return g.add(
        {
            "@id": rel + "/",
            "@type": "Dataset",
            "name": rel,
            "contentSize": str(sum(int(f["size"]) for f in parts)),
            "binds:files": len(parts),
            "binds:contentDigest": "sha256:" + h.hexdigest(),
            "description": "folder of the version (its files' sha256 are listed in manifest.json)",
        }
    )


def _top_level_results(
    g: _Graph, published: dict[str, dict[str, Any]], folders: set[str]
) -> list[str]:
    """The version's outputs: each file, except that a folder output (a Zarr store, described
    as a Dataset) counts once."""
    out = []
    for path in sorted(published):
        parts = path.split("/")
        folder = next(
            ("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in folders),
            None,
        )
        out.append(_published_entity(g, folder or path, published))
    return list(dict.fromkeys(out))
