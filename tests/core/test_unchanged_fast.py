"""An unchanged re-run answers "unchanged" from the fingerprint, before Snakemake starts
(issue #25: it took 18 s and ran Snakemake and Prefect to publish nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.modalities.cryoem import make_demo_run

pytestmark = pytest.mark.slow
BINDS = str(Path(sys.executable).parent / "binds")


def _run(
    run_dir: Path, store: Path, work: Path, api_url: str
) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    done = subprocess.run(
        [
            BINDS,
            "run",
            str(run_dir),
            "--store",
            str(store),
            "--work-dir",
            str(work),
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PREFECT_API_URL=api_url),
        timeout=600,
    )
    return done, time.monotonic() - t0


def test_unchanged_rerun_is_answered_before_snakemake(prefect_server, tmp_path):
    run = make_demo_run(tmp_path / "krios", seed=2)
    store, work = tmp_path / "store", tmp_path / "work"
    first, _ = _run(run, store, work, prefect_server)
    assert first.returncode == 0 and first.stdout.startswith("published: "), first.stderr[-2000:]
    log = work / "stage" / "_meta" / "snakemake.log"
    before = log.stat().st_mtime_ns if log.exists() else None

    again, seconds = _run(run, store, work, prefect_server)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.startswith("unchanged: ") and "nothing was recomputed" in again.stdout
    assert "QC PASS" in again.stdout  # the verdict is still told
    assert (log.stat().st_mtime_ns if log.exists() else None) == before  # Snakemake never ran
    print(f"unchanged re-run: {seconds:.2f} s")
    assert seconds < 10  # <= 3 s on an idle machine (benchmarks/README.md)

    # a metadata edit is not unchanged: the full path publishes v2
    exp = run / "experiment.yaml"
    exp.write_text(exp.read_text().replace("license: CC0-1.0", "license: CC-BY-4.0"))
    edited, _ = _run(run, store, work, prefect_server)
    assert edited.returncode == 0 and " v2 " in edited.stdout.splitlines()[0], edited.stdout
    versions = sorted(p.parent.name for p in store.glob("open/cryoem/*/v*/manifest.json"))
    assert versions == ["v1", "v2"]
    manifest = json.loads(next(store.glob("open/cryoem/*/v2/manifest.json")).read_text())
    assert manifest["version"] == 2
