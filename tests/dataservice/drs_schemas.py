"""The DRS 1.5 OpenAPI response schemas (../shared/standards/ga4gh-drs-1.5.0), resolved
offline, as jsonschema validators: ``validate(response_file, body)``."""

from __future__ import annotations

from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

STANDARDS = Path(__file__).resolve().parents[3] / "shared" / "standards"
if not STANDARDS.is_dir():  # a worktree elsewhere: the shared checkout
    STANDARDS = Path("/work/shared/standards")
OPENAPI = STANDARDS / "ga4gh-drs-1.5.0" / "openapi"
SERVICE_INFO_URL = (
    "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/service-info.yaml"
)


def _retrieve(uri: str) -> Resource:
    if uri == SERVICE_INFO_URL:  # the one remote $ref: served from the offline copy
        path = STANDARDS / "ga4gh-service-info-1.0.0" / "service-info.yaml"
    else:
        path = Path(uri.removeprefix("file://"))
    return Resource.from_contents(
        yaml.safe_load(path.read_text()), default_specification=DRAFT202012
    )


REGISTRY = Registry(retrieve=_retrieve)  # type: ignore[call-arg]


def validator(response: str) -> Draft202012Validator:
    """The validator of the JSON body of ``components/responses/<response>.yaml``."""
    uri = (OPENAPI / "components" / "responses" / f"{response}.yaml").as_uri()
    return Draft202012Validator(
        {"$ref": f"{uri}#/content/application~1json/schema"}, registry=REGISTRY
    )


def schema_validator(schema: str) -> Draft202012Validator:
    uri = (OPENAPI / "components" / "schemas" / f"{schema}.yaml").as_uri()
    return Draft202012Validator({"$ref": uri}, registry=REGISTRY)


def validate(response: str, body) -> None:
    errors = sorted(validator(response).iter_errors(body), key=str)
    assert not errors, f"{response}: " + "; ".join(e.message for e in errors[:5])
