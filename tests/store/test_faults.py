"""Faults against real components: a fault-injecting proxy in front of the loopback S3,
publishers killed with SIGKILL at random points, and racing publishers."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from binds_testing import kill_when
from s3_faultproxy import FaultPlan, FaultProxy

from pipelines.describe.catalog import read_catalog
from pipelines.errors import RunError
from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.store.verify import verify

DATASET_PREFIX = "consortium/screening/binds-2026-0042-screening/"


def _upstream(endpoint: str) -> tuple[str, int]:
    u = urlparse(endpoint)
    return u.hostname, u.port


def _local_bytes(stage) -> dict[str, str]:
    return {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in stage.published_files()}


def _assert_version_equals_stage(store, version: int, stage) -> None:
    manifest = json.loads(store.get(f"{DATASET_PREFIX}v{version}/manifest.json"))
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == _local_bytes(stage)
    for rel, sha in _local_bytes(stage).items():
        assert hashlib.sha256(store.get(f"{DATASET_PREFIX}v{version}/{rel}")).hexdigest() == sha


def _short_botocore_backoff(monkeypatch, scale: float = 0.05) -> None:
    """botocore waits rand(0, 1) * 2**n s (n = 0, 1, ..., at most 20 s) before the n-th retry of
    a request: through this proxy, 25 to 40 s of sleeping in all.  Here it waits ``scale`` times
    that; what is retried, and how often, is unchanged."""
    from botocore.retries.standard import ExponentialBackoff

    delay_amount = ExponentialBackoff.delay_amount
    monkeypatch.setattr(
        ExponentialBackoff,
        "delay_amount",
        lambda self, context: scale * delay_amount(self, context),
    )


def test_publish_through_flaky_proxy_completes_with_identical_bytes(
    make_stage, s3_bucket, s3_endpoint, monkeypatch
):
    stage = make_stage(n_chunks=60, big_bytes=3 << 20)
    plan = FaultPlan(error_rate=0.15, drop_rate=0.10, seed=7)
    _short_botocore_backoff(monkeypatch)
    with FaultProxy(_upstream(s3_endpoint), plan) as proxy_url:
        monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", proxy_url)
        store = open_store(s3_bucket)
        result = publish(stage, store, backoff_s=0.05)
    assert result.created and result.version == 1
    assert plan.counts["error"] > 5 and plan.counts["drop"] > 3, plan.counts
    monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", s3_endpoint)
    direct = open_store(s3_bucket)
    _assert_version_equals_stage(direct, 1, stage)
    assert verify(direct).ok


def test_proxy_failing_everything_gives_clear_error_and_keeps_stage(
    make_stage, s3_bucket, s3_endpoint, monkeypatch
):
    stage = make_stage(n_chunks=3)
    _short_botocore_backoff(monkeypatch)
    with FaultProxy(_upstream(s3_endpoint), FaultPlan(error_rate=1.0)) as proxy_url:
        monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", proxy_url)
        monkeypatch.setenv("BINDS_S3_MAX_ATTEMPTS", "2")
        with pytest.raises(RunError) as info:
            publish(stage, open_store(s3_bucket), attempts=2, backoff_s=0.01)
    msg = str(info.value)
    assert msg.startswith(f"publishing to {s3_bucket} failed")
    assert "SlowDown" in msg or "InternalError" in msg or "503" in msg or "500" in msg
    assert any("binds publish" in d for d in info.value.details)
    assert stage.data_dir.is_dir()  # staged data kept for the resume
    monkeypatch.setenv("BINDS_S3_ENDPOINT_URL", s3_endpoint)
    assert publish(stage, open_store(s3_bucket)).created  # and the next publish completes


def test_cli_reports_unreachable_store_with_exit_1(make_stage, tmp_path):
    env = dict(
        os.environ,
        BINDS_S3_ENDPOINT_URL="http://127.0.0.1:9",
        BINDS_S3_MAX_ATTEMPTS="1",
        BINDS_PUBLISH_ATTEMPTS="1",
        AWS_ACCESS_KEY_ID="k",
        AWS_SECRET_ACCESS_KEY="s",
    )
    stage = make_stage()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "publish", str(stage.root), "--store", "s3://b"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "cannot reach the S3 endpoint http://127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        "k" not in proc.stderr.split() and "s" not in proc.stderr.split()
    )  # no credentials echoed


def _publisher(stage_root: Path, store_url: str, endpoint: str | None) -> subprocess.Popen:
    # a killed publisher's store lease expires after 2 s (60 s by default) for the re-run
    env = dict(os.environ, BINDS_LEASE_TTL_S="2")
    if endpoint:
        env["BINDS_S3_ENDPOINT_URL"] = endpoint
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "publish", str(stage_root), "--store", store_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _assert_no_partial_version_visible(
    store,
    stages_by_digest: dict[str, object],
    prefix: str = DATASET_PREFIX,
    dataset_id: str | None = None,
    *,
    just_killed: bool = False,
) -> list[int]:
    """Every version with a manifest is complete and equals one staged content; ``verify``
    checks the versions of ``dataset_id`` (default: all of them) and the ledger.

    ``just_killed``: a kill between the commit and the ledger's entry leaves a complete version
    the ledger does not list yet (verify says so; the same command records it), allowed only
    until the re-run."""
    committed = []
    for name in store.list_dirs(prefix):
        if not name.startswith("v"):
            continue
        try:
            manifest = json.loads(store.get(f"{prefix}{name}/manifest.json"))
        except KeyError:
            continue  # uncommitted: invisible to readers
        assert manifest["content_digest"] in stages_by_digest
        committed.append(int(name[1:]))
    problems = verify(store, dataset_id=dataset_id).problems
    allowed = ("catalog row missing", *(("committed but not recorded",) if just_killed else ()))
    assert all(any(a in p for a in allowed) for p in problems), problems
    cat = read_catalog(store).to_pandas()
    assert set(cat[cat["path"].str.startswith(prefix)]["version"]) <= set(committed)
    return sorted(committed)


def _objects_under(store, prefix: str) -> int:
    """How many objects of a version are in the store now (what the publisher has sent so far)."""
    return sum(1 for _ in store.list_prefix(prefix))


def _recorded_timeline(stage, store, store_url: str, endpoint: str | None):
    """One uninterrupted publish (dataset ``timeline``) and its phases as (name, start, end) in
    seconds after the command started, from what appears in the store (polled): start-up and
    hashing (until its lease is taken), claiming (until its first object), uploading and the
    documents (until the manifest, the commit), then the ledger, catalog and release."""
    from pipelines.store.lease import lease_key

    stage.write_meta("experiment.json", dict(stage.experiment, dataset_id="timeline"))
    version = "consortium/screening/timeline/v1/"
    marks = [
        ("start-up and hashing", lambda: store.exists(lease_key("timeline"))),
        ("claiming", lambda: next(iter(store.list_prefix(version)), None) is not None),
        ("uploading and documents", lambda: store.exists(f"{version}manifest.json")),
    ]
    t0 = time.monotonic()
    proc = _publisher(stage.root, store_url, endpoint)
    seen: list[float] = []
    while proc.poll() is None:
        if len(seen) < len(marks) and marks[len(seen)][1]():
            seen.append(time.monotonic() - t0)
        time.sleep(0.005)
    end = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr.read().decode()
    seen += [end] * (len(marks) - len(seen))  # a mark the poll missed: its phase ends later
    names = [name for name, _ in marks] + ["ledger, catalog and release"]
    starts, ends = [0.2, *seen], [*seen, end]  # no kill before the interpreter even runs
    return [(n, a, max(a, b)) for n, a, b in zip(names, starts, ends, strict=True)]


def _kill_plan(phases, n_items: int, upload_kills: int, rng: random.Random):
    """One timed kill in every phase of the recorded publish, and ``upload_kills`` kills once
    a drawn number of the version's objects is in the store (mid-upload whatever the machine's
    speed), interleaved."""
    timed = [("at", name, rng.uniform(a, b)) for name, a, b in phases]
    counted = [
        ("objects", "uploading", rng.randint(1, int(n_items * 0.8))) for _ in range(upload_kills)
    ]
    plan = []
    while timed or counted:
        plan += [timed.pop(0)] if timed else []
        plan += [counted.pop(0)] if counted else []
    return plan


@pytest.mark.parametrize("backend,upload_kills,n_chunks", [("s3", 3, 150), ("local", 3, 1500)])
def test_sigkill_at_random_points_never_shows_partial_version(
    backend, upload_kills, n_chunks, make_stage, tmp_path, request
):
    """Publishers killed (each on a fresh dataset id): one at a random moment of each phase of
    a recorded uninterrupted publish (start-up and hashing, claiming, uploading, ledger and
    catalog), and ``upload_kills`` once a random number of their objects is seen in the store,
    so those land mid-upload whatever the machine's speed. No partial version is ever visible,
    and a re-run completes with identical bytes."""
    if backend == "s3":
        store_url = request.getfixturevalue("s3_bucket")
        endpoint = request.getfixturevalue("s3_endpoint")
    else:
        store_url, endpoint = str(tmp_path / "store"), None
    # local publishing is fast: more (fsynced) files give the random kills a window to land in
    stage = make_stage(
        n_chunks=n_chunks, chunk_bytes=40_000 if backend == "s3" else 4_000, big_bytes=2 << 20
    )
    from pipelines.run.publishing import hash_stage, stage_digest

    store = open_store(store_url)
    items = hash_stage(stage, store)
    experiment = stage.experiment
    phases = _recorded_timeline(stage, store, store_url, endpoint)
    plan = _kill_plan(phases, len(items), upload_kills, random.Random(20261128))
    print(f"timeline {phases}; kills {plan}", flush=True)
    killed_mid_upload = resumed = 0
    for run, (how, phase, when) in enumerate(plan):
        dataset = f"kill-{run}"
        stage.write_meta("experiment.json", dict(experiment, dataset_id=dataset))
        digest = stage_digest(stage, items)  # the metadata (here its dataset id) is part of it
        prefix = f"consortium/screening/{dataset}/"
        proc = _publisher(stage.root, store_url, endpoint)
        if how == "objects":
            seen_enough = lambda: _objects_under(store, f"{prefix}v1/") >= when  # noqa: B023, E731 (called in this iteration)
            assert kill_when(proc, seen_enough), (
                f"run {run}: the publisher ended before {when} of {len(items)} objects were seen"
            )
            committed = _assert_no_partial_version_visible(store, {digest: stage}, prefix, dataset)
            assert committed == [], f"run {run}: killed after {when} objects, yet v1 is committed"
            killed_mid_upload += 1
        else:
            time.sleep(when)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            _assert_no_partial_version_visible(
                store, {digest: stage}, prefix, dataset, just_killed=True
            )
        # the same command again resumes (or finds it committed) and completes
        proc = _publisher(stage.root, store_url, endpoint)
        out, errs = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"run {run} ({phase}): {errs.decode()}"
        resumed += b"resumed:" in out
        assert _assert_no_partial_version_visible(store, {digest: stage}, prefix, dataset) == [1]
        manifest = json.loads(store.get(f"{prefix}v1/manifest.json"))
        assert {f["path"]: f["sha256"] for f in manifest["files"]} == _local_bytes(stage)
    assert verify(store).ok
    assert killed_mid_upload == upload_kills
    assert resumed >= upload_kills  # every re-run after a mid-upload kill resumed the upload


def test_racing_publishers_of_different_content_get_clean_versions(
    make_stage, s3_bucket, s3_endpoint
):
    a = make_stage("a", seed=1, n_chunks=80)
    b = make_stage("b", seed=2, n_chunks=80)
    store = open_store(s3_bucket)
    digests = {}
    from pipelines.run.publishing import hash_stage, stage_digest

    for st in (a, b):
        its = hash_stage(st, store)
        digests[stage_digest(st, its)] = st
    procs = [_publisher(a.root, s3_bucket, s3_endpoint), _publisher(b.root, s3_bucket, s3_endpoint)]
    codes = [p.wait(timeout=120) for p in procs]
    committed = _assert_no_partial_version_visible(store, digests)
    # two clean versions, or one refusal (exit 1 naming the conflict) — never a mix
    if codes == [0, 0]:
        assert committed == [1, 2]
    else:
        assert sorted(codes) == [0, 1] and committed == [1]
    for v in committed:
        manifest = json.loads(store.get(f"{DATASET_PREFIX}v{v}/manifest.json"))
        _assert_version_equals_stage(store, v, digests[manifest["content_digest"]])
