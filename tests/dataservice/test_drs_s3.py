"""The data service over an S3 store (moto on loopback): resolve, signed link, Range, sha256."""

from __future__ import annotations

import hashlib
import json

import httpx
from drs_testing import AUD, CONSORTIUM, build_stage, serving

from pipelines.access.ids import drs_id
from pipelines.dataservice import audit
from pipelines.run.publishing import publish
from pipelines.store import open_store

DRS = "/ga4gh/drs/v1"


def test_service_over_s3(s3_bucket, tmp_path, auth_file, issuers):
    """The store and the audit log on S3; two workers append to one chain."""
    store_url = s3_bucket + "/curated"
    s3_auth = tmp_path / "auth.yaml"
    s3_auth.write_text(
        auth_file.read_text()
        .replace("audit: audit", f"audit: {s3_bucket}/audit")
        .replace("keys/", f"{auth_file.parent}/keys/")
    )
    publish(
        build_stage(tmp_path / "c", "ds-s3", {"level": "consortium"}, seed=5), open_store(store_url)
    )
    good = issuers[0]
    token = good.token("r9", audience=AUD, visas=[good.visa(CONSORTIUM, subject="r9")])
    auth = {"Authorization": f"Bearer {token}"}
    big = (tmp_path / "c" / "data" / "big.bin").read_bytes()
    with serving(store_url, s3_auth, tmp_path, workers=2) as url:
        oid = drs_id("ds-s3", 1, "data/big.bin")
        assert httpx.get(f"{url}{DRS}/objects/{oid}").status_code == 401
        obj = httpx.get(f"{url}{DRS}/objects/{oid}", headers=auth).json()
        assert (
            obj["size"] == len(big)
            and obj["checksums"][0]["checksum"] == hashlib.sha256(big).hexdigest()
        )
        link = httpx.get(f"{url}{DRS}/objects/{oid}/access/https", headers=auth).json()["url"]
        assert (
            hashlib.sha256(httpx.get(link).content).hexdigest() == obj["checksums"][0]["checksum"]
        )
        part = httpx.get(link, headers={"Range": "bytes=2000000-2100000"})
        assert part.status_code == 206 and part.content == big[2000000:2100001]
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        for _ in range(6):  # several requests: both workers write lines
            httpx.get(f"{url}{DRS}/objects/{oid}", headers=auth)
    report = audit.verify(f"{s3_bucket}/audit")
    entries = list(audit.read_entries(f"{s3_bucket}/audit"))
    assert report.ok and report.lines == len(entries) >= 10, report
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert {(e["action"], e["status"]) for e in entries} >= {
        ("resolve", 401),
        ("resolve", 200),
        ("bytes", 206),
    }
    # a planted break: line 3 rewritten
    logs = open_store(f"{s3_bucket}/audit")
    third = json.loads(logs.get("000000000003.jsonl"))
    logs.put("000000000003.jsonl", json.dumps({**third, "subject": "someone-else"}).encode())
    broken = audit.verify(f"{s3_bucket}/audit")
    assert (broken.ok, broken.broken_at) == (False, 3)
