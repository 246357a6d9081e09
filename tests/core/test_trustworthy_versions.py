"""A version holds exactly what the run folder holds, described truthfully (issue 9).

Each test reproduces a symptom seen on main b466995 through `binds` as a user runs it (real
Prefect flow, real Snakemake, a real store), then checks the fixed behaviour.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from binds_testing import minimal_yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.errors import BindsError
from pipelines.modalities import get as get_modality
from pipelines.store import open_store
from tests.conftest import shared_data

cli = CliRunner()


def binds(*args: str):
    return cli.invoke(app, [str(a) for a in args], catch_exceptions=False)


def run_ok(run_dir: Path, store: Path | str, work: Path, *extra: str) -> dict:
    out = binds(
        "run", run_dir, "--store", store, "--work-dir", work, "--cores", "2", "--json", *extra
    )
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def manifest(store: Path, result: dict) -> dict:
    return json.loads(
        (store / result["prefix"] / f"v{result['version']}" / "manifest.json").read_text()
    )


# ------------------------------------------------------------------ 1. stale outputs
def test_removed_input_never_reaches_the_next_version(tmp_path, binds_cli):
    """Symptom: run with mzML A, replace A by B, run again: the new version held A's spectra
    too (558 spectra for a folder whose only file has 51) and its manifest listed A's part."""
    data = shared_data("metabolomics")
    a, b = data / "example.mzML", data / "SiriusExport_1_input.mzML"
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.yaml").write_text(minimal_yaml("metabolomics"))
    (run / a.name).symlink_to(a)
    store, work = tmp_path / "store", tmp_path / "work"
    first = run_ok(run, store, work)
    # human samples (minimal_yaml): the raw file travels under its run id
    assert any(
        f["path"] == "data/spectra.parquet/run-001.parquet" for f in manifest(store, first)["files"]
    )

    (run / a.name).unlink()
    (run / b.name).symlink_to(b)
    second = run_ok(run, store, work)
    assert second["created"] and second["version"] == 2
    files = [f["path"] for f in manifest(store, second)["files"]]
    parts = sorted(p for p in files if p.startswith("data/spectra.parquet/"))
    assert parts == ["data/spectra.parquet/run-001.parquet"]  # B's spectra only (counted below)
    assert not any("example" in p for p in files), files
    vdir = store / second["prefix"] / "v2"
    n_spectra = (
        pq.ParquetDataset(vdir / "data" / "spectra.parquet").read(columns=["index"]).num_rows
    )
    import pymzml  # the reference reader

    assert n_spectra == sum(1 for _ in pymzml.run.Reader(str(b)))
    run_json = json.loads((work / "stage" / "_meta" / "run.json").read_text())
    assert sorted(i["name"] for i in run_json["inputs"]) == ["experiment.yaml", "run-001"]
    run_ids = json.loads((work / "stage" / "_meta" / "run_ids.json").read_text())["run_ids"]
    assert {k: v["name"] for k, v in run_ids.items()} == {"run-001": b.name}  # B only

    # another folder with the same request id (same dataset, same work folder): another
    # acquisition session, refused as the dataset's next version (issue 21); its stage holds
    # only its own input, which a curator may still publish as the next version
    other = tmp_path / "other"
    other.mkdir()
    (other / "experiment.yaml").write_text(minimal_yaml("metabolomics"))
    (other / a.name).symlink_to(a)
    refused = binds("run", other, "--store", store, "--work-dir", work, "--cores", "2", "--json")
    assert refused.exit_code == 2 and "another acquisition session" in refused.output
    assert not (store / second["prefix"] / "v3").exists()
    out = binds(
        "publish", work / "stage", "--store", store, "--json",
        "--curator-override", "re-acquired in another folder (test)",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    third = json.loads(out.stdout)
    assert third["version"] == 3
    parts = sorted(
        f["path"] for f in manifest(store, third)["files"] if "spectra.parquet/" in f["path"]
    )
    assert parts == ["data/spectra.parquet/run-001.parquet"]
    assert third["content_digest"] == first["content_digest"]  # same input, same bytes


# ------------------------------------------------------------------ 2. metadata corrections
@pytest.fixture(scope="module")
def cryoem_published(tmp_path_factory, prefect_server, snakemake):
    base = tmp_path_factory.mktemp("cryoem-trust")
    run = get_modality("cryoem").make_demo_run(base / "run", seed=3)
    store, work = base / "store", base / "work"
    with pytest.MonkeyPatch.context() as mp:  # the session's Prefect server, not a temporary one
        mp.setenv("PREFECT_API_URL", prefect_server)
        return run, store, work, run_ok(run, store, work)


def test_corrected_licence_or_title_is_a_new_version_without_rerunning_rules(cryoem_published):
    """Symptom: correcting the licence gave "unchanged, no new version" and the bucket kept
    the wrong licence."""
    run, store, work, first = cryoem_published
    yaml_path = run / "experiment.yaml"
    original = yaml_path.read_text()
    try:
        assert "license: CC0-1.0" in original
        yaml_path.write_text(original.replace("license: CC0-1.0", "license: CC-BY-4.0"))
        second = run_ok(run, store, work)
        assert second["created"] and second["version"] == first["version"] + 1
        doc = json.loads(
            (store / second["prefix"] / f"v{second['version']}" / "metadata.jsonld").read_text()
        )
        assert "CC-BY-4.0" in json.dumps(doc["license"])
        smk_log = (work / "stage" / "_meta" / "snakemake.log").read_text()
        assert "Nothing to be done" in smk_log, smk_log[-2000:]  # metadata-only: no rule reran
        # the data files are byte-identical: only the metadata changed
        files = lambda r: {(f["path"], f["sha256"]) for f in manifest(store, r)["files"]}  # noqa: E731
        assert files(first) == files(second)
        again = run_ok(run, store, work)
        assert not again["created"] and again["version"] == second["version"]
    finally:
        yaml_path.write_text(original)


def test_snakemake_markers_are_never_published(cryoem_published):
    """Symptom: `.snakemake_timestamp` published inside map.ome.zarr/ and listed in manifests."""
    _, store, work, first = cryoem_published
    assert list((work / "stage" / "data").rglob(".snakemake_timestamp")), (
        "the marker exists in the stage"
    )
    paths = [f["path"] for f in manifest(store, first)["files"]]
    assert not [p for p in paths if ".snakemake" in p]
    vdir = store / first["prefix"] / f"v{first['version']}"
    assert not list(vdir.rglob(".snakemake*"))


def test_verify_reports_a_file_added_inside_a_version(cryoem_published, tmp_path):
    import shutil

    _, store, _, first = cryoem_published
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    added = copy / first["prefix"] / f"v{first['version']}" / "data" / "extra.parquet"
    added.write_bytes(b"not part of the version")
    out = binds("verify", "--store", copy)
    assert out.exit_code == 1
    assert f"{added.relative_to(copy).as_posix()}: not in the manifest" in out.stdout


# ------------------------------------------------------------------ 9. one access level
def test_dataset_id_cannot_be_published_at_a_second_access_level(
    cryoem_published, tmp_path, prefect_api
):
    """Symptom: publishing as `restricted` after `open` made a second v1 under restricted/."""
    run, store, work, first = cryoem_published
    yaml_path = run / "experiment.yaml"
    original = yaml_path.read_text()
    level = first["access"]
    other = "restricted" if level != "restricted" else "open"
    try:
        yaml_path.write_text(original.replace(f"level: {level}", f"level: {other}"))
        out = binds("run", run, "--store", store, "--work-dir", work, "--cores", "2")
        assert out.exit_code == 2, out.output
        assert "already taken by another dataset" in out.output
        assert "v1" not in out.output.replace(str(store), "")
        assert f"published as {other!r}" in out.output and "access.level" in out.output
        assert f"{level}/" not in out.output, "a refusal never names the other level's keys"
        assert not (store / other / "cryoem").exists()
    finally:
        yaml_path.write_text(original)


# ------------------------------------------------------------------ 4. outside the run folder
def _cryoem_run(tmp_path: Path, block: str) -> Path:
    demo = get_modality("cryoem").make_demo_run(tmp_path / "demo", seed=1)
    run = tmp_path / "run"
    run.mkdir()
    for f in demo.glob("*.mrc"):
        (run / f.name).write_bytes(f.read_bytes())
    (run / "experiment.yaml").write_text(minimal_yaml("cryoem", block=block))
    return run


@pytest.mark.parametrize("ref", ["/abs/other.map", "../x/half1.map", "sub/../../other.map"])
def test_yaml_path_outside_the_run_folder_is_refused(tmp_path, ref):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "half1.map").write_bytes(b"\0" * 1024)
    run = _cryoem_run(tmp_path, f"cryoem:\n  map: {ref}\n")
    out = binds("validate", run)
    assert out.exit_code == 2, out.output
    assert f"experiment.yaml: cryoem.map: {ref!r} is outside the run folder" in out.output


