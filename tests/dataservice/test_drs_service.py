"""binds serve-data: GA4GH DRS 1.5 over a published store, with real tokens (RS256 and
ES256 JWTs made here), the real uvicorn service on a loopback port, every JSON answer
validated against the DRS OpenAPI schemas, and the audit chain checked."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import time

import httpx
import pytest
from drs_schemas import validate
from drs_testing import AUD, BINDS, CONSORTIUM, DATASET_PREFIX, DATASETS, ISS

from pipelines.access.ids import drs_id, parse_drs_id
from pipelines.dataservice import audit
from pipelines.dataservice.policy import ANONYMOUS, Caller, decide, load_auth

DRS = "/ga4gh/drs/v1"
FILE = "data/wells.parquet"


def _callers(issuers, dataset_id: str) -> dict[str, dict]:
    """Request kwargs (headers / passports) of each kind of caller, for ``dataset_id``."""
    good, es, forger = issuers
    sub = "researcher-7f3a"

    def bearer(tok):
        return {"headers": {"Authorization": f"Bearer {tok}"}}

    cons = good.visa(CONSORTIUM, subject=sub)
    ds = es.visa(DATASET_PREFIX + dataset_id, subject=sub)  # visas from the second issuer
    tampered = good.token(sub, audience=AUD, visas=[ds])
    head, payload, sig = tampered.split(".")
    return {
        "anonymous": {},
        "token without visa": bearer(good.token(sub, audience=AUD)),
        "consortium visa": bearer(good.token(sub, audience=AUD, visas=[cons])),
        "dataset visa": bearer(good.token(sub, audience=AUD, visas=[ds])),
        "expired visa": bearer(
            good.token(
                sub,
                audience=AUD,
                visas=[
                    good.visa(CONSORTIUM, subject=sub, seconds=-120),
                    es.visa(DATASET_PREFIX + dataset_id, subject=sub, seconds=-120),
                ],
            )
        ),
        "visa not by dac": bearer(
            good.token(sub, audience=AUD, visas=[good.visa(CONSORTIUM, subject=sub, by="self")])
        ),
        "visa from unlisted issuer": bearer(
            good.token(
                sub,
                audience=AUD,
                visas=[forger.visa(DATASET_PREFIX + dataset_id, subject=sub)],
            )
        ),
        "token from unlisted issuer": bearer(forger.token(sub, audience=AUD, visas=[ds])),
        "wrong audience": bearer(good.token(sub, audience="other-service", visas=[ds])),
        "expired token": bearer(good.token(sub, audience=AUD, visas=[ds], seconds=-120)),
        "tampered signature": bearer(f"{head}.{payload}.{sig[:-6]}AAAAAA"),
        "passport POSTed": {"passports": [es.token(sub, audience=None, visas=[cons])]},
    }


# caller -> status for open, consortium, restricted, embargoed
MATRIX = {
    "anonymous": (200, 401, 404, 404),
    "token without visa": (200, 403, 404, 404),
    "consortium visa": (200, 200, 404, 404),
    "dataset visa": (200, 200, 200, 200),
    "expired visa": (200, 403, 404, 404),
    "visa not by dac": (200, 403, 404, 404),
    "visa from unlisted issuer": (200, 403, 404, 404),
    "token from unlisted issuer": (401, 401, 401, 401),
    "wrong audience": (401, 401, 401, 401),
    "expired token": (401, 401, 401, 401),
    "tampered signature": (401, 401, 401, 401),
    "passport POSTed": (200, 200, 404, 404),
}
LEVELS = ("open", "consortium", "restricted", "embargoed")


def _ask(base: str, method: str, path: str, caller: dict) -> httpx.Response:
    headers = caller.get("headers", {})
    if "passports" in caller or method == "POST":
        return httpx.post(
            base + path, headers=headers, json={"passports": caller.get("passports", [])}
        )
    return httpx.request(method, base + path, headers=headers)


@pytest.mark.parametrize("who", list(MATRIX))
def test_level_by_grant_matrix(service, issuers, who):
    """GET /objects/{id} and /access for each caller and level; a POSTed passport via POST."""
    for level, expected in zip(LEVELS, MATRIX[who], strict=True):
        dataset_id = DATASETS[level][0]
        caller = _callers(issuers, dataset_id)[who]
        oid = drs_id(dataset_id, 1, FILE)
        method = "POST" if "passports" in caller else "GET"
        got = _ask(service, method, f"{DRS}/objects/{oid}", caller)
        assert got.status_code == expected, (who, level, got.status_code, got.text)
        acc = _ask(service, method, f"{DRS}/objects/{oid}/access/https", caller)
        assert acc.status_code == expected, (who, level, "access", acc.status_code)
        body = got.json()
        if expected == 200:
            validate("200OkDrsObject", body)
            validate("200OkAccess", acc.json())
            assert body["checksums"][0]["type"] == "sha-256" and body["size"] > 0
        else:
            validate(
                {401: "401Unauthorized", 403: "403Forbidden", 404: "404NotFoundDrsObject"}[
                    expected
                ],
                body,
            )
            assert "Secret title" not in got.text and dataset_id not in got.text
        if expected == 401:
            assert got.headers["www-authenticate"].startswith("Bearer")


def test_no_existence_oracle(service, issuers):
    """A refused restricted or embargoed id answers exactly like an id that does not exist."""
    for who in ("anonymous", "token without visa", "consortium visa"):
        for level in ("restricted", "embargoed"):
            caller = _callers(issuers, DATASETS[level][0])[who]
            real = _ask(
                service, "GET", f"{DRS}/objects/{drs_id(DATASETS[level][0], 1, FILE)}", caller
            )
            fake = _ask(service, "GET", f"{DRS}/objects/{drs_id('ds-never-was', 1, FILE)}", caller)
            real_b = _ask(service, "GET", f"{DRS}/objects/{drs_id(DATASETS[level][0], 1)}", caller)
            assert (real.status_code, real.content) == (fake.status_code, fake.content)
            assert (real_b.status_code, real_b.content) == (fake.status_code, fake.content)
            opt_real = httpx.options(service + f"{DRS}/objects/{drs_id(DATASETS[level][0], 1)}")
            opt_fake = httpx.options(service + f"{DRS}/objects/{drs_id('ds-never-was', 1)}")
            assert opt_real.status_code == opt_fake.status_code == 200
            assert opt_real.json()["supported_types"] == opt_fake.json()["supported_types"]
    opened = httpx.options(service + f"{DRS}/objects/{drs_id('ds-open', 1, FILE)}").json()
    validate("200OkAuthorizations", opened)
    assert "None" in opened["supported_types"] and ISS in opened["bearer_auth_issuers"]


def test_bundle_service_info_and_bulk(service, issuers, data_store):
    caller = _callers(issuers, "ds-restricted")["dataset visa"]
    bundle = httpx.get(service + f"{DRS}/objects/{drs_id('ds-restricted', 1)}", **caller).json()
    validate("200OkDrsObject", bundle)
    manifest = json.loads(
        (data_store / "restricted/screening/ds-restricted/v1/manifest.json").read_text()
    )
    shas = [f["sha256"] for f in manifest["files"] + [manifest["metadata"]] + manifest["documents"]]
    # the DRS bundle checksum: sha-256 of the sorted concatenated sha-256s of its contents
    assert (
        bundle["checksums"][0]["checksum"]
        == hashlib.sha256("".join(sorted(shas)).encode()).hexdigest()
    )
    assert len(bundle["contents"]) == len(shas) and bundle["size"] == sum(
        f["size"] for f in manifest["files"] + [manifest["metadata"]] + manifest["documents"]
    )
    assert {parse_drs_id(c["id"]).path for c in bundle["contents"]} >= {FILE, "metadata.jsonld"}

    info = httpx.get(service + f"{DRS}/service-info").json()
    validate("200ServiceInfo", info)
    assert info["type"]["artifact"] == "drs" and info["drs"]["objectCount"] == len(
        shas
    )  # open only
    full = httpx.get(
        service + f"{DRS}/service-info", **_callers(issuers, "x")["consortium visa"]
    ).json()
    assert (
        full["drs"]["objectCount"] == 2 * len(shas)
        and full["drs"]["totalObjectSize"] > info["drs"]["totalObjectSize"]
    )

    ids = [drs_id(d, 1, FILE) for d, _ in DATASETS.values()] + [drs_id("nope", 1)]
    bulk = httpx.post(service + f"{DRS}/objects", json={"bulk_object_ids": ids}, **caller)
    validate("200OkDrsObjects", bulk.json())
    summary = bulk.json()["summary"]
    assert (summary["resolved"], summary["unresolved"]) == (2, 3)  # open + restricted (its visa)
    acc = httpx.post(
        service + f"{DRS}/objects/access",
        json={
            "bulk_object_access_ids": [
                {"bulk_object_id": i, "bulk_access_ids": ["https"]} for i in ids
            ]
        },
        **caller,
    )
    validate("200OkAccesses", acc.json())
    assert acc.json()["summary"]["resolved"] == 2
    opts = httpx.request("OPTIONS", service + f"{DRS}/objects", json={"bulk_object_ids": ids})
    validate("200OkBulkAuthorizations", opts.json())
    too_many = httpx.post(service + f"{DRS}/objects", json={"bulk_object_ids": ["a"] * 201})
    assert too_many.status_code == 413
    validate("413RequestTooLarge", too_many.json())


def test_signed_links_range_and_sha256(service, issuers, data_store):
    caller = _callers(issuers, "ds-restricted")["dataset visa"]
    oid = drs_id("ds-restricted", 1, "data/big.bin")
    obj = httpx.get(service + f"{DRS}/objects/{oid}", **caller).json()
    url = httpx.get(service + f"{DRS}/objects/{oid}/access/https", **caller).json()["url"]
    h = hashlib.sha256()
    with httpx.stream("GET", url) as r:
        assert r.status_code == 200 and r.headers["accept-ranges"] == "bytes"
        for chunk in r.iter_bytes():
            h.update(chunk)
    assert h.hexdigest() == obj["checksums"][0]["checksum"]
    whole = (data_store / "restricted/screening/ds-restricted/v1/data/big.bin").read_bytes()
    part = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == whole[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(whole)}"
    assert httpx.get(url, headers={"Range": "bytes=-10"}).content == whole[-10:]
    assert httpx.get(url, headers={"Range": f"bytes={len(whole)}-"}).status_code == 416
    # the link opens this object only: another path under it is refused
    assert httpx.get(url + "/data/wells.parquet").status_code == 404
    # altered: one character of the payload (it names the object) or of the mac
    token = url.rsplit("/", 1)[-1]
    payload, mac = token.split(".")
    for bad in (
        payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + mac,
        payload + "." + mac[::-1],
    ):
        assert httpx.get(url.replace(token, bad)).status_code == 403
    time.sleep(3.1)  # link_seconds: 2 in the test auth file
    expired = httpx.get(url)
    assert expired.status_code == 403 and expired.json()["msg"] == "invalid or expired link"


def test_catalog_shows_only_what_the_caller_may_read(service, issuers):
    anon = httpx.get(service + "/catalog").json()
    assert [r["dataset_id"] for r in anon] == ["ds-open"]
    assert anon[0]["drs_id"] == drs_id("ds-open", 1)
    cons = httpx.get(service + "/catalog", **_callers(issuers, "x")["consortium visa"])
    assert "Secret title of ds-restricted" not in cons.text and "ds-embargoed" not in cons.text
    assert sorted(r["dataset_id"] for r in cons.json()) == ["ds-consortium", "ds-open"]
    import io

    import pyarrow.parquet as pq

    pq_body = httpx.get(
        service + "/catalog?format=parquet&where=dataset_id=ds-restricted",
        **_callers(issuers, "ds-restricted")["dataset visa"],
    )
    table = pq.read_table(io.BytesIO(pq_body.content))
    assert (
        table.column("dataset_id").to_pylist() == ["ds-restricted"]
        and "drs_id" in table.column_names
    )
    assert (
        httpx.get(service + "/catalog", **_callers(issuers, "x")["wrong audience"]).status_code
        == 401
    )


def test_audit_trail_is_chained_and_a_break_is_reported(service, issuers, auth_file, tmp_path):
    caller = _callers(issuers, "ds-consortium")["consortium visa"]
    oid = drs_id("ds-consortium", 1, FILE)
    # three lines at least, whichever tests of the session's service ran before this one (the
    # break is planted in the third)
    httpx.get(service + f"{DRS}/objects/{oid}", **caller)
    httpx.get(service + f"{DRS}/objects/{oid}", **caller)
    httpx.get(service + f"{DRS}/objects/{drs_id('ds-restricted', 1)}", **caller)
    cfg = load_auth(auth_file)
    entries = list(audit.read_entries(cfg.audit))
    last = [e for e in entries if e["object"] in (oid, drs_id("ds-restricted", 1))][-2:]
    assert [(e["outcome"], e["status"], e["subject"], e["issuer"], e["action"]) for e in last] == [
        ("allow", 200, "researcher-7f3a", ISS, "resolve"),
        ("deny", 404, "researcher-7f3a", ISS, "resolve"),
    ]
    ok = subprocess.run(
        [BINDS, "audit", "verify", "--auth", str(auth_file)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stderr
    shown = subprocess.run(
        [BINDS, "audit", "show", "--auth", str(auth_file), "--dataset", "ds-consortium"],
        capture_output=True,
        text=True,
    )
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("seq,time,subject") and all(
        "ds-consortium" in ln for ln in lines[1:]
    )
    # a copy of the log with one line changed: the break is found, and the file left as it was
    copy = tmp_path / "auth.yaml"
    text = auth_file.read_text().replace("audit: audit", f"audit: {tmp_path / 'audit'}")
    copy.write_text(text.replace("keys/", f"{auth_file.parent}/keys/"))
    (tmp_path / "audit").mkdir()
    raw = (auth_file.parent / "audit" / "audit.jsonl").read_text().splitlines()
    raw[2] = (
        raw[2].replace('"deny"', '"allow"')
        if '"deny"' in raw[2]
        else raw[2].replace('"allow"', '"deny"')
    )
    (tmp_path / "audit" / "audit.jsonl").write_text("\n".join(raw) + "\n")
    broken = subprocess.run(
        [BINDS, "audit", "verify", "--auth", str(copy)], capture_output=True, text=True
    )
    assert broken.returncode == 1 and "line 3" in broken.stderr, broken.stderr
    assert (tmp_path / "audit" / "audit.jsonl").read_text().splitlines()[2] == raw[2]


@pytest.mark.parametrize(
    ("caller", "level", "embargo", "allowed", "status"),
    [
        (ANONYMOUS, "open", None, True, 200),
        (ANONYMOUS, "consortium", None, False, 401),
        (ANONYMOUS, "restricted", None, False, 404),
        (Caller("u", ISS), "consortium", None, False, 403),
        (Caller("u", ISS, frozenset({CONSORTIUM})), "consortium", None, True, 200),
        (Caller("u", ISS, frozenset({CONSORTIUM})), "restricted", None, False, 404),
        (Caller("u", ISS, frozenset({DATASET_PREFIX + "d"})), "restricted", None, True, 200),
        (Caller("u", ISS, frozenset({DATASET_PREFIX + "other"})), "restricted", None, False, 404),
        (ANONYMOUS, "open", dt.date(2099, 1, 1), False, 404),
        (Caller("u", ISS, frozenset({CONSORTIUM})), "consortium", dt.date(2099, 1, 1), False, 404),
        (
            Caller("u", ISS, frozenset({DATASET_PREFIX + "d"})),
            "open",
            dt.date(2099, 1, 1),
            True,
            200,
        ),
        (ANONYMOUS, "open", dt.date(2000, 1, 1), True, 200),  # embargo over
    ],
)
def test_decide_table(auth_file, caller, level, embargo, allowed, status):
    """The one decision function, table-driven (CanDIG style)."""
    d = decide(load_auth(auth_file), caller, level=level, dataset_id="d", embargo_until=embargo)
    assert (d.allowed, d.status) == (allowed, status)


def test_ids_round_trip():
    for text in ("ds-open@v1", "ds-open@v12/data/map.ome.zarr/0/c/1/2", "a.b_c@v3/x y.txt"):
        dataset, rest = text.split("@v", 1)
        version, _, path = rest.partition("/")
        oid = drs_id(dataset, int(version), path or None)
        assert oid.replace("-", "").replace("_", "").isalnum() and parse_drs_id(oid).text == text
    assert parse_drs_id("not/an id") is None and parse_drs_id(drs_id("d", 1) + "x") is None
    assert parse_drs_id(drs_id("d", 1, "../etc/passwd")) is None


def test_data_use_codes_are_checked_published_and_named(service, issuers, data_store):
    from pipelines.describe.metadata import validate_experiment

    caller = _callers(issuers, "x")["consortium visa"]
    obj = httpx.get(service + f"{DRS}/objects/{drs_id('ds-consortium', 1, FILE)}", **caller).json()
    assert "data use: DUO:0000042, DUO:0000019" in obj["description"]
    row = next(
        r
        for r in httpx.get(service + "/catalog", **caller).json()
        if r["dataset_id"] == "ds-consortium"
    )
    assert row["data_use"] == ["DUO:0000042", "DUO:0000019"]
    doc = json.loads(
        (data_store / "consortium/screening/ds-consortium/v1/metadata.jsonld").read_text()
    )
    assert doc["binds:dataUse"] == [
        "http://purl.obolibrary.org/obo/DUO_0000042",
        "http://purl.obolibrary.org/obo/DUO_0000019",
    ]
    exp = json.loads((data_store.parent / "consortium" / "_meta" / "experiment.json").read_text())
    for bad, what in (
        ("DUO:9999999", "not a known Data Use Ontology term"),
        ("GRU", "not allowed here"),
    ):
        exp["access"]["data_use"] = [bad]
        problems, _ = validate_experiment(exp, file="experiment.yaml")
        assert any(what in str(p) and "data_use" in str(p) for p in problems), problems


def test_every_decision_is_one_audit_line(service, issuers, auth_file):
    cfg = load_auth(auth_file)
    before = len(list(audit.read_entries(cfg.audit)))
    calls = _callers(issuers, "ds-restricted")
    asked = [
        ("GET", f"{DRS}/objects/{drs_id('ds-open', 1, FILE)}", calls["anonymous"]),
        ("GET", f"{DRS}/objects/{drs_id('ds-restricted', 1, FILE)}", calls["token without visa"]),
        (
            "GET",
            f"{DRS}/objects/{drs_id('ds-restricted', 1, FILE)}/access/https",
            calls["dataset visa"],
        ),
        ("GET", f"{DRS}/objects/{drs_id('ds-open', 1)}", calls["tampered signature"]),
        ("GET", "/catalog", calls["consortium visa"]),
    ]
    for method, path, caller in asked:
        _ask(service, method, path, caller)
    new = list(audit.read_entries(cfg.audit))[before:]
    assert len(new) == len(asked)
    assert sorted((e["action"], e["status"]) for e in new) == sorted(
        [("resolve", 200), ("resolve", 404), ("access", 200), ("resolve", 401), ("catalog", 200)]
    )
    assert audit.verify(cfg.audit).ok


def test_a_cached_caller_does_not_outlive_its_visa(auth_file, issuers, monkeypatch):
    from pipelines.dataservice import policy

    monkeypatch.setattr(policy, "LEEWAY_S", 0)
    good = issuers[0]
    token = good.token("u", audience=AUD, visas=[good.visa(CONSORTIUM, subject="u", seconds=2)])
    cfg = load_auth(auth_file)
    assert CONSORTIUM in policy.authenticate(cfg, token).grants
    assert CONSORTIUM in policy.authenticate(cfg, token).grants  # from the cache
    time.sleep(2.5)
    assert policy.authenticate(cfg, token).grants == frozenset()


def test_bad_auth_file_exits_2_with_problem_lines(tmp_path, data_store):
    bad = tmp_path / "auth.yaml"
    bad.write_text(
        "issuers: [{iss: https://x, jwks: missing.json}]\naudience: 3\nlink_seconds: 0\n"
    )
    out = subprocess.run(
        [BINDS, "serve-data", "--store", str(data_store), "--auth", str(bad), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"{bad}: issuers[0].jwks: cannot read the JWKS" in out.stderr
    assert f"{bad}: link_seconds: must be 1..86400 seconds" in out.stderr
    assert "serving" not in out.stderr  # refused before anything listens


def _replication_of(url: str) -> dict:
    """/health's replication status once its first count is done."""
    deadline = time.monotonic() + 120
    while True:
        answer = httpx.get(url + "/health", timeout=5)
        assert answer.status_code == 200, answer.text  # answered at once, whatever the copy
        status = answer.json()["replication"]
        if status.get("copy") != "checking":
            return status
        assert time.monotonic() < deadline, "the lag was never counted"
        time.sleep(0.2)


