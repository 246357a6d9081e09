"""``binds init``: a commented experiment.yaml, so nobody writes it from memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines import modalities
from pipelines.describe.metadata import PLACEHOLDER
from pipelines.resources import metadata_dir


def _block_lines(modality: str) -> list[str]:
    schema = json.loads((metadata_dir() / "schemas" / f"{modality}.schema.json").read_text())
    lines = [f"# {modality}:   # optional parameters of the {modality} workflow (defaults shown)"]
    for name, prop in (schema.get("properties") or {}).items():
        default = prop.get("default")
        value = json.dumps(default) if default is not None else ""
        desc = (prop.get("description") or "").split(". ")[0].strip().rstrip(".")
        lines.append(f"#   {name}: {value}".rstrip() + (f"   # {desc}" if desc else ""))
    return lines


def experiment_template(run_dir: Path, modality: str) -> str:
    """A valid experiment.yaml (required fields filled with placeholders to edit) listing the raw files."""
    # the raw files come back absolute (the run-folder guard resolves them): list them relative
    # to the resolved folder, so `binds init runs/x` and `binds init .` work as well
    shown_dir = run_dir
    run_dir = Path(run_dir).resolve()
    raw = modalities.find_raw_files(run_dir, modality)
    desc = modalities.spec(modality).description
    found = [
        f"#   - {p.relative_to(run_dir).as_posix()}  ({p.stat().st_size:,} bytes)" for p in raw[:50]
    ]
    if len(raw) > 50:
        found.append(f"#   ... and {len(raw) - 50} more")
    if not found:
        found = [f"#   (none yet: expected {', '.join(modalities.spec(modality).raw_patterns)})"]
    body: list[Any] = [
        f"# experiment.yaml for {run_dir.name}: {desc}",
        "# Edit the values marked EDIT, then check with:  binds validate " + str(shown_dir),
        "# Schema: metadata/schemas/experiment.schema.json. Raw files found (processed by default):",
        *found,
        "",
        "schema_version: 1",
        "request_id: BINDS-2026-0000          # EDIT: the support request id",
        "# One run folder = one dataset, owned by this request. A second acquisition session",
        "# of the same request (another grid, plate or library, in its own run folder) is a",
        "# dataset of its own: give it one, e.g. dataset_id: binds-2026-0000-"
        + modality
        + "-session2",
        "# (without it, publishing a second run folder into the first one's dataset is refused).",
        "# dataset_id: binds-2026-0000-" + modality + "   # default: <request_id>-<modality>",
        f"title: {run_dir.name} ({modality})    # EDIT: one line a researcher would recognise",
        f"modality: {modality}",
        "# support_unit: structure-analysis",
        "instrument:",
        "  manufacturer: EDIT",
        "  model: EDIT                        # e.g. Titan Krios G4, Orbitrap Exploris 480",
        # a marker, not today's date: `binds validate` refuses it until the real date is in
        f"acquired: {PLACEHOLDER}                      # EDIT: acquisition date, YYYY-MM-DD",
        "# operator: staff id",
        "# requester: {lab: ..., pi: ..., orcid: 0000-0002-1825-0097}",
        "access:",
        "  level: consortium                  # open | consortium | restricted",
        "  # embargo_until: 2027-06-30",
        "  # data_use: [DUO:0000042]          # data-use conditions (Data Use Ontology ids)",
        "license: CC-BY-4.0                   # SPDX id: CC0-1.0, CC-BY-4.0, LicenseRef-BINDS-Restricted ...",
        "samples:",
        "  - id: S1",
        "    organism: NCBITaxon:9606         # NCBITaxon id (human 9606, mouse 10090)",
        "    # tissue: UBERON:0000178        # UBERON id",
        "    # cell_type: CL:0000236         # CL id",
        "    # compound: CHEBI:27732         # ChEBI or PUBCHEM.COMPOUND id",
        "    # description: free text",
        "",
        *_block_lines(modality),
        "",
    ]
    return "\n".join(body)
