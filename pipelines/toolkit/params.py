"""A modality's block of experiment.yaml with its defaults: the one way every modality fills them.

The defaults live in the block's JSON schema (``metadata/schemas/<modality>.schema.json``), which
is also what ``binds validate`` checks and what the docs show, so the three cannot disagree::

    from pipelines.toolkit.params import block_schema, with_defaults

    params = with_defaults(block_schema("screening"), experiment.get("screening"), where="screening")
    params["qc"]["cv_max"]      # the schema's default unless the YAML sets it

Nested settings are filled key by key (``qc: {z_prime_min: 0.3}`` keeps the default ``cv_max``);
a map whose keys are the user's (``controls.channels``: channel -> controls) is kept as given; a
key the schema does not define is refused with its YAML path (a typo such as ``n_hvgs`` would
otherwise be ignored and the default used without a word).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from pipelines.errors import InputError, Problem
from pipelines.resources import metadata_dir
from pipelines.toolkit.inputs import EXPERIMENT_FILE


@cache
def _schema_text(name: str) -> str:
    return (metadata_dir() / "schemas" / f"{name}.schema.json").read_text()


def block_schema(name: str) -> dict[str, Any]:
    """The JSON schema of the ``name:`` block (a fresh copy: callers may not change the cache)."""
    return json.loads(_schema_text(name))


def with_defaults(schema: dict[str, Any], block: Any, *, where: str) -> dict[str, Any]:
    """``block`` (a mapping, or None for "not given") completed with ``schema``'s defaults.

    Raises
    ------
    InputError
        ``block`` (or a nested setting the schema declares as an object) is not a mapping, or
        holds a key the schema does not define; the problem names the YAML path.
    """
    given = _mapping(block, where=where)
    props: dict[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key, sub in props.items():
        path = f"{where}.{key}"
        if _is_object(sub):
            out[key] = with_defaults(sub, given.get(key), where=path)
        elif key in given:
            out[key] = given[key]
        else:
            out[key] = copy.deepcopy(sub.get("default"))
    for key, value in given.items():
        if key in props:
            continue
        if isinstance(extra, dict):  # a map of the user's own keys: each entry as given
            out[key] = value
            if _is_object(extra):
                _refuse_unknown(extra, value, where=f"{where}.{key}")
        elif extra is False:
            raise InputError(_unknown(key, props, where=where))
        else:
            out[key] = value
    return out


def _refuse_unknown(schema: dict[str, Any], value: Any, *, where: str) -> None:
    """Check the keys of a map entry without filling defaults (the entry replaces only what it
    names: ``{**common, **entry}``)."""
    given = _mapping(value, where=where)
    props = schema.get("properties") or {}
    if schema.get("additionalProperties", True) is False:
        for key in given:
            if key not in props:
                raise InputError(_unknown(key, props, where=where))


def _is_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object" or "properties" in schema


def _mapping(value: Any, *, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(
            Problem(
                f"expected a mapping of settings, found {type(value).__name__} {value!r:.40}",
                file=EXPERIMENT_FILE,
                where=where,
                hint="write the settings indented below the key, one 'name: value' per line",
            )
        )
    return value


def _unknown(key: str, props: dict[str, Any], *, where: str) -> Problem:
    import difflib

    close = difflib.get_close_matches(str(key), list(props), n=1)
    known = ", ".join(props) or "none"
    return Problem(
        f"unknown setting '{key}'",
        file=EXPERIMENT_FILE,
        where=f"{where}.{key}",
        hint=f"did you mean '{close[0]}'?" if close else f"the settings here are: {known}",
    )


__all__ = ["block_schema", "with_defaults"]
