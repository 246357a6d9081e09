"""rocrate-validator, offline: the RO-Crate 1.1 JSON-LD context is served from the copy of the
context that ro-crate-py ships (1.3), with the four Bioschemas terms set back to their 1.1 IRIs
(1.2 moved them under bioschemas.org/terms/); every other term a crate of ours uses is the same.
Any other URL the validator asks for is refused and recorded, so a test can assert none was."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import requests

CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"


def _context() -> dict[str, Any]:
    import rocrate

    data = json.loads((Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_text())
    ctx = dict(data["@context"])
    ctx.update(
        {
            "ComputationalWorkflow": "https://bioschemas.org/ComputationalWorkflow",
            "FormalParameter": "https://bioschemas.org/FormalParameter",
            "input": "https://bioschemas.org/ComputationalWorkflow#input",
            "output": "https://bioschemas.org/ComputationalWorkflow#output",
        }
    )
    return {"@context": ctx}


def validate_offline(
    crate_dir: Path, *, severity: str = "REQUIRED", profile: str = "provenance-run-crate-0.5"
) -> tuple[list[dict[str, str]], list[str]]:
    """Issues at ``severity`` or above (severity, check, message, entity) and the URLs asked for."""
    from rocrate_validator import models, services
    from rocrate_validator.utils.http import HttpRequester

    asked: list[str] = []
    body = json.dumps(_context()).encode()

    def get(self, url, *args, **kwargs):
        asked.append(url)
        resp = requests.Response()
        resp.url = url
        if url.rstrip("/") == CONTEXT_URL:
            resp.status_code = 200
            resp._content = body
            resp.headers["Content-Type"] = "application/ld+json"
        else:
            resp.status_code = 504  # what the validator's offline cache answers on a miss
            resp._content = b""
        return resp

    old = HttpRequester.__dict__.get("get")
    HttpRequester.get = get
    try:
        settings = services.ValidationSettings(
            rocrate_uri=str(crate_dir),
            profile_identifier=profile,
            requirement_severity=models.Severity[severity],
            offline=True,
            cache_path=Path(tempfile.mkdtemp(prefix="rocv-")) / "cache",
        )
        result = services.validate(settings)
    finally:
        if old is None:
            del HttpRequester.get
        else:
            HttpRequester.get = old
    issues = [
        {
            "severity": i.severity.name,
            "check": i.check.name,
            "message": i.message or "",
            "entity": str(getattr(i, "violatingEntity", "") or ""),
        }
        for i in result.get_issues()
    ]
    return issues, [u for u in asked if u.rstrip("/") != CONTEXT_URL]
