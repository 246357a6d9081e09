"""The usage record (``_meta/usage.json``): figures from the benchmark files of every rule,
totals in the manifest and the catalog row."""

from __future__ import annotations

import json
import re

import pytest

from pipelines.describe.catalog import read_catalog
from pipelines.describe.usage import USAGE_PATH, parse_duration_s, parse_sacct, parse_size_mb
from pipelines.resources import project_root
from pipelines.store import open_store


def test_every_rule_has_a_benchmark_file():
    missing = []
    for smk in sorted((project_root() / "workflows").glob("*/*.smk")):
        for block in re.split(r"^(?=rule )", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].removeprefix("rule ").strip()
            if "\n    benchmark:\n" not in block:
                missing.append(f"{smk.relative_to(project_root())}: {name}")
    assert missing == []


def test_usage_record_has_figures_for_every_job(cryoem_version):
    version_dir, manifest, _staged, _ = cryoem_version
    usage = json.loads((version_dir / USAGE_PATH).read_text())
    assert usage["format"] == "binds-usage" and usage["executor"] == "local"
    assert usage["request_id"] == "BINDS-DEMO-CRYOEM-0000"
    assert usage["notes"] == []
    rules = {j["rule"]: j for j in usage["jobs"]}
    assert set(rules) == {
        "cryoem_inspect",
        "cryoem_convert",
        "cryoem_map_qc",
        "cryoem_fsc",
        "cryoem_metrics",
    }
    for job in usage["jobs"]:
        assert job["source"] == "benchmark" and job["wall_s"] > 0
        assert job["mem_mb"] >= 500 and job["runtime_min"] >= 5
        assert job["core_s"] == pytest.approx(job["threads"] * job["wall_s"])
        assert job["start"] <= job["end"]
    assert rules["cryoem_convert"]["threads"] == 2 and rules["cryoem_inspect"]["threads"] == 1
    assert rules["cryoem_fsc"]["max_rss_mb"] > 10  # a real process measured
    totals = usage["totals"]
    assert totals["core_hours"] == pytest.approx(
        sum(j["core_s"] for j in usage["jobs"]) / 3600, abs=1e-6
    )
    assert totals["gpu_hours"] == 0
    meta_size = (version_dir / "metadata.jsonld").stat().st_size
    assert totals["stored_bytes"] == manifest["bytes"] + meta_size
    assert manifest["usage"] == totals
    row = read_catalog(open_store(str(version_dir.parents[3]))).to_pylist()[0]
    assert row["core_hours"] == pytest.approx(totals["core_hours"])
    assert row["stored_bytes"] == totals["stored_bytes"]
    assert row["peak_rss_mb"] == pytest.approx(totals["peak_rss_mb"])


def test_slurm_figures_parse():
    # the shapes sacct -P -n --noconvert prints (allocation row, then its steps)
    text = (
        "41|job-a|COMPLETED|4|2|00:01.250||cpu=2,mem=601M,node=1,billing=2,gres/gpu=1|vm|"
        "2026-12-01T18:00:00|2026-12-01T18:00:02\n"
        "41.batch|batch|COMPLETED|4|2|00:01.200|154320K|cpu=2,mem=601M,node=1|vm|x|y\n"
        "41.extern|extern|COMPLETED|4|2|00:00:00|0|cpu=2,mem=601M,node=1|vm|x|y\n"
    )
    job = parse_sacct(text)["41"]
    assert job["cpu_time_raw_s"] == 4 and job["elapsed_raw_s"] == 2 and job["gpus"] == 1
    assert job["total_cpu_s"] == pytest.approx(1.25) and job["max_rss_mb"] == pytest.approx(
        150.703, abs=1e-3
    )
    assert parse_duration_s("1-02:03:04") == 93784 and parse_duration_s("03:04.5") == 184.5
    assert parse_size_mb("2G") == 2048 and parse_size_mb("1048576") == 1
