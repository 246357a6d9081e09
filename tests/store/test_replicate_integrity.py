"""`binds replicate` without a read-back (issue 26): every object is still verified after the
copy.  The source's bytes are hashed as they are read (sha256 = the manifest's, else nothing is
written); the PUT to an S3 copy carries their MD5 (Content-MD5) and sha256
(x-amz-checksum-sha256), which S3 and MinIO check against the body they received; the answer
is checked (ETag = MD5 of the stored bytes).  A body altered on its way to the copy's server
is refused or caught, sent again, and never recorded as copied; damage done to the copy
afterwards is what `binds verify` and the fixity sweep find, as before.

moto (the loopback S3 server of these tests) ignores Content-MD5 and checksums (moto/s3/
responses.py: "TODO: AWS computes the provided value and verifies it"), so the wire fault is
a botocore ``before-send`` hook on the copy's client: it flips one byte of the body after the
request was signed, then either answers as S3 does (400 BadDigest, nothing stored) or lets the
altered body through (moto stores it and answers with its MD5)."""

from __future__ import annotations

import base64
import hashlib
import uuid

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.run.publishing import publish
from pipelines.store import open_store
from pipelines.store.replicate import PUT_ATTEMPTS, replicate
from pipelines.store.verify import verify
from tests.store.conftest import build_stage

runner = CliRunner()
BAD_DIGEST = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code><Message>The '
    b"Content-MD5 you specified did not match what we received.</Message></Error>"
)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kw):
        yield self.body


class WireFault:
    """Flips a byte of the first ``times`` PUT bodies of ``victim`` on their way to the server;
    ``server_checks``: answer as S3 does when the body does not match its Content-MD5."""

    def __init__(self, victim: str, *, times: int, server_checks: bool) -> None:
        self.victim, self.left, self.server_checks = victim, times, server_checks
        self.altered = 0

    def __call__(self, request, **_kw):
        if not request.url.split("?")[0].endswith(self.victim) or self.left <= 0:
            return None
        self.left -= 1
        self.altered += 1
        raw = request.body  # bytes, or a file object botocore reads the body from
        body = bytearray(raw if isinstance(raw, bytes | bytearray) else raw.read())
        body[len(body) // 2] ^= 0x10
        request.body = bytes(body)
        sent_md5 = request.headers["Content-MD5"]
        sent_md5 = sent_md5.decode() if isinstance(sent_md5, bytes) else sent_md5
        got_md5 = base64.b64encode(hashlib.md5(bytes(body)).digest()).decode()
        if self.server_checks and got_md5 != sent_md5:
            return AWSResponse(request.url, 400, {}, _Raw(BAD_DIGEST))
        return None  # the altered body goes on: moto stores it


@pytest.fixture
def primary_and_s3_copy(request, tmp_path):
    primary = str(tmp_path / "primary")
    store = open_store(primary)
    publish(build_stage(tmp_path / "s0", seed=0, n_chunks=6, dataset_id="ds-0"), store)
    publish(build_stage(tmp_path / "s1", seed=1, n_chunks=6, dataset_id="ds-1"), store)
    endpoint = request.getfixturevalue("s3_endpoint")
    request.getfixturevalue("s3_bucket")  # sets BINDS_S3_ENDPOINT_URL for open_store
    bucket = f"copy-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return primary, f"s3://{bucket}/replica"


def _victim(primary: str) -> tuple[str, str]:
    """(key of one data object of ds-0 v1, its version prefix)."""
    store = open_store(primary, read_only=True)
    prefix = "consortium/screening/ds-0/v1/"
    key = next(i.key for i in store.list_prefix(prefix + "data/") if not i.key.endswith("/"))
    return key, prefix


@pytest.mark.parametrize("server_checks", [True, False], ids=["bad-digest", "etag"])
def test_a_body_altered_on_the_way_is_sent_again(primary_and_s3_copy, server_checks):
    primary, copy = primary_and_s3_copy
    victim, _ = _victim(primary)
    dest = open_store(copy)
    fault = WireFault(victim, times=1, server_checks=server_checks)
    dest.client.meta.events.register("before-send.s3.PutObject", fault)

    report = replicate(open_store(primary, read_only=True), dest)
    assert fault.altered == 1 and report.objects_resent == 1
    assert report.ok, report.problems
    assert report.versions_copied == 2
    copied = open_store(copy, read_only=True)
    assert copied.get(victim) == open_store(primary).get(victim)
    assert verify(copied).ok


@pytest.mark.parametrize("server_checks", [True, False], ids=["bad-digest", "etag"])
def test_a_copy_that_keeps_failing_is_reported_and_never_committed(
    primary_and_s3_copy, server_checks
):
    primary, copy = primary_and_s3_copy
    victim, prefix = _victim(primary)
    dest = open_store(copy)
    fault = WireFault(victim, times=10**6, server_checks=server_checks)
    dest.client.meta.events.register("before-send.s3.PutObject", fault)

    report = replicate(open_store(primary, read_only=True), dest)
    assert fault.altered == PUT_ATTEMPTS and report.objects_resent == PUT_ATTEMPTS - 1
    assert not report.ok and report.versions_copied == 1
    assert any(victim in p and "did not receive the bytes sent" in p for p in report.problems)
    assert any(p.startswith(prefix + ": not committed") for p in report.problems)
    copied = open_store(copy, read_only=True)
    assert not copied.exists(prefix + "manifest.json")  # never recorded as copied
    if server_checks:
        assert not copied.exists(victim)  # the server refused every attempt
    else:  # moto kept the altered bytes: present, uncommitted, and not trusted
        assert copied.get(victim) != open_store(primary).get(victim)

    # the wire is fixed: the next run finds the object wrong (read back), sends it again
    again = replicate(open_store(primary, read_only=True), open_store(copy))
    assert again.ok, again.problems
    assert again.versions_copied == 1 and again.versions_present == 1
    assert copied.get(victim) == open_store(primary).get(victim)
    assert verify(open_store(copy, read_only=True)).ok


def test_damage_to_the_copy_afterwards_is_found_by_verify_and_the_sweep(primary_and_s3_copy):
    primary, copy = primary_and_s3_copy
    assert replicate(open_store(primary, read_only=True), open_store(copy)).ok
    victim, _ = _victim(primary)
    store = open_store(copy)
    data = store.get(victim)
    store.put(victim, data[:5] + bytes([data[5] ^ 0x01]) + data[6:])

    assert not verify(open_store(copy, read_only=True)).ok
    checked = runner.invoke(app, ["verify", "--store", copy])
    assert checked.exit_code == 1 and victim in checked.output, checked.output
    swept = runner.invoke(app, ["verify", "--sweep", "--store", copy])
    assert swept.exit_code == 1 and f"damaged: {victim}" in swept.output, swept.output


def test_read_back_and_a_folder_copy(tmp_path):
    """--read-back reads every copied object back; a folder copy is verified either way."""
    primary = str(tmp_path / "primary")
    publish(
        build_stage(tmp_path / "s0", seed=0, n_chunks=4, dataset_id="ds-0"), open_store(primary)
    )
    for copy, extra in ((tmp_path / "c1", []), (tmp_path / "c2", ["--read-back"])):
        out = runner.invoke(app, ["replicate", "--from", primary, "--to", str(copy), *extra])
        assert out.exit_code == 0, out.output
        assert verify(open_store(str(copy), read_only=True)).ok
