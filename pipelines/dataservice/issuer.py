"""A local token issuer for trials, tests and the README: makes a signing key, its offline
JWKS file, and bearer tokens / passports with ``ControlledAccessGrants`` visas.

Production tokens come from the unit's identity provider (its JWKS is saved offline and named
in the auth YAML); this stands in for it where there is none.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class LocalIssuer:
    iss: str
    key: Any  # a cryptography private key
    kid: str
    alg: str

    @classmethod
    def create(cls, iss: str, *, alg: str = "RS256") -> LocalIssuer:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if alg == "ES256":
            key: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(iss, key, uuid.uuid4().hex[:16], alg)

    def jwks(self) -> dict[str, Any]:
        import jwt

        algo = jwt.algorithms.ECAlgorithm if self.alg == "ES256" else jwt.algorithms.RSAAlgorithm
        jwk = json.loads(algo.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return {"keys": [jwk]}

    def write_jwks(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.jwks(), indent=1))
        return path

    def sign(self, claims: dict[str, Any]) -> str:
        import jwt

        return jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": self.kid})

    def visa(self, value: str, *, subject: str, by: str = "dac", seconds: int = 3600) -> str:
        """A ControlledAccessGrants visa JWT for ``value`` (a dataset or consortium URL)."""
        now = int(time.time())
        return self.sign(
            {
                "iss": self.iss,
                "sub": subject,
                "iat": now,
                "exp": now + seconds,
                "jti": uuid.uuid4().hex,
                "ga4gh_visa_v1": {
                    "type": "ControlledAccessGrants",
                    "value": value,
                    "source": "https://binds.example/dac",
                    "by": by,
                    "asserted": now - 60,
                },
            }
        )

    def token(
        self,
        subject: str,
        *,
        audience: str | None,
        visas: list[str] = (),  # type: ignore[assignment]
        seconds: int = 3600,
    ) -> str:
        """A bearer token (a GA4GH passport: its visas in ``ga4gh_passport_v1``)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.iss,
            "sub": subject,
            "iat": now,
            "exp": now + seconds,
            "jti": uuid.uuid4().hex,
            "ga4gh_passport_v1": list(visas),
        }
        if audience is not None:
            claims["aud"] = audience
        return self.sign(claims)
