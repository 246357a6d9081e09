"""``binds`` end to end: a real Prefect flow (ephemeral API) around a real Snakemake run,
publishing into a local store and into the loopback S3; then catalog / show / verify.

One run folder (the screening demo: the fastest modality) is processed once per session and
shared by the read-side tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.modalities import get as get_modality

runner = CliRunner()


def binds(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "screen-0006"
    get_modality("screening").make_demo_run(run_dir)
    return run_dir


@pytest.fixture(scope="session")
def published(demo_run, tmp_path_factory, ephemeral_prefect_session, snakemake):
    """`binds run` once, into a local store: (store path, result dict).  One of the two runs of
    the suite with binds' own temporary Prefect server (``ephemeral_prefect``)."""
    base = tmp_path_factory.mktemp("published")
    store = base / "store"
    priority = os.getpriority(os.PRIO_PROCESS, 0)
    result = runner.invoke(
        app,
        [
            "run",
            str(demo_run),
            "--store",
            str(store),
            "--cores",
            "2",
            "--work-dir",
            str(base / "work"),
            "--json",
        ],
        catch_exceptions=False,
    )
    os.environ.pop("PREFECT_API_URL", None)  # exported by the command: the temporary server's
    assert result.exit_code == 0, result.output
    # the `binds` process lowers its priority while it reports (test_monitoring), a caller of
    # the app in its own process keeps its priority
    assert os.getpriority(os.PRIO_PROCESS, 0) == priority
    return store, json.loads(result.stdout), base / "work" / "stage"


def test_run_publishes_a_version_through_prefect_and_snakemake(published):
    store, result, stage = published
    assert result["created"] is True and result["version"] == 1 and result["published"] is True
    vdir = store / result["prefix"] / "v1"
    assert (vdir / "manifest.json").is_file() and (vdir / "metadata.jsonld").is_file()
    assert (vdir / "data").is_dir() and (vdir / "qc" / "metrics.json").is_file()
    assert (stage / "_meta" / "snakemake.log").is_file()
    # the ephemeral mode (binds' own temporary server) records every job too
    events = [
        json.loads(ln)
        for ln in (stage / "_meta" / "snakemake-events.jsonl").read_text().splitlines()
    ]
    assert {e["rule"] for e in events if e["event"] == "job_info"} >= {
        "screening_score",
        "screening_metrics",
    }
    manifest = json.loads((vdir / "manifest.json").read_text())
    report = vdir / "qc" / "report.html"
    assert manifest["documents"][0] == {
        "path": "qc/report.html",
        "size": report.stat().st_size,
        "sha256": hashlib.sha256(report.read_bytes()).hexdigest(),
    }
    assert {"ro-crate-metadata.json", "_meta/usage.json"} <= {
        d["path"] for d in manifest["documents"]
    }
    assert "qc/report.html" not in {
        f["path"] for f in manifest["files"]
    }  # not in the content digest
    assert result["report"] == f"{store}/{result['prefix']}v1/qc/report.html"
    run_info = json.loads((stage / "_meta" / "run.json").read_text())
    assert run_info["inputs"] and all(len(i["sha256"]) == 64 for i in run_info["inputs"])


def test_rerun_of_same_folder_creates_no_new_version(published, demo_run, prefect_api):
    store, first, stage = published
    result = binds(
        "run", str(demo_run), "--store", str(store), "--cores", "2", "--work-dir", str(stage.parent)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"unchanged: {first['dataset_id']} v1")
    assert "no new version" in result.stdout


def test_catalog_json_and_table(published):
    store, result, _ = published
    out = binds("catalog", "--store", str(store), "--json")
    assert out.exit_code == 0
    rows = json.loads(out.stdout)
    assert [(r["dataset_id"], r["version"], r["modality"], r["access"]) for r in rows] == [
        (result["dataset_id"], 1, "screening", result["access"])
    ]
    assert rows[0]["qc"] and rows[0]["n_files"] == result["n_files"]
    table = binds("catalog", "--store", str(store))
    assert result["dataset_id"] in table.stdout and "screening" in table.stdout
    empty = binds("catalog", "--store", str(store), "--modality", "cryoem", "--json")
    assert json.loads(empty.stdout) == []


def test_catalog_readable_with_pandas_and_duckdb(published):
    import duckdb

    store, result, _ = published
    level = store / result["access"] / "catalog"
    df = pd.read_parquet(level)
    assert list(df["dataset_id"]) == [result["dataset_id"]]
    con = duckdb.connect()
    n, title = con.execute(
        f"select count(*), any_value(title) from read_parquet('{store}/*/catalog/*.parquet', union_by_name=true)"
    ).fetchone()
    assert n == 1 and title


