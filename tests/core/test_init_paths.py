"""``binds init`` with relative folders and ``.``; its ``acquired`` is a marker (issue #25)."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.modalities import get as get_modality


def binds(*args):
    return CliRunner().invoke(app, list(args))


def _run_folder(tmp_path):
    run = tmp_path / "runs" / "krios-0042"
    get_modality("cryoem").make_demo_run(run)
    (run / "experiment.yaml").unlink()
    return run


def test_init_with_a_relative_folder_holding_files(tmp_path, monkeypatch):
    """The README's own example: crashed with "... is not in the subpath of 'runs/krios-0042'"."""
    run = _run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = binds("init", "runs/krios-0042", "--modality", "cryoem")
    assert out.exit_code == 0, out.output
    text = (run / "experiment.yaml").read_text()
    maps = sorted(p.relative_to(run).as_posix() for p in run.rglob("*.mrc"))
    assert maps and all(f"#   - {m}  (" in text for m in maps)
    assert "binds validate runs/krios-0042" in text


def test_init_with_dot(tmp_path, monkeypatch):
    run = _run_folder(tmp_path)
    monkeypatch.chdir(run)
    out = binds("init", ".", "--modality", "cryoem")
    assert out.exit_code == 0, out.output
    data = yaml.safe_load((run / "experiment.yaml").read_text())
    assert data["title"].startswith("krios-0042")  # the folder's name, not "" or "."


def test_acquired_is_a_marker_validate_refuses_until_edited(tmp_path):
    run = _run_folder(tmp_path)
    assert binds("init", str(run), "--modality", "cryoem").exit_code == 0
    text = (run / "experiment.yaml").read_text()
    assert yaml.safe_load(text)["acquired"] == "EDIT"  # not today's date, accepted as is
    filled = (
        text.replace("BINDS-2026-0000", "BINDS-2026-0100")
        .replace("manufacturer: EDIT", "manufacturer: Thermo Fisher")
        .replace("model: EDIT", "model: Titan Krios G4")
    )
    (run / "experiment.yaml").write_text(filled)
    refused = binds("validate", str(run))
    assert refused.exit_code == 2 and "acquired" in refused.output, refused.output
    (run / "experiment.yaml").write_text(filled.replace("acquired: EDIT", "acquired: 2026-11-20"))
    ok = binds("validate", str(run))
    assert ok.exit_code == 0, ok.output
