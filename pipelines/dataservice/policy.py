"""Who may read what: the ``--auth`` YAML, token and passport checks, and :func:`decide`.

Every handler asks :func:`decide` and nothing else (CanDIG's pattern: one decision function,
tested by a table), so the rules below are the whole policy:

* ``open``: anyone (an invalid token is still refused: 401 everywhere);
* ``consortium``: a ``ControlledAccessGrants`` visa whose value is ``consortium_visa``
  (``by: dac``, unexpired, signed by a listed issuer), or a visa for the dataset;
* ``restricted``: only a visa for the dataset (``dataset_visa_prefix`` + dataset id);
* embargoed (``embargo_until`` after today), whatever the level: only a visa for the dataset.

Refusals of restricted and embargoed data are the answer for an unknown id (404), so the
service is no oracle of what exists.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import InputError, Problem

GRANT_TYPE = "ControlledAccessGrants"
LEEWAY_S = 30  # clock skew tolerated on exp / nbf / iat


@dataclass(frozen=True)
class Issuer:
    iss: str
    keys: Any  # jwt.PyJWKSet


@dataclass(frozen=True)
class AuthConfig:
    """The ``--auth`` YAML (docs/drs.md), paths resolved against the YAML's folder."""

    issuers: tuple[Issuer, ...]
    audience: str
    consortium_visa: str
    dataset_visa_prefix: str
    link_seconds: int
    audit: str
    source: str = ""

    def issuer(self, iss: str | None) -> Issuer | None:
        return next((i for i in self.issuers if i.iss == iss), None)

    @property
    def issuer_names(self) -> list[str]:
        return [i.iss for i in self.issuers]


def load_auth(path: str | Path) -> AuthConfig:
    """Read and check the ``--auth`` YAML; :class:`InputError` lists every problem."""
    import jwt

    path = Path(path)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(Problem("no such file", file=where, hint="give the auth YAML")) from None
    except yaml.YAMLError as e:
        raise InputError(Problem(f"not YAML: {e}", file=where)) from None
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        raise InputError(Problem("expected a mapping", file=where, hint="docs/drs.md"))
    base = path.resolve().parent

    def need_str(key: str) -> str:
        v = raw.get(key)
        if not isinstance(v, str) or not v:
            problems.append(
                Problem("missing or not a string", file=where, where=key, hint="docs/drs.md")
            )
            return ""
        return v

    issuers = []
    for i, item in enumerate(raw.get("issuers") or []):
        here = f"issuers[{i}]"
        if not isinstance(item, dict) or not item.get("iss") or not item.get("jwks"):
            problems.append(Problem("needs iss and jwks", file=where, where=here))
            continue
        jwks_path = base / str(item["jwks"])
        try:
            keys = jwt.PyJWKSet.from_dict(json.loads(jwks_path.read_text()))
        except (OSError, ValueError, jwt.PyJWKSetError) as e:
            problems.append(
                Problem(f"cannot read the JWKS {jwks_path}: {e}", file=where, where=f"{here}.jwks")
            )
            continue
        issuers.append(Issuer(str(item["iss"]), keys))
    if not issuers and not problems:
        problems.append(Problem("no trusted issuer", file=where, where="issuers"))
    audience = need_str("audience")
    consortium = need_str("consortium_visa")
    prefix = need_str("dataset_visa_prefix")
    audit = need_str("audit")
    seconds = raw.get("link_seconds", 300)
    if not isinstance(seconds, int) or not 1 <= seconds <= 86400:
        problems.append(Problem("must be 1..86400 seconds", file=where, where="link_seconds"))
    if problems:
        raise InputError(problems)
    if "://" not in audit:
        audit = str(base / audit)
    return AuthConfig(
        tuple(issuers), audience, consortium, prefix, int(seconds), audit, source=where
    )


@dataclass(frozen=True)
class Caller:
    """Who asks: ``subject``/``issuer`` None for an anonymous caller; ``grants``: the values of
    the valid ``ControlledAccessGrants`` visas they bring."""

    subject: str | None = None
    issuer: str | None = None
    grants: frozenset[str] = field(default_factory=frozenset)

    @property
    def anonymous(self) -> bool:
        return self.subject is None


ANONYMOUS = Caller()


class Unauthenticated(Exception):
    """A token or passport was given but is not valid (401); the reason goes to the audit log."""


