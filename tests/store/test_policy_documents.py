"""`binds policy`: the documents themselves (the IAM-mode tests check what they allow)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.store.policy import ROLES

runner = CliRunner()


def _docs(url: str) -> dict:
    out = runner.invoke(app, ["policy", "--store", url, "--json", "--account", "123456789012"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_every_role_has_an_iam_policy_and_bucket_statements_scoped_to_the_prefix():
    docs = _docs("s3://curated/unit-a")
    assert list(docs) == list(ROLES)
    for role, doc in docs.items():
        assert doc["iam"]["Version"] == "2012-10-17"
        for s in doc["iam"]["Statement"]:
            assert s["Effect"] == "Allow"
            for arn in s["Resource"]:
                assert arn == "arn:aws:s3:::curated" or arn.startswith(
                    "arn:aws:s3:::curated/unit-a/"
                )
            if "s3:ListBucket" in s["Action"]:
                prefixes = s["Condition"]["StringLike"]["s3:prefix"]
                assert prefixes and all(p.startswith("unit-a/") for p in prefixes)
        for s in doc["bucket"]:
            assert s["Principal"] == {"AWS": f"arn:aws:iam::123456789012:role/binds-{role}"}


def test_readers_get_nothing_of_the_levels_above_theirs():
    docs = _docs("s3://curated")
    text = json.dumps(docs["reader-open"])
    assert "consortium" not in text and "restricted" not in text and "_embargo" not in text
    assert "Put" not in text and "Delete" not in text
    text = json.dumps(docs["reader-consortium"])
    assert "restricted" not in text and "_embargo" not in text
    pub = json.dumps(docs["publisher-consortium"])
    assert "open/" not in pub.replace("_embargo/consortium", "") and "restricted" not in pub


def test_the_bucket_policy_refuses_plain_http():
    out = runner.invoke(app, ["policy", "--store", "s3://curated"])
    assert out.exit_code == 0
    assert "aws:SecureTransport" in out.stdout and "# IAM policy of role curator" in out.stdout


def test_a_local_store_has_no_s3_policy(tmp_path):
    out = runner.invoke(app, ["policy", "--store", str(tmp_path)])
    assert out.exit_code == 2 and "not an S3 store" in out.output
