"""`binds policy` on a loopback S3 that enforces IAM (moto server, auth on): users holding
exactly the printed policies can do what their role allows, and nothing else (issue #23).

moto evaluates Action and Resource of IAM policies but not the ``s3:prefix`` condition of
ListBucket (it only knows ``StringEquals`` on ``sts:ExternalId``, and turns any unmet condition
of an Allow into a Deny). :func:`_evaluate_s3_prefix` teaches it AWS's rule for that one key:
the request's ``prefix=`` is ``s3:prefix``, ``StringLike`` / ``StringEquals`` compare it, and an
Allow whose condition does not hold simply does not apply.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import threading
import uuid
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from binds_testing import run_stage
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.modalities import get as get_modality
from pipelines.run.publishing import publish
from pipelines.store.policy import ROLES, policies
from pipelines.store.s3 import S3Store
from pipelines.toolkit.stage import StagedDataset

LEVELS = ("open", "consortium", "restricted")
_ctx = threading.local()


def _conditions_hold(cond: dict, values: dict) -> bool:
    for op, keys in cond.items():
        for key, patterns in keys.items():
            patterns = [patterns] if isinstance(patterns, str) else patterns
            value = values.get(key)
            if value is None:
                return False
            if op == "StringLike" and not any(fnmatch.fnmatchcase(value, p) for p in patterns):
                return False
            if op == "StringEquals" and value not in patterns:
                return False
            if op not in ("StringLike", "StringEquals"):
                raise AssertionError(f"condition {op} not evaluated by this test")
    return True


@pytest.fixture(scope="module")
def _evaluate_s3_prefix():
    from moto.iam import access_control as ac

    orig_stmt = ac.IAMPolicyStatement.is_action_permitted
    orig_check = ac.S3IAMRequest.check_action_permitted

    def stmt(self, action, resource="*", principal=None, incoming=None):
        cond = self._statement.get("Condition")
        values = getattr(_ctx, "values", None)
        if cond and values is not None:
            if not ac.IAMPolicyStatement(
                {**self._statement, "Condition": {}}
            )._check_element_matches("Action", action):
                return ac.PermissionResult.NEUTRAL
            if not _conditions_hold(cond, values):
                return ac.PermissionResult.NEUTRAL
            self = ac.IAMPolicyStatement(
                {k: v for k, v in self._statement.items() if k != "Condition"}
            )
        return orig_stmt(self, action, resource, principal, incoming)

    def check(self, resource):
        query = parse_qs(urlparse(self._path).query, keep_blank_values=True)
        _ctx.values = {"s3:prefix": query["prefix"][0]} if "prefix" in query else {}
        try:
            return orig_check(self, resource)
        finally:
            _ctx.values = None

    ac.IAMPolicyStatement.is_action_permitted = stmt
    ac.S3IAMRequest.check_action_permitted = check
    yield
    ac.IAMPolicyStatement.is_action_permitted = orig_stmt
    ac.S3IAMRequest.check_action_permitted = orig_check


@pytest.fixture(scope="module")
def iam_store(tmp_path_factory, _evaluate_s3_prefix):
    """A bucket, one IAM user per role holding exactly `binds policy`'s IAM policy, and three
    datasets (one per level) published by the curator. Auth is on while the tests run."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin = dict(
        endpoint_url=endpoint,
        aws_access_key_id="admin",
        aws_secret_access_key="admin",
        region_name="us-east-1",
    )
    bucket = f"iam-{uuid.uuid4().hex[:8]}"
    url = f"s3://{bucket}/unit-a"
    boto3.client("s3", **admin).create_bucket(Bucket=bucket)
    iam = boto3.client("iam", **admin)
    keys = {}
    for role, doc in policies(url).items():
        iam.create_user(UserName=role)
        iam.put_user_policy(
            UserName=role, PolicyName="binds", PolicyDocument=json.dumps(doc["iam"])
        )
        k = iam.create_access_key(UserName=role)["AccessKey"]
        keys[role] = {
            "AWS_ACCESS_KEY_ID": k["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": k["SecretAccessKey"],
        }
    previous = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from here on every request is checked
    ActionAuthenticatorMixin.request_count = 0
    base = tmp_path_factory.mktemp("iam")
    stage = _screening_stage(base)
    ctx = {"endpoint": endpoint, "bucket": bucket, "url": url, "keys": keys, "base": base}
    ctx["stages"] = {lvl: _stage_at(stage, base, lvl) for lvl in LEVELS}
    ctx["ids"] = {}
    with _as(ctx, "curator"):
        for lvl in LEVELS:
            ctx["ids"][lvl] = publish(StagedDataset(ctx["stages"][lvl]), S3Store(url)).dataset_id
    yield ctx
    settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
    server.stop()


def _screening_stage(base):
    run = get_modality("screening").make_demo_run(base / "run")
    return run_stage(run, base / "work").root


def _stage_at(stage, base, level: str):
    """A copy of the staged screening dataset published as another dataset at ``level``."""
    dest = base / f"stage-{level}"
    shutil.copytree(stage, dest, symlinks=True)
    exp_path = dest / "_meta" / "experiment.json"
    exp = json.loads(exp_path.read_text())
    n = LEVELS.index(level) + 1
    exp["request_id"] = f"BINDS-2026-77{n:02d}"
    exp.pop("dataset_id", None)
    exp["access"] = {**exp.get("access", {}), "level": level}
    exp_path.write_text(json.dumps(exp))
    return dest


class _as:
    """Environment of one role's user (credentials + the loopback endpoint)."""

    def __init__(self, ctx, role: str) -> None:
        self.env = dict(
            ctx["keys"][role],
            BINDS_S3_ENDPOINT_URL=ctx["endpoint"],
            AWS_ENDPOINT_URL=ctx["endpoint"],
            AWS_DEFAULT_REGION="us-east-1",
        )

    def __enter__(self):
        import os

        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        return self.env

    def __exit__(self, *exc):
        import os

        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _client(ctx, role):
    k = ctx["keys"][role]
    return boto3.client(
        "s3",
        endpoint_url=ctx["endpoint"],
        aws_access_key_id=k["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=k["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


# what each role may do, written from the roles' definitions (README, Access levels), not from
# the policy code: reads per level, writes per level
READS = {
    "reader-open": {"open"},
    "reader-consortium": {"open", "consortium"},
    "reader-all": set(LEVELS) | {"_embargo"},
    "publisher-open": {"open", "_embargo/open", "_registry", "_leases"},
    "publisher-consortium": {"consortium", "_embargo/consortium", "_registry", "_leases"},
    "publisher-restricted": {"restricted", "_embargo/restricted", "_registry", "_leases"},
    "curator": set(LEVELS) | {"_embargo", "_registry", "_leases"},
    "service": set(LEVELS) | {"_embargo", "_registry", "_leases"},
}
WRITES = {
    "publisher-open": {"open", "_embargo/open", "_registry", "_leases"},
    "publisher-consortium": {"consortium", "_embargo/consortium", "_registry", "_leases"},
    "publisher-restricted": {"restricted", "_embargo/restricted", "_registry", "_leases"},
    "curator": set(LEVELS) | {"_embargo", "_registry", "_leases"},
    "service": set(LEVELS) | {f"_embargo/{lvl}" for lvl in LEVELS} | {"_registry", "_leases"},
}
#: read/written by exact key only (hashes of dataset ids): nobody but the curator lists them
UNLISTED = {"_registry", "_leases"}
#: deleting a committed object (a manifest): only the curator
DELETES_COMMITTED = {"curator"}
PLACES = (*LEVELS, "_embargo", *(f"_embargo/{lvl}" for lvl in LEVELS), "_registry", "_leases")


def _in(place: str, granted: set[str]) -> bool:
    """``place`` is one of ``granted`` or below one of them."""
    return any(place == g or place.startswith(g + "/") for g in granted)


def _allowed(call, **kwargs) -> bool:
    try:
        call(**kwargs)
        return True
    except ClientError as err:
        code = err.response["Error"]["Code"]
        if code in ("NoSuchKey", "404"):
            return True  # permitted, just absent
        assert code in ("AccessDenied", "403"), err
        return False


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_every_role_can_do_exactly_what_it_is_granted(iam_store, role):
    ctx = iam_store
    s3 = _client(ctx, role)
    b, p = ctx["bucket"], "unit-a/"
    got, want = {}, {}
    for place in PLACES:
        key = f"{p}{place}/x-{role}-{uuid.uuid4().hex[:6]}.json"
        got[f"list {place}"] = _allowed(s3.list_objects_v2, Bucket=b, Prefix=f"{p}{place}/")
        want[f"list {place}"] = _in(place, READS[role] | WRITES.get(role, set())) and (
            place not in UNLISTED or role == "curator"
        )
        got[f"get {place}"] = _allowed(s3.get_object, Bucket=b, Key=key)
        want[f"get {place}"] = _in(place, READS[role] | WRITES.get(role, set()))
        got[f"put {place}"] = _allowed(s3.put_object, Bucket=b, Key=key, Body=b"{}")
        want[f"put {place}"] = _in(place, WRITES.get(role, set()))
    curator = _client(ctx, "curator")
    for lvl in LEVELS:
        # a committed version's manifest (a copy, so that the readers' tests keep theirs)
        manifest = _manifest_key(ctx, lvl).replace("/v1/", f"/v{uuid.uuid4().int % 10**6 + 2}/")
        curator.put_object(Bucket=b, Key=manifest, Body=b"{}")
        got[f"delete {lvl} manifest"] = _allowed(s3.delete_object, Bucket=b, Key=manifest)
        want[f"delete {lvl} manifest"] = role in DELETES_COMMITTED
        claim = manifest.rsplit("/v", 1)[0] + "/_claims/v1.json"
        got[f"delete {lvl} claim"] = _allowed(s3.delete_object, Bucket=b, Key=claim)
        want[f"delete {lvl} claim"] = lvl in WRITES.get(role, set())
        # the copy is no committed version: removed, so that `binds verify` of the shared
        # store (test_verify_of_a_reader_open) finds only what the publishers committed
        curator.delete_object(Bucket=b, Key=manifest)
    # outside the store's prefix, or the whole bucket: nobody
    got["list bucket root"] = _allowed(s3.list_objects_v2, Bucket=b)
    got["get outside prefix"] = _allowed(s3.get_object, Bucket=b, Key="other/x")
    want["list bucket root"] = want["get outside prefix"] = False
    assert got == want


def _manifest_key(ctx, level: str) -> str:
    s3 = _client(ctx, "curator")
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=ctx["bucket"], Prefix=f"unit-a/{level}/")["Contents"]
        if o["Key"].endswith("/v1/manifest.json")
    ]
    return keys[0]


def _binds(ctx, role: str, *args: str):
    with _as(ctx, role) as env:
        return CliRunner().invoke(app, [*args], env=env, catch_exceptions=False)


def _foreign_names(ctx, text: str, readable: set[str]) -> list[str]:
    """Names of datasets or level prefixes the caller may not read, found in ``text``."""
    hidden = [lvl for lvl in LEVELS if lvl not in readable]
    return [n for lvl in hidden for n in (ctx["ids"][lvl], f"{lvl}/") if n in text]


@pytest.mark.slow
@pytest.mark.parametrize(
    "role", ["reader-open", "reader-consortium", "reader-all", "publisher-consortium"]
)
def test_catalog_and_show_see_exactly_the_readable_levels(iam_store, role):
    ctx = iam_store
    readable = READS[role] & set(LEVELS)
    cat = _binds(ctx, role, "catalog", "--store", ctx["url"], "--json")
    assert cat.exit_code == 0, cat.output
    rows = json.loads(cat.stdout)
    assert {r["access"] for r in rows} == readable
    assert _foreign_names(ctx, cat.output, readable) == []
    for lvl in LEVELS:
        shown = _binds(ctx, role, "show", ctx["ids"][lvl], "--store", ctx["url"])
        if lvl in readable:
            assert shown.exit_code == 0, shown.output
        else:  # the same answer as for an id that does not exist: nothing revealed
            assert shown.exit_code == 2
            assert _foreign_names(ctx, shown.output, readable) == [ctx["ids"][lvl]] or (
                "no dataset" in shown.output
            )


@pytest.mark.slow
def test_reader_api_of_a_reader_open(iam_store):
    from pipelines import access

    ctx = iam_store
    with _as(ctx, "reader-open"):
        cat = access.catalog(ctx["url"])
        assert set(cat["access"]) == {"open"}
        wells = access.open(ctx["ids"]["open"], store=ctx["url"])
        assert wells.count_rows() > 0
        with pytest.raises(Exception) as exc:
            access.open(ctx["ids"]["restricted"], store=ctx["url"])
        assert "restricted/" not in str(exc.value)


@pytest.mark.slow
def test_usage_names_the_levels_it_could_not_read(iam_store):
    ctx = iam_store
    short = _binds(ctx, "reader-open", "usage", "--store", ctx["url"])
    assert short.exit_code == 1
    assert "could not read" in short.output and "consortium, restricted" in short.output
    assert _foreign_names(ctx, short.output, {"open"}) == []
    scoped = _binds(ctx, "reader-open", "usage", "--store", ctx["url"], "--levels", "open")
    assert scoped.exit_code == 0, scoped.output
    full = _binds(ctx, "reader-all", "usage", "--store", ctx["url"], "--csv")
    assert full.exit_code == 0 and full.stdout.count("BINDS-2026-77") >= 3


@pytest.mark.slow
def test_a_publisher_publishes_at_its_level_only(iam_store):
    ctx = iam_store
    stage = _stage_at(ctx["stages"]["consortium"], ctx["base"] / "again", "consortium")
    # new content: a new version of the consortium dataset
    (stage / "qc" / "extra.txt").write_text("more\n")
    with _as(ctx, "publisher-consortium"):
        res = publish(StagedDataset(stage), S3Store(ctx["url"]))
    assert res.created and res.access == "consortium"
    with _as(ctx, "publisher-open"), pytest.raises(Exception) as exc:
        publish(StagedDataset(ctx["stages"]["restricted"]), S3Store(ctx["url"]))
    assert "restricted/" not in str(exc.value)


@pytest.mark.slow
def test_verify_of_a_reader_open(iam_store):
    ctx = iam_store
    res = _binds(ctx, "reader-open", "verify", "--store", ctx["url"])
    assert res.exit_code == 0, res.output
    assert _foreign_names(ctx, res.output, {"open"}) == []


@pytest.mark.slow
def test_embargo_under_the_roles(iam_store, monkeypatch):
    """Held by the curator's publish, invisible to reader-open, released by the service."""
    ctx = iam_store
    stage = ctx["base"] / "stage-embargo"
    shutil.copytree(ctx["stages"]["open"], stage, symlinks=True)
    exp_path = stage / "_meta" / "experiment.json"
    exp = json.loads(exp_path.read_text())
    exp["request_id"] = "BINDS-2026-7799"
    exp["access"] = {"level": "open", "embargo_until": "2027-01-15"}
    exp_path.write_text(json.dumps(exp))
    monkeypatch.setenv("BINDS_NOW", "2026-12-01")
    with _as(ctx, "curator"):
        held = publish(StagedDataset(stage), S3Store(ctx["url"])).dataset_id
    seen = _binds(ctx, "reader-open", "catalog", "--store", ctx["url"], "--json")
    assert held not in seen.stdout
    s3 = _client(ctx, "reader-open")
    assert not _allowed(s3.list_objects_v2, Bucket=ctx["bucket"], Prefix="unit-a/_embargo/open/")
    early = _binds(ctx, "service", "release", "--store", ctx["url"])
    assert early.exit_code == 0 and "nothing to release" in early.stdout
    monkeypatch.setenv("BINDS_NOW", "2027-01-15")
    denied = _binds(ctx, "reader-all", "release", "--store", ctx["url"])  # may read, not move
    assert denied.exit_code == 1 and "access denied" in denied.output
    assert held not in _binds(ctx, "reader-open", "catalog", "--store", ctx["url"], "--json").stdout
    done = _binds(ctx, "service", "release", "--store", ctx["url"])
    assert done.exit_code == 0 and f"released {held} v1 at open" in done.stdout, done.output
    after = _binds(ctx, "reader-open", "catalog", "--store", ctx["url"], "--json")
    assert held in after.stdout
    shown = _binds(ctx, "reader-open", "show", held, "--store", ctx["url"])
    assert shown.exit_code == 0, shown.output
    # the service's release is in the open ledger, so a reader of open verifies it clean
    checked = _binds(ctx, "reader-open", "verify", "--store", ctx["url"])
    assert checked.exit_code == 0, checked.output
    assert _foreign_names(ctx, checked.output, {"open"}) == []
    from pipelines.store import ledger

    with _as(ctx, "reader-open"):
        kinds = [
            (e.body["kind"], e.body.get("reason"), e.body["dataset_id"])
            for e in ledger.read(S3Store(ctx["url"]), "open")
        ]
    assert ("release", "embargo release", held) in kinds
