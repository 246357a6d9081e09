"""Least-privilege S3 policies of the store, one per role, scoped by key prefix.

The store keeps each access level under its own prefix (``open/``, ``consortium/``,
``restricted/``: data, catalog, ``_ledger/``), embargoed versions under ``_embargo/<level>/``
until their release date (:mod:`pipelines.describe.embargo`), and two places shared by all levels that
reveal nothing but hashes: ``_registry/`` (dataset id -> owner, one level per dataset) and
``_leases/`` (publisher leases). ``_probe/`` receives the write probe a publish makes before any
compute. So "who sees what" is decided by one object ARN (and one ``s3:prefix`` condition) per
prefix:

============================  =============================================================
role                          may
============================  =============================================================
``reader-open``               list and read ``open/``
``reader-consortium``         ... and ``consortium/``
``reader-all``                every level, and the embargoed versions (``_embargo/``)
``publisher-<level>``         read and write ``<level>/`` and ``_embargo/<level>/``; delete only
                              scratch (``_claims/``, temporaries) and superseded catalog
                              snapshots; get / put(-if-absent) by key on
                              ``_registry/`` and ``_leases/``, never listed (+ delete a lease);
                              the probe
``curator``                   everything under the store prefix (moves, rebuilds, release)
``service``                   the unit service: every publisher's rights, and the embargo
                              release (read + delete ``_embargo/``, write every level)
============================  =============================================================

:func:`policies` returns ``{role: {"iam": <IAM policy>, "bucket": [<bucket-policy
statements>]}}``: attach the IAM policy to the role's user/role, or merge the statements (with the
principal ARN filled in) into the bucket policy.
"""

from __future__ import annotations

from typing import Any

from pipelines.store.identifiers import ACCESS_LEVELS
from pipelines.store.layout import EMBARGO_DIR  # versions held until their date: _embargo/<level>/
from pipelines.store.s3 import parse_s3_url

#: shared by all levels, keyed only by hashes of dataset ids
REGISTRY_DIR = "_registry"
LEASES_DIR = "_leases"
PROBE_DIR = "_probe"

READ = ["s3:GetObject"]
WRITE = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
DELETE = ["s3:DeleteObject"]

ROLES = (
    "publisher-open",
    "publisher-consortium",
    "publisher-restricted",
    "reader-open",
    "reader-consortium",
    "reader-all",
    "curator",
    "service",
)


class _Doc:
    """Builds one role's statements: object rights per prefix, ListBucket per prefix."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.objects: dict[tuple[str, ...], list[str]] = {}
        self.listed: list[str] = []

    def grant(self, actions: list[str], *keys: str, listable: bool = True) -> None:
        arns = [f"arn:aws:s3:::{self.bucket}/{self.prefix}{k}" for k in keys]
        self.objects.setdefault(tuple(actions), []).extend(arns)
        if listable:
            self.listed += [self.prefix + k.split("*", 1)[0] for k in keys]

    def statements(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.listed:
            prefixes = sorted(set(self.listed))
            out.append(
                {
                    "Sid": "ListOwnPrefixes",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{self.bucket}"],
                    # a listing outside these prefixes (the bucket root included) is refused
                    "Condition": {"StringLike": {"s3:prefix": [p + "*" for p in prefixes]}},
                }
            )
        for i, (actions, arns) in enumerate(self.objects.items()):
            out.append(
                {
                    "Sid": f"Objects{i}",
                    "Effect": "Allow",
                    "Action": list(actions),
                    "Resource": sorted(set(arns)),
                }
            )
        return out


def _levels_up_to(level: str) -> list[str]:
    return list(ACCESS_LEVELS[: ACCESS_LEVELS.index(level) + 1])


def _publisher(doc: _Doc, level: str) -> None:
    for base in (f"{level}/", f"{EMBARGO_DIR}/{level}/"):
        doc.grant(READ + WRITE, base + "*")
        # scratch only: version claims and the temporaries of an interrupted upload
        doc.grant(DELETE, base + "*/_claims/*", listable=False)
        # superseded catalog snapshots (a compaction keeps the two newest)
        doc.grant(DELETE, base + "catalog/_snapshots/*", listable=False)
    # get + put (put-if-absent is a conditional put; lease renewal a plain one) by exact key:
    # the protocol never lists them nor uploads in parts, so neither is granted
    doc.grant([*READ, "s3:PutObject"], f"{REGISTRY_DIR}/*", f"{LEASES_DIR}/*", listable=False)
    doc.grant(DELETE, f"{LEASES_DIR}/*", listable=False)
    doc.grant(WRITE + DELETE, f"{PROBE_DIR}/*", listable=False)


def role_statements(role: str, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    """The IAM statements of ``role`` for the store at ``s3://bucket/prefix``."""
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    doc = _Doc(bucket, prefix)
    if role.startswith("reader-"):
        top = {"reader-open": "open", "reader-consortium": "consortium", "reader-all": "restricted"}
        if role not in top:
            raise ValueError(f"unknown role {role!r}")
        for level in _levels_up_to(top[role]):
            doc.grant(READ, f"{level}/*")
        if role == "reader-all":
            doc.grant(READ, f"{EMBARGO_DIR}/*")
    elif role.startswith("publisher-"):
        level = role.removeprefix("publisher-")
        if level not in ACCESS_LEVELS:
            raise ValueError(f"unknown role {role!r}")
        _publisher(doc, level)
    elif role == "service":
        for level in ACCESS_LEVELS:
            _publisher(doc, level)
        doc.grant(READ + DELETE, f"{EMBARGO_DIR}/*")  # the release: copy, verify, then delete
    elif role == "curator":
        doc.grant(READ + WRITE + DELETE, "*")
    else:
        raise ValueError(f"unknown role {role!r}")
    return doc.statements()


def policies(store_url: str, *, account: str = "ACCOUNT_ID") -> dict[str, dict[str, Any]]:
    """``{role: {"iam": policy document, "bucket": bucket-policy statements}}`` for
    ``s3://bucket/prefix``; the bucket statements name ``arn:aws:iam::<account>:role/binds-<role>``."""
    bucket, prefix = parse_s3_url(store_url)
    out: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        stmts = role_statements(role, bucket, prefix)
        principal = {"AWS": f"arn:aws:iam::{account}:role/binds-{role}"}
        out[role] = {
            "iam": {"Version": "2012-10-17", "Statement": stmts},
            "bucket": [
                {**s, "Sid": f"{_sid(role)}{s['Sid']}", "Principal": principal} for s in stmts
            ],
        }
    return out


def bucket_policy(store_url: str, *, account: str = "ACCOUNT_ID") -> dict[str, Any]:
    """One bucket policy with every role's statements, and a refusal of plain-HTTP requests."""
    bucket, _ = parse_s3_url(store_url)
    stmts: list[dict[str, Any]] = [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    for doc in policies(store_url, account=account).values():
        stmts += doc["bucket"]
    return {"Version": "2012-10-17", "Statement": stmts}


def _sid(role: str) -> str:
    return "".join(part.capitalize() for part in role.split("-"))


__all__ = [
    "EMBARGO_DIR",
    "LEASES_DIR",
    "REGISTRY_DIR",
    "ROLES",
    "bucket_policy",
    "policies",
    "role_statements",
]