def test_metadata_jsonld_is_valid_croissant(published):
    import mlcroissant as mlc

    store, result, _ = published
    path = store / result["prefix"] / "v1" / "metadata.jsonld"
    doc = json.loads(path.read_text())
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert doc["@type"] == "sc:Dataset" and doc["license"].endswith("CC-BY-4.0.html")
    manifest = json.loads((path.parent / "manifest.json").read_text())
    sha = {f["path"]: f["sha256"] for f in manifest["files"]}
    for obj in doc["distribution"]:
        if obj["@type"] == "cr:FileObject":
            assert obj["sha256"] == sha[obj["contentUrl"]]
    ds = mlc.Dataset(jsonld=str(path))
    assert not ds.metadata.ctx.issues.errors, ds.metadata.ctx.issues.report()
    assert doc["recordSet"], "every Parquet table gets a RecordSet"
    rs = doc["recordSet"][0]
    records = (
        list(ds.records(rs["@id"]).take(3))
        if hasattr(ds.records(rs["@id"]), "take")
        else list(ds.records(rs["@id"]))[:3]
    )
    assert len(records) == 3
    text = path.read_text()
    assert "AWS_SECRET" not in text and "binds-test-secret" not in text


def test_show_and_verify(published):
    store, result, _ = published
    show = binds("show", result["dataset_id"], "--store", str(store))
    assert (
        show.exit_code == 0 and f"{result['dataset_id']} v1" in show.stdout and "qc:" in show.stdout
    )
    assert binds("show", "nope", "--store", str(store)).exit_code == 2
    assert (
        binds("show", result["dataset_id"], "--version", "9", "--store", str(store)).exit_code == 2
    )
    ok = binds("verify", "--store", str(store))
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: 1 version(s)")


