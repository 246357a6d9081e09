"""The README's hand-run path for HPC operators: `binds prepare`, the printed Snakemake
command as is, then `binds publish`."""

from __future__ import annotations

import json
import shlex
import subprocess

from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.modalities import get as get_modality


def test_prepare_prints_the_snakemake_command_that_builds_a_publishable_stage(tmp_path, snakemake):
    run = get_modality("cryoem").make_demo_run(tmp_path / "run", seed=11)
    work = tmp_path / "work"
    cli = CliRunner()
    out = cli.invoke(app, ["prepare", str(run), "--work-dir", str(work)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"staged metadata in {work / 'stage' / '_meta'}")
    assert (work / "stage" / "_meta" / "experiment.json").is_file()
    assert not (work / "stage" / "data").exists(), "nothing ran"
    cmd = shlex.split(lines[1])
    assert "--config" in cmd and cmd.index("--config") > cmd.index("--profile")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert lines[2] == f"then: binds publish {work / 'stage'} --store URL"
    pub = cli.invoke(
        app,
        ["publish", str(work / "stage"), "--store", str(tmp_path / "store"), "--json"],
        catch_exceptions=False,
    )
    assert pub.exit_code == 0, pub.output
    assert json.loads(pub.stdout)["created"] is True