def _verify(cfg: AuthConfig, token: str, *, audience: bool) -> dict[str, Any]:
    """Check a JWT's signature (the key of its listed issuer), expiry and, for bearer tokens,
    audience; the payload, or :class:`Unauthenticated`."""
    import jwt

    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated("malformed token") from None
    issuer = cfg.issuer(unverified.get("iss"))
    if issuer is None:
        raise Unauthenticated("issuer not trusted")
    try:
        key = issuer.keys[header["kid"]] if header.get("kid") else issuer.keys.keys[0]
    except (KeyError, IndexError):
        raise Unauthenticated("unknown signing key") from None
    check_aud = audience or "aud" in unverified
    try:
        return jwt.decode(
            token,
            key=key,
            algorithms=["RS256", "ES256", "PS256", "ES384", "RS384"],
            audience=cfg.audience if check_aud else None,
            issuer=issuer.iss,
            leeway=LEEWAY_S,
            options={
                "require": ["exp", "iss"] + (["sub"] if audience else []),
                "verify_aud": check_aud,
            },
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthenticated("wrong audience") from None
    except jwt.InvalidSignatureError:
        raise Unauthenticated("bad signature") from None
    except jwt.PyJWTError as e:
        raise Unauthenticated(f"invalid token ({type(e).__name__})") from None


def _grants(cfg: AuthConfig, passport: Mapping[str, Any]) -> tuple[set[str], float]:
    """The values of the valid ControlledAccessGrants visas of a verified passport (each visa
    signed by a listed issuer, unexpired, asserted ``by: dac``; other visas are ignored), and
    the earliest expiry among them."""
    out = set()
    until = float("inf")
    for visa_jwt in passport.get("ga4gh_passport_v1") or []:
        if not isinstance(visa_jwt, str):
            continue
        try:
            visa = _verify(cfg, visa_jwt, audience=False)
        except Unauthenticated:
            continue  # an expired or foreign visa grants nothing; the passport stays valid
        claim = visa.get("ga4gh_visa_v1") or {}
        if claim.get("type") == GRANT_TYPE and claim.get("by") == "dac" and claim.get("value"):
            out.add(str(claim["value"]))
            until = min(until, float(visa["exp"]))
    return out, until


#: verified callers by their credentials, until the earliest expiry of token and visas (at
#: most CACHE_S): a client's repeated requests skip the signature checks
CACHE_S = 60.0
_CACHE_MAX = 4096
_cache: dict[tuple[int, str | None, tuple[str, ...]], tuple[Caller, float]] = {}


def authenticate(cfg: AuthConfig, bearer: str | None, passports: Iterable[str] = ()) -> Caller:
    """The caller of a request: its bearer token (``Authorization: Bearer``) and the passports
    POSTed in the body (DRS ``passports``).  No credentials: :data:`ANONYMOUS`.  Any credential
    that is present but invalid: :class:`Unauthenticated`."""
    passports = [p for p in passports if p]
    if not bearer and not passports:
        return ANONYMOUS
    key = (id(cfg), bearer, tuple(passports))
    now = time.time()
    hit = _cache.get(key)
    if hit is not None and hit[1] > now:
        return hit[0]
    grants: set[str] = set()
    subject = issuer = None
    until = now + CACHE_S
    tokens = ([(bearer, True)] if bearer else []) + [(p, False) for p in passports]
    for token, is_bearer in tokens:
        claims = _verify(cfg, token, audience=is_bearer)
        if subject is None:
            subject, issuer = str(claims.get("sub") or "passport"), str(claims["iss"])
        values, visas_until = _grants(cfg, claims)
        grants |= values
        until = min(until, float(claims["exp"]), visas_until)
    caller = Caller(subject, issuer, frozenset(grants))
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = (caller, until)
    return caller


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int  # 200, or what the refusal answers: 401, 403, or 404 (no oracle)
    reason: str


def decide(
    cfg: AuthConfig,
    caller: Caller,
    *,
    level: str,
    dataset_id: str,
    embargo_until: dt.date | None = None,
    today: dt.date | None = None,
) -> Decision:
    """May ``caller`` read (resolve, get a link to, or list) this dataset's versions?

    The one place that decides (see the module docstring for the rules); handlers only map
    ``status`` to the response.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    dataset_grant = cfg.dataset_visa_prefix + dataset_id in caller.grants
    if embargo_until is not None and embargo_until > today:
        if dataset_grant:
            return Decision(True, 200, "dataset visa (embargoed)")
        return Decision(False, 404, "embargoed")
    if level == "open":
        return Decision(True, 200, "open")
    if level == "consortium":
        if dataset_grant:
            return Decision(True, 200, "dataset visa")
        if cfg.consortium_visa in caller.grants:
            return Decision(True, 200, "consortium visa")
        if caller.anonymous:
            return Decision(False, 401, "no token")
        return Decision(False, 403, "no consortium visa")
    if level == "restricted" and dataset_grant:
        return Decision(True, 200, "dataset visa")
    return Decision(False, 404, "restricted")
