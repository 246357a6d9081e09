"""Preservation (#26): a second copy (`binds replicate`), fixity sweeps with a log and repair
(`binds verify --sweep`), the replication lag (`binds verify --copy`), BagIt export."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.store.fixity import read_log, rotation_slices, sweep
from pipelines.store.replicate import lag, manifest_objects, replicate
from pipelines.store.verify import verify
from tests.store.conftest import EXPERIMENT, build_stage

runner = CliRunner()
DS0 = "consortium/screening/ds-0/"


@pytest.fixture(params=["local", "s3"])
def two_stores(request, tmp_path):
    """(primary URL, copy URL): two folders, or two buckets of the loopback S3 server."""
    if request.param == "local":
        return str(tmp_path / "primary"), str(tmp_path / "copy")
    first = request.getfixturevalue("s3_bucket")
    import uuid

    import boto3

    second = f"copy-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=request.getfixturevalue("s3_endpoint")).create_bucket(
        Bucket=second
    )
    return first + "/curated", f"s3://{second}/replica"


def _populate(url: str, tmp_path) -> None:
    store = open_store(url)
    publish(build_stage(tmp_path / "s0", seed=0, n_chunks=8, dataset_id="ds-0"), store)
    publish(build_stage(tmp_path / "s1", seed=1, n_chunks=8, dataset_id="ds-0"), store)
    publish(
        build_stage(tmp_path / "s2", seed=2, n_chunks=8, dataset_id="ds-1", access="open"), store
    )


def _everything(url: str) -> dict[str, bytes]:
    store = open_store(url, read_only=True)
    return {
        i.key: store.get(i.key)
        for i in store.list_prefix("")
        if "/_fixity/" not in i.key and not i.key.startswith("_leases/")
    }


def _files(url: str, vprefix: str) -> list[dict]:
    return json.loads(open_store(url).get(vprefix + "manifest.json"))["files"]


# ------------------------------------------------------------------------------ replicate
def test_replicate_copies_only_committed_versions_and_is_idempotent(two_stores, tmp_path):
    primary, copy = two_stores
    _populate(primary, tmp_path)
    store = open_store(primary)
    # an upload in progress: objects and a claim, no manifest: not a version
    store.put("consortium/screening/ds-2/v1/data/a.bin", b"half")
    store.put("consortium/screening/ds-2/_claims/v1.json", b'{"content_digest": "x"}\n')
    store.put("consortium/screening/ds-0/v3/data/a.bin", b"half")
    assert lag(store, open_store(copy)).count == 3

    first = replicate(store, open_store(copy))
    assert first.ok, first.problems
    assert (first.versions, first.versions_copied) == (3, 3)
    copied = _everything(copy)
    assert not [k for k in copied if "ds-2" in k or "/v3/" in k or "_claims" in k]
    want = {
        k: v
        for k, v in _everything(primary).items()
        if "ds-2" not in k and "/v3/" not in k and "_claims" not in k and "_probe" not in k
    }
    assert copied == want  # versions, ledger, catalog, registry: byte for byte
    assert any("/_ledger/" in k for k in copied) and any("/catalog/" in k for k in copied)
    assert verify(open_store(copy, read_only=True)).ok
    assert lag(store, open_store(copy)).count == 0

    again = replicate(store, open_store(copy))
    assert (again.versions_present, again.objects_copied, again.other_copied) == (3, 0, 0)

    # a new version, then one more run: only it travels
    publish(
        build_stage(tmp_path / "s3", seed=3, n_chunks=8, dataset_id="ds-1", access="open"), store
    )
    assert lag(store, open_store(copy)).versions == ["open/screening/ds-1/v2/"]
    third = replicate(store, open_store(copy))
    assert third.versions_copied == 1 and third.versions_present == 3
    assert verify(open_store(copy, read_only=True)).ok


def test_replicate_never_copies_a_damaged_object_nor_commits_its_version(tmp_path):
    primary, copy = str(tmp_path / "p"), str(tmp_path / "c")
    _populate(primary, tmp_path)
    victim = DS0 + "v1/" + _files(primary, DS0 + "v1/")[0]["path"]
    path = tmp_path / "p" / victim
    data = bytearray(path.read_bytes())
    data[7] ^= 0x01
    path.write_bytes(bytes(data))

    result = runner.invoke(app, ["replicate", "--from", primary, "--to", copy])
    assert result.exit_code == 1, result.output
    assert f"{victim}: the source's bytes do not match its manifest" in result.output
    assert not (tmp_path / "c" / victim).exists()
    assert not (tmp_path / "c" / DS0 / "v1" / "manifest.json").exists()  # not committed
    assert (tmp_path / "c" / DS0 / "v2" / "manifest.json").exists()  # the others are


def test_replicate_copies_held_versions_under_embargo(tmp_path):
    primary, copy = str(tmp_path / "p"), str(tmp_path / "c")
    stage = build_stage(tmp_path / "held", seed=5, n_chunks=3, dataset_id="ds-held", access="open")
    stage.write_meta(
        "experiment.json",
        dict(
            EXPERIMENT,
            dataset_id="ds-held",
            access={"level": "open", "embargo_until": "2099-01-01"},
        ),
    )
    publish(stage, open_store(primary))
    assert replicate(open_store(primary), open_store(copy)).versions_copied == 1
    assert (tmp_path / "c" / "_embargo/open/screening/ds-held/v1/manifest.json").is_file()
    # held versions are swept and repaired like the others (their log under _embargo/open/)
    held = "_embargo/open/screening/ds-held/v1/"
    victim = held + json.loads(open_store(primary).get(held + "manifest.json"))["files"][0]["path"]
    _damage(primary, victim, "truncate")
    report = sweep(open_store(primary), repair_from=open_store(copy))
    assert report.repaired == [victim] and report.ok
    assert any(e["object"] == victim for e in read_log(open_store(primary), "_embargo/open/"))


def test_replicate_refuses_bad_targets_with_exit_2(tmp_path):
    primary = str(tmp_path / "p")
    same = runner.invoke(app, ["replicate", "--from", primary, "--to", primary])
    assert same.exit_code == 2 and "--to: --to names the store being copied" in same.output
    scheme = runner.invoke(app, ["replicate", "--from", primary, "--to", "ftp://x/y"])
    assert scheme.exit_code == 2 and "--to: unsupported store URL" in scheme.output
    assert "Traceback" not in same.output + scheme.output


def test_verify_copy_reports_the_lag(tmp_path):
    primary, copy = str(tmp_path / "p"), str(tmp_path / "c")
    _populate(primary, tmp_path)
    behind = runner.invoke(
        app, ["verify", "--store", primary, "--copy", copy, "--max-lag-hours", "0"]
    )
    assert behind.exit_code == 1
    assert "not yet in the copy: consortium/screening/ds-0/v1/" in behind.output
    assert "replication lag: 3 version(s)" in behind.output
    patient = runner.invoke(app, ["verify", "--store", primary, "--copy", copy])
    assert patient.exit_code == 0 and "replication lag: 3 version(s)" in patient.output
    assert runner.invoke(app, ["replicate", "--from", primary, "--to", copy]).exit_code == 0
    in_step = runner.invoke(app, ["verify", "--store", primary, "--copy", copy])
    assert in_step.exit_code == 0 and "copy in step" in in_step.output


# ------------------------------------------------------------------------------ sweeps
def _damage(url: str, key: str, how: str) -> None:
    store = open_store(url)
    data = store.get(key)
    if how == "flip":
        store.put(key, data[:3] + bytes([data[3] ^ 0x20]) + data[4:])
    elif how == "truncate":
        store.put(key, data[: len(data) // 2])
    else:
        store.delete(key)


def test_sweep_finds_planted_damage_and_repairs_it_from_the_copy(two_stores, tmp_path):
    primary, copy = two_stores
    _populate(primary, tmp_path)
    assert replicate(open_store(primary), open_store(copy)).ok
    files = [DS0 + "v1/" + f["path"] for f in _files(primary, DS0 + "v1/")]
    flipped, deleted, truncated = files[0], files[1], files[2]
    manifest = DS0 + "v2/manifest.json"
    before = _everything(primary)
    for key, how in ((flipped, "flip"), (deleted, "delete"), (truncated, "truncate")):
        _damage(primary, key, how)
    _damage(primary, manifest, "delete")  # the version looks uncommitted: the ledger knows

    found = runner.invoke(app, ["verify", "--sweep", "--store", primary])
    assert found.exit_code == 1, found.output
    for key in (flipped, deleted, truncated, manifest):
        assert f"damaged: {key}" in found.output
    assert "not repaired" in found.output

    logged = {
        i.key: open_store(primary).get(i.key)
        for i in open_store(primary).list_prefix("consortium/_fixity/")
    }
    assert logged
    fixed = runner.invoke(app, ["verify", "--sweep", "--store", primary, "--repair-from", copy])
    assert fixed.exit_code == 0, fixed.output
    for key in (flipped, deleted, truncated, manifest):
        assert f"repaired: {key}" in fixed.output
    assert _everything(primary) == before  # byte for byte what was committed
    assert verify(open_store(primary, read_only=True)).ok

    clean = runner.invoke(app, ["verify", "--sweep", "--store", primary, "--json"])
    assert clean.exit_code == 0
    for key, body in logged.items():  # append-only: the first sweep's log is untouched
        assert open_store(primary).get(key) == body
    assert json.loads(clean.output)["damaged"] == []

    # the log: every check and every repair of the three sweeps, nothing rewritten
    events = read_log(open_store(primary), "consortium/")
    by_run: dict[str, list[dict]] = {}
    for e in events:
        by_run.setdefault(e["run"], []).append(e)
    assert len(by_run) == 3
    first, second, third = (by_run[run] for run in sorted(by_run))  # run ids sort by time
    outcomes = {(e["object"], e["event"]): e["outcome"] for e in first}
    assert outcomes[(flipped, "fixity check")] == "fail"
    assert outcomes[(truncated, "fixity check")] == "fail"
    assert outcomes[(deleted, "fixity check")] == "missing"
    assert outcomes[(manifest, "fixity check")] == "missing"
    repairs = {e["object"]: e for e in second if e["event"] == "repair"}
    assert set(repairs) == {flipped, deleted, truncated, manifest}
    assert all(e["outcome"] == "success" and e["source"] for e in repairs.values())
    flipped_check = next(e for e in first if e["object"] == flipped)
    assert flipped_check["algorithm"] == "sha256" and flipped_check["agent"].startswith(
        "binds-pipelines"
    )
    assert flipped_check["expected"] != flipped_check["observed"]
    assert all(e["outcome"] == "pass" for e in third)
    checked_in_third = {e["object"] for e in third}
    assert set(files) <= checked_in_third and manifest in checked_in_third


def test_sweep_never_repairs_from_a_damaged_copy(tmp_path):
    primary, copy = str(tmp_path / "primary"), str(tmp_path / "copy")
    _populate(primary, tmp_path)
    assert replicate(open_store(primary), open_store(copy)).ok
    victim = DS0 + "v1/" + _files(primary, DS0 + "v1/")[0]["path"]
    _damage(primary, victim, "flip")
    _damage(copy, victim, "truncate")  # the copy is wrong too
    damaged = open_store(primary).get(victim)

    result = runner.invoke(app, ["verify", "--sweep", "--store", primary, "--repair-from", copy])
    assert result.exit_code == 1
    assert f"NOT repaired: {victim}: not repaired: the copy is damaged too" in result.output
    assert open_store(primary).get(victim) == damaged  # nothing written from the bad copy
    (failure,) = [e for e in read_log(open_store(primary), "consortium/") if e["event"] == "repair"]
    assert failure["outcome"] == "failure" and "damaged too" in failure["detail"]


def test_a_rotating_sample_reads_every_object_once_per_period(tmp_path):
    url = str(tmp_path / "p")
    _populate(url, tmp_path)
    publish(build_stage(tmp_path / "s4", seed=4, n_chunks=2, dataset_id="ds-4"), open_store(url))
    publish(build_stage(tmp_path / "s5", seed=5, n_chunks=2, dataset_id="ds-5"), open_store(url))
    store = open_store(url)
    slices = rotation_slices(25)
    assert slices == 4 and rotation_slices(1.2) == 83  # 1.2 % a day: every object in 83 days
    start = dt.date(2026, 12, 4)
    seen: list[str] = []
    per_day = []
    for d in range(slices):
        report = sweep(store, sample_percent=25, today=start + dt.timedelta(days=d))
        events = read_log(store, "consortium/") + read_log(store, "open/")
        today = [e["object"] for e in events if e["run"] == report.run]
        per_day.append(len(today))
        seen += today
    prefixes = [
        DS0 + "v1/",
        DS0 + "v2/",
        "open/screening/ds-1/v1/",
        "consortium/screening/ds-4/v1/",
        "consortium/screening/ds-5/v1/",
    ]
    every = {
        f"{p}{path}"
        for p in prefixes
        for path, _, _ in manifest_objects(json.loads(store.get(p + "manifest.json")))
    } | {p + "manifest.json" for p in prefixes}
    assert sorted(seen) == sorted(every)  # each object exactly once over the period
    assert sum(per_day) == len(every) and max(per_day) < len(every)  # spread over the days
    again = sweep(store, sample_percent=25, today=start)  # the same day, the same slice
    assert again.checked == per_day[0]


def test_older_than_skips_objects_checked_recently(tmp_path):
    url = str(tmp_path / "p")
    _populate(url, tmp_path)
    store = open_store(url)
    full = sweep(store, today=dt.date(2026, 12, 4))
    assert full.checked > 20 and full.ok
    recent = sweep(store, older_than_days=30, today=dt.date(2026, 12, 10))
    assert recent.checked == 3  # only the manifests (read to list the files)
    assert sweep(store, older_than_days=30, today=dt.date(2027, 2, 1)).checked == full.checked


def test_sweep_rejects_bad_arguments_with_exit_2(tmp_path):
    result = runner.invoke(app, ["verify", "--sweep", "--sample", "0", "--store", str(tmp_path)])
    assert result.exit_code == 2 and "--sample: 0.0 is not a percentage" in result.output
    bad_copy = runner.invoke(
        app, ["verify", "--sweep", "--repair-from", "ftp://x", "--store", str(tmp_path)]
    )
    assert bad_copy.exit_code == 2 and "--repair-from: unsupported store URL" in bad_copy.output


def test_watch_keeps_the_copy_in_step(tmp_path):
    from pipelines.store.replicate import watch

    primary, copy = open_store(tmp_path / "p"), open_store(tmp_path / "c")
    publish(build_stage(tmp_path / "a", seed=1, n_chunks=2, dataset_id="ds-w"), primary)
    rounds = []

    def after(report) -> None:
        rounds.append(report.versions_copied)
        if len(rounds) == 1:  # a publish between two rounds
            publish(build_stage(tmp_path / "b", seed=2, n_chunks=2, dataset_id="ds-w"), primary)

    watch(primary, copy, interval_s=0, rounds=3, on_round=after)
    assert rounds == [1, 1, 0]
    assert lag(primary, copy).count == 0


# ------------------------------------------------------------------------------ BagIt
def test_export_writes_a_bag_that_bagit_python_validates(tmp_path):
    import bagit

    url = str(tmp_path / "p")
    _populate(url, tmp_path)
    target = tmp_path / "deposit" / "ds-0-v2"
    result = runner.invoke(
        app, ["export", "ds-0", "--version", "2", "--bagit", str(target), "--store", url]
    )
    assert result.exit_code == 0, result.output
    bag = bagit.Bag(str(target))
    bag.validate()  # raises BagValidationError on any mismatch
    assert bag.version_info == (1, 0)
    assert set(bag.algorithms) == {"sha256", "sha512"}
    assert (target / "manifest-sha512.txt").is_file()
    info = bag.info
    assert info["BINDS-Dataset-Id"] == "ds-0" and info["BINDS-Version"] == "2"
    assert info["BINDS-Access-Level"] == "consortium"
    assert (
        "ds-0" in info["External-Identifier"] and "BINDS-2026-0042" in info["External-Identifier"]
    )
    assert info["Source-Organization"]
    manifest_bytes = open_store(url).get(DS0 + "v2/manifest.json")
    assert (target / "data" / "manifest.json").read_bytes() == manifest_bytes
    assert info["BINDS-Manifest-SHA256"] == hashlib.sha256(manifest_bytes).hexdigest()
    for f in json.loads(manifest_bytes)["files"]:
        got = hashlib.sha256((target / "data" / f["path"]).read_bytes()).hexdigest()
        assert got == f["sha256"]

    # the validator is real: a changed payload byte fails it
    some = target / "data" / json.loads(manifest_bytes)["files"][0]["path"]
    some.write_bytes(b"x" + some.read_bytes()[1:])
    with pytest.raises(bagit.BagValidationError):
        bagit.Bag(str(target)).validate()


def test_export_refuses_what_it_may_not_read_like_what_does_not_exist(tmp_path):
    url = str(tmp_path / "p")
    _populate(url, tmp_path)
    stage = build_stage(tmp_path / "held", seed=7, n_chunks=2, dataset_id="ds-held", access="open")
    stage.write_meta(
        "experiment.json",
        dict(
            EXPERIMENT,
            dataset_id="ds-held",
            access={"level": "open", "embargo_until": "2099-01-01"},
        ),
    )
    publish(stage, open_store(url))
    outputs = []
    for did, version in (("ds-held", 1), ("ds-0", 9), ("no-such", 1)):
        r = runner.invoke(
            app,
            [
                "export",
                did,
                "--version",
                str(version),
                "--bagit",
                str(tmp_path / did),
                "--store",
                url,
            ],
        )
        assert r.exit_code == 2 and "Traceback" not in r.output
        assert not (tmp_path / did).exists()
        outputs.append(r.output.replace(did, "ID").replace(f"version {version}", "version N"))
    assert outputs[0] == outputs[1] == outputs[2]  # held, absent, unknown: one refusal


def test_export_refuses_a_damaged_version_and_leaves_no_bag(tmp_path):
    url = str(tmp_path / "p")
    _populate(url, tmp_path)
    _damage(url, DS0 + "v1/" + _files(url, DS0 + "v1/")[0]["path"], "flip")
    target = tmp_path / "bag"
    r = runner.invoke(
        app, ["export", "ds-0", "--version", "1", "--bagit", str(target), "--store", url]
    )
    assert r.exit_code == 1 and "does not match its manifest" in r.output
    assert not target.exists()
    (target / "other").mkdir(parents=True)
    r = runner.invoke(
        app, ["export", "ds-0", "--version", "2", "--bagit", str(target), "--store", url]
    )
    assert r.exit_code == 2 and "exists and is not an empty folder" in r.output
    assert list(target.iterdir()) == [target / "other"]


def test_a_store_larger_than_the_queue_is_copied_in_order(tmp_path):
    """workers=1 queues at most 64 objects: versions are committed in the copy as they finish."""
    primary, copy = open_store(tmp_path / "p"), open_store(tmp_path / "c")
    for i in range(3):  # 3 x ~45 objects > 64
        publish(build_stage(tmp_path / f"s{i}", seed=i, n_chunks=40, chunk_bytes=1000), primary)
    report = replicate(primary, copy, workers=1)
    assert report.ok and report.versions_copied == 3 and report.objects_copied > 64
    assert verify(open_store(tmp_path / "c", read_only=True)).ok