def test_symlink_out_of_the_run_folder_is_refused_unless_its_root_is_allowed(tmp_path, monkeypatch):
    share = tmp_path / "share"
    demo = get_modality("cryoem").make_demo_run(share, seed=2)
    run = tmp_path / "run"
    run.mkdir()
    for f in demo.glob("*.mrc"):
        (run / f.name).symlink_to(f)
    (run / "experiment.yaml").write_text(minimal_yaml("cryoem"))
    out = binds("validate", run)
    assert out.exit_code == 2, out.output
    assert (
        "demo_map.mrc: is a symbolic link to" in out.output
        and "outside the run folder" in out.output
    )
    assert "BINDS_ALLOWED_ROOTS" in out.output
    monkeypatch.setenv("BINDS_ALLOWED_ROOTS", f"/nonexistent{os.pathsep}{share}")
    assert binds("validate", run).exit_code == 0


def test_plate_list_naming_a_file_outside_is_refused_without_reading_it(tmp_path):
    run = tmp_path / "screen"
    get_modality("screening").make_demo_run(run)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET-CONTENT\n")
    (run / "experiment.yaml").write_text(
        (run / "experiment.yaml").read_text().split("screening:")[0]
        + "screening:\n  input: {kind: cellhts2, plate_list: Platelist.txt}\n"
    )
    (run / "Platelist.txt").write_text(
        f"Filename\tPlate\tReplicate\n{secret}\t1\t1\n/etc/passwd\t2\t1\n../secret.txt\t3\t1\n"
    )
    out = binds("validate", run)
    assert out.exit_code == 2, out.output
    for line in (2, 3, 4):
        assert f"Platelist.txt: line {line}:" in out.output
    assert "is outside the run folder" in out.output
    assert "SECRET-CONTENT" not in out.output and "root:x" not in out.output