def test_health_reports_the_replication_lag_of_the_preservation_copy(
    data_store, auth_file, tmp_path, monkeypatch
):
    """Issue 26: "the lag (versions not yet copied) is reported by binds verify and the
    service".  `binds serve-data --replica URL`: /health counts the committed versions the copy
    lacks (no names: /health answers without a token), 0 once `binds replicate` ran; a copy
    that cannot be read is a status, never a failure of the service."""
    from drs_testing import serving

    from pipelines.orchestrate.monitoring import free_port
    from pipelines.store import open_store
    from pipelines.store.replicate import replicate

    copy = tmp_path / "copy"
    committed = len(DATASETS)  # one version each, the embargoed one held (copied too)
    extra = ("--replica", str(copy))
    with serving(str(data_store), auth_file, tmp_path, workers=1, extra=extra) as url:
        lag = _replication_of(url)
        assert lag["versions_behind"] == committed and lag["oldest_behind_hours"] >= 0
        body = httpx.get(url + "/health").text
    assert not any(d in body for d, _access in DATASETS.values())
    assert replicate(open_store(data_store), open_store(copy)).ok
    with serving(str(data_store), auth_file, tmp_path, workers=1, extra=extra) as url:
        assert _replication_of(url)["versions_behind"] == 0
    # an S3 copy whose endpoint refuses connections
    monkeypatch.setenv("BINDS_COPY_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "binds-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "binds-test-secret")
    monkeypatch.setenv("BINDS_S3_MAX_ATTEMPTS", "1")  # refused at once, not after 8 retries
    unreachable = ("--replica", "s3://binds-copy/x")
    with serving(str(data_store), auth_file, tmp_path, workers=1, extra=unreachable) as url:
        assert _replication_of(url)["copy"] == "unreachable"
