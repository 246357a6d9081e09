"""Signed, short-lived links to bytes, served by the service itself.

A link token is ``<payload>.<mac>``: the payload (base64url JSON) names what it opens, for
whom and until when; the mac is HMAC-SHA256 over it with the service's link secret.  The
service checks the mac and the expiry and serves only files of the manifest under what the
token opens, so a link cannot be stretched to other objects, other callers' names or a later
time: any change to the payload breaks the mac (403).

Two kinds: one object (``k``: the object's path in the version) and a version prefix
(``p``: e.g. ``data/map.ome.zarr/``), which lets a lazy Zarr or Parquet reader fetch each chunk
with one plain HTTP request under one link, instead of one DRS round trip per chunk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

SECRET_ENV = "BINDS_DRS_LINK_SECRET"


def link_secret() -> bytes:
    """The secret every worker shares: ``BINDS_DRS_LINK_SECRET`` (hex; ``binds serve-data``
    makes a fresh one per start, so links die with the service), else a new random one."""
    raw = os.environ.get(SECRET_ENV)
    if raw:
        return bytes.fromhex(raw)
    secret = secrets.token_bytes(32)
    os.environ[SECRET_ENV] = secret.hex()
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Grant:
    """What a link opens: ``bundle`` (the version's DRS id) and either one file ``key`` or
    every file under ``prefix``; ``subject``/``issuer``: for whom (the audit names them)."""

    bundle: str
    key: str | None
    prefix: str | None
    subject: str | None
    issuer: str | None
    expires: int

    def covers(self, path: str) -> bool:
        if self.key is not None:
            return path == self.key
        return self.prefix is not None and (self.prefix == "" or path.startswith(self.prefix))


def sign(secret: bytes, grant: Grant) -> str:
    payload = _b64(
        json.dumps(
            {
                "b": grant.bundle,
                "k": grant.key,
                "p": grant.prefix,
                "s": grant.subject,
                "i": grant.issuer,
                "x": grant.expires,
            },
            separators=(",", ":"),
        ).encode()
    )
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


class BadLink(Exception):
    pass


def check(secret: bytes, token: str, *, now: float | None = None) -> Grant:
    """The grant of a valid, unexpired link token; :class:`BadLink` otherwise."""
    try:
        payload, mac = token.split(".")
        want = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _unb64(mac)):
            raise BadLink("altered link")
        d = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        raise BadLink("malformed link") from None
    grant = Grant(d["b"], d["k"], d["p"], d["s"], d["i"], int(d["x"]))
    if grant.expires < (now if now is not None else time.time()):
        raise BadLink("expired link")
    return grant
