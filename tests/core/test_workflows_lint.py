"""Every modality workflow passes ``snakemake --lint`` and declares what the profiles rely on."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from pipelines.describe.metadata import MODALITIES
from pipelines.modalities import get as get_modality
from pipelines.resources import project_root, snakefile
from pipelines.run.runner import prepare


@pytest.mark.parametrize("modality", MODALITIES)
def test_workflow_lints_clean(modality, tmp_path, snakemake):
    """`snakemake --lint` once per modality (each modality's workflow tests used to lint again)."""
    run_dir = tmp_path / "run"
    get_modality(modality).make_demo_run(run_dir)
    _, stage = prepare(run_dir, work_dir=tmp_path / "work")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(snakefile()),
            "--directory",
            str(tmp_path / "work"),
            "--lint",
            "--config",
            f"run_dir={run_dir}",
            f"stage_dir={stage.root}",
            f"modality={modality}",
            f"experiment={stage.meta_dir / 'experiment.json'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr
    assert f"Lints for rule {modality}" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("modality", MODALITIES)
def test_rules_are_thin_and_declare_resources(modality):
    """STYLE: script adapters (no run:/shell: bodies), a log:, resources and a conda env per rule."""
    text = "\n".join(
        p.read_text() for p in sorted((project_root() / "workflows" / modality).glob("*.smk"))
    )
    rules = re.split(r"^rule (\w+):", text, flags=re.M)[1:]
    assert rules, f"no rules in workflows/{modality}"
    for name, body in zip(rules[::2], rules[1::2], strict=False):
        assert name.startswith(f"{modality}_"), f"rule {name} is not prefixed with {modality}_"
        assert "\n    run:" not in body, f"rule {name} uses run:"
        assert "\n    log:" in body, f"rule {name} has no log:"
        assert "\n    conda:" in body, f"rule {name} has no conda: env"
        assert "\n    resources:" in body, f"rule {name} declares no resources"
        assert "\n    threads:" in body, f"rule {name} declares no threads"
        # an out-of-memory job is resubmitted with more memory (restart-times in the profiles)
        mem = re.search(r"^\s+mem_mb=(\w+)\(", body, flags=re.M)
        assert mem and mem.group(1) in ("attempt_mem_mb", f"{modality}_mem_mb"), (
            f"rule {name}: mem_mb must grow with attempt (workflows/common/common.smk: attempt_mem_mb)"
        )
        # parameters are what the rule uses, never the whole experiment (a title edit reruns nothing)
        assert "=EXPERIMENT," not in body, f"rule {name} takes the whole experiment as a param"
        if "\n    threads: 1" not in body:  # a multi-core rule is a heavy one: its figures are kept
            assert "\n    benchmark:" in body, f"rule {name} (threads > 1) has no benchmark:"
    for script in (project_root() / "workflows" / modality / "scripts").glob("*.py"):
        # statements, not lines: `ruff format` puts one argument of a long call per line
        statements = ast.parse(script.read_text()).body
        assert len(statements) <= 10, (
            f"{script.name} has {len(statements)} statements: move logic into pipelines/"
        )
        assert "run_step(" in script.read_text(), (
            f"{script.name} does not go through pipelines.toolkit.smk.run_step"
        )
