"""The data service over an S3 store (moto on loopback): resolve, signed link, Range, sha256."""

from __future__ import annotations

import hashlib

import httpx
from conftest import AUD, CONSORTIUM, build_stage, serving

from pipelines.dataservice.ids import drs_id
from pipelines.publishing import publish
from pipelines.store import open_store

DRS = "/ga4gh/drs/v1"


def test_service_over_s3(s3_bucket, tmp_path, auth_file, issuers):
    store_url = s3_bucket + "/curated"
    publish(
        build_stage(tmp_path / "c", "ds-s3", {"level": "consortium"}, seed=5), open_store(store_url)
    )
    good = issuers[0]
    token = good.token("r9", audience=AUD, visas=[good.visa(CONSORTIUM, subject="r9")])
    auth = {"Authorization": f"Bearer {token}"}
    big = (tmp_path / "c" / "data" / "big.bin").read_bytes()
    with serving(store_url, auth_file, tmp_path, workers=1) as url:
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