def test_verify_names_a_damaged_file_and_exits_1(published, tmp_path):
    store, result, _ = published
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    vdir = copy / result["prefix"] / "v1"
    victim = sorted((vdir / "data").rglob("*.parquet"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    gone = sorted((vdir / "qc").glob("*.png"))[0]
    gone.unlink()
    out = binds("verify", "--store", str(copy))
    assert out.exit_code == 1
    rel_victim = victim.relative_to(copy).as_posix()
    assert f"{rel_victim}: sha256" in out.stdout
    assert f"{gone.relative_to(copy).as_posix()}: missing" in out.stdout


def test_catalog_rebuild_restores_a_lost_row(published, tmp_path):
    store, result, _ = published
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    # the whole catalog lost: the row files, the log and its snapshots (docs/formats/store.md)
    for row in (copy / result["access"] / "catalog").rglob("*.parquet"):
        row.unlink()
    assert json.loads(binds("catalog", "--store", str(copy), "--json").stdout) == []
    assert binds("verify", "--store", str(copy)).exit_code == 1  # missing catalog row is reported
    rebuilt = binds("catalog", "--store", str(copy), "--rebuild", "--json")
    assert [r["version"] for r in json.loads(rebuilt.stdout)] == [1]


def test_run_and_publish_into_s3(demo_run, s3_bucket, tmp_path, s3_endpoint, binds_cli):
    import s3fs

    work = tmp_path / "work"
    out = binds(
        "run",
        str(demo_run),
        "--store",
        s3_bucket + "/curated",
        "--cores",
        "2",
        "--work-dir",
        str(work),
        "--no-publish",
    )
    assert out.exit_code == 0 and "not published" in out.stdout
    pub = binds("publish", str(work / "stage"), "--store", s3_bucket + "/curated", "--json")
    assert pub.exit_code == 0, pub.output
    res = json.loads(pub.stdout)
    assert res["created"] and res["store_url"] == s3_bucket + "/curated"
    # the AI teams' path: pyarrow/duckdb over s3fs (DuckDB's httpfs cannot be downloaded here)
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    files = fs.glob(f"{s3_bucket[5:]}/curated/*/catalog/*.parquet")
    table = pq.read_table(files[0], filesystem=fs)
    assert table.column("dataset_id").to_pylist() == [res["dataset_id"]]
    import duckdb

    con = duckdb.connect()
    con.register_filesystem(fs)
    n = con.execute(
        f"select count(*) from read_parquet('s3://{s3_bucket[5:]}/curated/*/catalog/*.parquet')"
    ).fetchone()[0]
    assert n == 1
    cat = binds("catalog", "--store", s3_bucket + "/curated", "--json")
    assert json.loads(cat.stdout)[0]["dataset_id"] == res["dataset_id"]
    assert binds("verify", "--store", s3_bucket + "/curated").exit_code == 0


def test_invalid_run_folder_exits_2_and_runs_nothing(tmp_path, prefect_api):
    run = tmp_path / "bad"
    run.mkdir()
    (run / "experiment.yaml").write_text("schema_version: 1\nmodality: screening\n")
    store = tmp_path / "store"
    out = binds("run", str(run), "--store", str(store), "--work-dir", str(tmp_path / "w"))
    assert out.exit_code == 2
    assert "request_id: required field is missing" in out.output
    assert not store.exists() and not (tmp_path / "w").exists()


def test_failing_rule_is_named_with_its_log_tail(demo_run, tmp_path, monkeypatch, binds_cli):
    """A rule that crashes (a broken environment, not bad input): exit 1 naming the rule and
    showing its log tail; nothing published."""
    # a real misconfiguration: matplotlib refuses an unknown backend in the plotting rules
    monkeypatch.setenv("MPLBACKEND", "no-such-backend")
    store = tmp_path / "store"
    out = binds(
        "run",
        str(demo_run),
        "--store",
        str(store),
        "--cores",
        "2",
        "--work-dir",
        str(tmp_path / "w"),
    )
    assert out.exit_code == 1, out.output
    assert "workflow failed in rule screening_" in out.output
    assert "no-such-backend" in out.output  # the log tail says why
    assert "Traceback (most recent call last)" not in out.output.split("log")[0]
    assert not store.exists()


def test_usage_errors_exit_2():
    assert binds("run").exit_code == 2
    assert binds("catalog", "--access", "secret").exit_code == 2
    assert binds("init", "/nonexistent", "--modality", "cryoem").exit_code == 2
    assert binds("nosuchcommand").exit_code == 2


def test_every_command_has_help_with_an_example():
    for cmd in (
        "init",
        "validate",
        "run",
        "publish",
        "catalog",
        "show",
        "verify",
        "watch",
        "serve",
        "demo",
    ):
        out = binds(cmd, "--help")
        assert out.exit_code == 0
        assert "binds " + cmd in out.stdout.replace("\n", " "), cmd
    top = binds("--help")
    assert "Exit codes: 0 success; 1" in top.stdout


def test_init_template_lists_files_and_validates_once_filled(demo_run, tmp_path):
    run = tmp_path / "fresh"
    shutil.copytree(demo_run, run)
    (run / "experiment.yaml").unlink()
    out = binds("init", str(run), "--modality", "screening")
    assert out.exit_code == 0
    text = (run / "experiment.yaml").read_text()
    raw = sorted(p.name for p in run.rglob("*") if p.is_file() and p.name != "experiment.yaml")
    assert any(name in text for name in raw)
    assert binds("init", str(run), "--modality", "screening").exit_code == 2  # exists: no overwrite
    unfilled = binds("validate", str(run))
    assert unfilled.exit_code == 2 and "placeholder from `binds init`" in unfilled.output
    filled = (
        text.replace("BINDS-2026-0000", "BINDS-2026-0100")
        .replace("manufacturer: EDIT", "manufacturer: PerkinElmer")
        .replace("model: EDIT", "model: EnVision")
        .replace("acquired: EDIT", "acquired: 2026-11-20")
    )
    (run / "experiment.yaml").write_text(filled)
    # the demo's controls are not the default names: validate lists the names it found
    named = binds("validate", str(run))
    assert named.exit_code == 2 and "DMSO" in named.output and "STAU" in named.output
    filled += "screening:\n  controls: {negative: [DMSO], positive: [STAU]}\n"
    (run / "experiment.yaml").write_text(filled)
    ok = binds("validate", str(run))
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("ok: ")


def test_ephemeral_mode_keeps_the_task_run_of_every_job(published):
    """Without a server, binds' temporary server records the run in $PREFECT_HOME: a later
    server on the same database shows the flow run with one task run per Snakemake job."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.orchestrate.monitoring import TemporaryServer

    _, result, stage = published
    events = [
        json.loads(ln)
        for ln in (stage / "_meta" / "snakemake-events.jsonl").read_text().splitlines()
    ]
    rules = {e["rule"] for e in events if e["event"] == "job_info"}

    async def read():
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name={"any_": [result["dataset_id"]]})
            )
            names = set()
            for fr in runs:
                names |= {
                    t.name
                    for t in await client.read_task_runs(
                        flow_run_filter=FlowRunFilter(id={"any_": [fr.id]})
                    )
                }
            return runs, names

    server = TemporaryServer().start()
    try:
        server.wait_ready()
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            runs, names = asyncio.run(read())
    finally:
        server.stop()
    assert runs and any(fr.state.is_completed() for fr in runs)
    assert rules <= {n.split("[")[0] for n in names} and "screening_read_batch[batch=0]" in names