def test_plate_files_of_every_extension_the_readers_take_are_inputs(tmp_path):
    """`.tab` plates were processed but missing from provenance (and a folder of only .tab
    files was rejected): the input resolver is the one list for both."""
    run = tmp_path / "screen"
    get_modality("screening").make_demo_run(run)
    from pipelines.describe.metadata import load_experiment
    from pipelines.modalities.screening import list_inputs

    exp = load_experiment(run)
    before = {p.name for p in list_inputs(run, exp.data).files}
    plates = [
        p
        for p in run.iterdir()
        if p.suffix.lower() in (".csv", ".txt", ".tsv") and p.name.lower().startswith("plate")
    ]
    assert plates, "the screening demo writes its plates as text files"
    renamed = plates[0].with_suffix(".tab")
    plates[0].rename(renamed)
    after = {p.name for p in list_inputs(run, exp.data).files}
    assert renamed.name in after and plates[0].name not in after
    assert len(after) == len(before)


# ------------------------------------------------------------------ 8. store before compute
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_store_fails_before_any_rule_within_30_s(tmp_path, monkeypatch, binds_cli):
    """Symptom: the store was found unreachable after the compute, after 631 s."""
    monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    run = get_modality("cryoem").make_demo_run(tmp_path / "run", seed=4)
    work = tmp_path / "work"
    t0 = time.monotonic()
    out = binds("run", run, "--store", "s3://nowhere/curated", "--work-dir", work)
    elapsed = time.monotonic() - t0
    assert out.exit_code == 1, out.output
    assert "cannot reach the S3 endpoint" in out.output
    assert elapsed < 30 + 15, elapsed  # the check itself is bounded; Prefect's start-up is the rest
    assert not (work / "stage" / "data").exists(), "no rule ran"


def test_transient_retries_stop_within_the_budget(tmp_path, monkeypatch, binds_cli):
    from pipelines.errors import RunError
    from pipelines.run.publishing import publish
    from pipelines.store.base import StoreError

    monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("BINDS_S3_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    from binds_testing import run_stage

    from pipelines.store import publish as protocol
    from pipelines.store.s3 import S3Store

    run = get_modality("cryoem").make_demo_run(tmp_path / "run", seed=5)
    stage = run_stage(run, tmp_path / "work")
    calls = []
    real = protocol._commit_once

    def counting(*args, **kwargs):  # one call per attempt of the whole protocol
        calls.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(protocol, "_commit_once", counting)
    t0 = time.monotonic()
    with pytest.raises(RunError):
        publish(stage, S3Store("s3://nowhere"), attempts=10, backoff_s=1.0, retry_budget_s=4.0)
    assert time.monotonic() - t0 < 12
    assert 2 <= len(calls) <= 4  # 1 + retries after 1 s and 2 s; the 4 s wait would pass the budget
    assert issubclass(StoreError, BindsError)  # reported by the CLI as one line, exit 1


def test_input_error_at_publish_is_not_retried(tmp_path, binds_cli):
    """Symptom: an InputError raised at publish was retried for 35 s."""
    from binds_testing import run_stage

    from pipelines.errors import InputError
    from pipelines.run.publishing import publish

    run = get_modality("cryoem").make_demo_run(tmp_path / "run", seed=6)
    stage = run_stage(run, tmp_path / "work")
    store = open_store(tmp_path / "store")
    exp = stage.experiment
    exp["access"]["level"] = "restricted"
    stage.write_meta("experiment.json", exp)
    assert publish(stage, store).created
    exp["access"]["level"] = "open"
    stage.write_meta("experiment.json", exp)
    t0 = time.monotonic()
    with pytest.raises(InputError):
        publish(stage, store, attempts=5, backoff_s=5.0)
    assert time.monotonic() - t0 < 3
