"""`binds replicate` killed (SIGKILL) at random points, then run again: the copy ends byte for
byte the source's committed content, no copy ever shows a version that is not whole, and the
resumed run re-sends nothing that was already copied (issue #26)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from binds_testing import kill_when

from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.store.replicate import committed_versions, manifest_objects, sha256_of
from pipelines.store.verify import verify
from tests.store.conftest import build_stage

#: the installed entry point (``python -m pipelines.cli`` would not register the commands
#: the cli_*.py modules add to ``pipelines.cli.app``)
BINDS = str(Path(sys.executable).parent / "binds")


def _start(source: str, copy: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BINDS, "replicate", "--from", source, "--to", copy, "--workers", "4", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        start_new_session=True,
    )


def _whole_versions_only(copy_url: str) -> int:
    """Every version committed in the copy has all its objects, as its manifest says."""
    copy = open_store(copy_url, read_only=True)
    versions, _ = committed_versions(copy)
    for ref in versions:
        manifest = json.loads(copy.get(ref.manifest.key))
        for path, size, sha in manifest_objects(manifest):
            assert sha256_of(copy, ref.prefix + path) == (size, sha), ref.prefix + path
    return len(versions)


def _objects(copy_url: str) -> set[str]:
    return {i.key for i in open_store(copy_url, read_only=True).list_prefix("")}


def test_replicate_killed_at_random_points_then_resumed_gives_an_identical_copy(
    tmp_path, s3_bucket
):
    source = str(tmp_path / "primary")
    store = open_store(source)
    for i in range(4):  # 4 versions of ~0.5 MB in ~25 objects each
        publish(
            build_stage(
                tmp_path / f"s{i}",
                seed=i,
                n_chunks=20,
                chunk_bytes=20_000,
                dataset_id=f"ds-{i % 3}",
            ),
            store,
        )
    copy = s3_bucket + "/replica"
    versions, _ = committed_versions(store)
    total = sum(len(manifest_objects(json.loads(store.get(v.manifest.key)))) for v in versions)

    rng = random.Random(26)
    # kill after this many objects; in the first half, so that the last kill leaves objects
    # for the resumed run (a copy without the read-back finished before a late kill landed)
    thresholds = sorted(rng.sample(range(1, total // 2), 3))
    kills = 0
    for threshold in [0, *thresholds]:
        proc = _start(source, copy)
        kills += kill_when(
            proc,
            lambda t=threshold: len(_objects(copy)) >= t,
            timeout_s=60,
            poll_s=0.02,
            group=True,
        )
        proc.communicate(timeout=30)
        _whole_versions_only(copy)  # a copy's manifest is never ahead of its objects

    assert kills >= 2  # killed mid-copy, not after it finished
    before = _objects(copy)
    present = {k for k in before if "/v" in k and not k.endswith("manifest.json")}
    proc = _start(source, copy)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["problems"] == []
    # nothing already copied was sent again: exactly the objects that were not there yet
    assert report["objects_copied"] == total - len(present)
    assert 0 < report["objects_copied"] < total

    assert _whole_versions_only(copy) == len(versions)
    src_keys = {
        i.key
        for i in store.list_prefix("")
        if not i.key.startswith(("_leases/", "_probe/")) and "/_claims/" not in i.key
    }
    dst = open_store(copy, read_only=True)
    assert _objects(copy) == src_keys
    for key in src_keys:
        assert dst.get(key) == store.get(key), key
    assert verify(dst).ok
