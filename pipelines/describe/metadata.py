"""Experiment metadata (``experiment.yaml``): load, validate, normalise.

Validation runs before any compute and reports every problem at once, each with its YAML path,
line and a hint::

    experiment.yaml:9: samples[1].organism: 'human' is not an NCBITaxon id (did you mean NCBITaxon:9606?)

The schemas are JSON Schema (draft 2020-12) in ``metadata/schemas/``: the common fields in
``experiment.schema.json`` and one block per modality in ``<modality>.schema.json``.
Ontology ids are checked for form (schema pattern) and against the small bundled vocabulary in
``metadata/vocab/`` (no network); a well-formed id missing from it is accepted with a note.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipelines import modalities
from pipelines.errors import InputError, Problem, yaml_path
from pipelines.resources import metadata_dir

# the identifier rules are the store's key rules (the store imports nothing above itself)
from pipelines.store.identifiers import ACCESS_LEVELS as ACCESS_LEVELS
from pipelines.store.identifiers import default_dataset_id as default_dataset_id
from pipelines.store.identifiers import validate_dataset_id as validate_dataset_id

if TYPE_CHECKING:  # imported where used: ~0.1 s of every command's start (binds catalog ...)
    import jsonschema
    from referencing import Registry

EXPERIMENT_FILE = "experiment.yaml"
#: Every registered modality (built-in and plugins, see :mod:`pipelines.modalities`).
MODALITIES = modalities.names()


# --------------------------------------------------------------------------- vocabularies
@dataclass(frozen=True, slots=True)
class Term:
    id: str
    label: str
    synonyms: tuple[str, ...] = ()


@cache
def vocabulary(name: str) -> dict[str, Term]:
    """The bundled terms of one vocabulary (``NCBITaxon``, ``UBERON``, ``CL``, ``CHEBI``, ``EFO``, ``spdx``)."""
    path = metadata_dir() / "vocab" / f"{name}.tsv"
    terms: dict[str, Term] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = [*line.split("\t"), "", ""]
        syn = tuple(s.strip().lower() for s in cols[2].split("|") if s.strip())
        terms[cols[0]] = Term(cols[0], cols[1], syn)
    return terms


def lookup_label(name: str, text: str) -> Term | None:
    """The term whose label or synonym is ``text`` (case-insensitive), else the closest one."""
    key = text.strip().lower()
    terms = vocabulary(name).values()
    for t in terms:
        if key == t.label.lower() or key in t.synonyms or key == t.id.lower():
            return t
    names = {t.label.lower(): t for t in terms} | {s: t for t in terms for s in t.synonyms}
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.75)
    return names[close[0]] if close else None


# --------------------------------------------------------------------------- schema
def _plugin_schemas() -> dict[str, dict[str, Any]]:
    """Block schemas of the modalities registered by other packages (name -> schema)."""
    return {
        name: json.loads(modalities.spec(name).path("schema").read_text())
        for name in MODALITIES
        if name not in modalities.BUILTIN
    }


@cache
def _registry() -> Registry:
    from referencing import Registry, Resource

    resources = []
    for p in sorted((metadata_dir() / "schemas").glob("*.schema.json")):
        schema = json.loads(p.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    resources += [
        (schema["$id"], Resource.from_contents(schema)) for schema in _plugin_schemas().values()
    ]
    return Registry().with_resources(resources)


@cache
def experiment_schema() -> dict[str, Any]:
    """experiment.schema.json, with the modalities of plugin packages added (their name in the
    ``modality`` enum, their block as a property)."""
    schema = json.loads((metadata_dir() / "schemas" / "experiment.schema.json").read_text())
    props = schema["properties"]
    for name, block in _plugin_schemas().items():
        props["modality"]["enum"] = [*props["modality"]["enum"], name]
        props[name] = {"$ref": block["$id"]}
    return schema


def _validator() -> jsonschema.protocols.Validator:
    import jsonschema

    cls = jsonschema.Draft202012Validator
    return cls(experiment_schema(), registry=_registry(), format_checker=cls.FORMAT_CHECKER)


# --------------------------------------------------------------------------- YAML with lines
class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text: the schema checks them (2026-13-20 is an error
    with a YAML path, not a crash in the YAML parser)."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

# experiment.yaml is written by hand: a few KB, ~120 KB with a thousand samples.  The cap keeps
# parsing (libyaml: ~1 s per MB to build the nodes) and everything after it well under a second.
MAX_YAML_BYTES = 256_000
# nesting deeper than this is no metadata a person wrote ('[[[[...' would exhaust the stack)
MAX_YAML_DEPTH = 32
# unknown fields reported one by one up to this many (each costs a look-up of its line)
MAX_UNKNOWN_FIELDS = 50
_CLoader = getattr(yaml, "CSafeLoader", None)  # libyaml: 5x faster than the pure-Python parser


class _RefusedYAML(yaml.YAMLError):
    """A YAML feature experiment.yaml does not accept, with where it was found."""

    def __init__(self, problem: str, mark: Any, hint: str):
        super().__init__(problem)
        self.problem, self.problem_mark, self.hint = problem, mark, hint


def _refuse_aliases_and_depth(text: str) -> None:
    """Scan the YAML events (no values built) for aliases and deep nesting.

    An alias (``*name``) is how a "billion laughs" file expands a few hundred bytes into
    gigabytes once its values are walked; nothing in experiment.yaml needs one, so the first is
    refused before any node is composed."""
    depth = 0
    for event in yaml.parse(text, Loader=_CLoader or _Loader):
        if isinstance(event, yaml.AliasEvent):
            raise _RefusedYAML(
                f"YAML alias *{event.anchor} is not accepted",
                event.start_mark,
                "write the value out in full instead of &anchor / *alias",
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _RefusedYAML(
                    f"nested more than {MAX_YAML_DEPTH} levels deep",
                    event.start_mark,
                    "experiment.yaml needs a few levels of 'key: value'; check the file",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """(root node with line marks, value) of one YAML document, dates left as text."""
    _refuse_aliases_and_depth(text)
    loader = (_CDateless if _CLoader else _Loader)(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


if _CLoader is not None:

    class _CDateless(_CLoader):  # type: ignore[misc, valid-type]
        """libyaml's SafeLoader with _Loader's resolvers (dates stay text)."""

        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers


_SAVE_AS_UTF8 = "save it as UTF-8 (in most editors: Save As, encoding UTF-8)"


def _decode(raw: bytes, fname: str) -> tuple[str, list[str]]:
    """Strict UTF-8 text of ``raw`` (and notes); InputError naming the encoding or the bad byte."""
    notes: list[str] = []
    encoding = _wide_encoding(raw)
    if encoding:
        raise InputError(
            Problem(f"the file is {encoding}, not UTF-8", file=fname, hint=_SAVE_AS_UTF8)
        )
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
        notes.append(f"{fname}: starts with a UTF-8 byte-order mark (BOM); it is ignored")
    try:
        return raw.decode("utf-8"), notes
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        line = raw.count(b"\n", 0, err.start) + 1
        byte = raw[err.start]
        legacy = " (it looks like Latin-1 / Windows-1252)" if 0x80 <= byte <= 0xFF else ""
        raise InputError(
            Problem(
                f"not valid UTF-8: byte 0x{byte:02X} cannot be decoded{legacy}",
                file=fname,
                where=f"line {line}, byte {err.start - line_start + 1} of the line "
                f"(offset {err.start} in the file)",
                hint=_SAVE_AS_UTF8,
            )
        ) from None


def _wide_encoding(raw: bytes) -> str | None:
    """'UTF-16 (little-endian, with a byte-order mark)' and the like, else None."""
    boms = (
        (b"\xff\xfe\x00\x00", "UTF-32 (little-endian"),
        (b"\x00\x00\xfe\xff", "UTF-32 (big-endian"),
        (b"\xff\xfe", "UTF-16 (little-endian"),
        (b"\xfe\xff", "UTF-16 (big-endian"),
    )
    for bom, name in boms:
        if raw.startswith(bom):
            return f"{name}, with a byte-order mark)"
    head = raw[:400]
    if len(head) >= 4 and b"\x00" in head:
        # ASCII text in a wide encoding: zero bytes in fixed positions
        if head[1::4].count(0) == head[2::4].count(0) == head[3::4].count(0) == len(head[3::4]):
            return "UTF-32 (little-endian, no byte-order mark)"
        if head[0::4].count(0) == head[1::4].count(0) == head[2::4].count(0) == len(head[2::4]):
            return "UTF-32 (big-endian, no byte-order mark)"
        if head[1::2].count(0) > len(head) // 4:
            return "UTF-16 (little-endian, no byte-order mark)"
        if head[0::2].count(0) > len(head) // 4:
            return "UTF-16 (big-endian, no byte-order mark)"
    return None


def _line_of(node: yaml.Node | None, parts: list[Any]) -> int | None:
    """1-based line of the YAML node at ``parts`` (or its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for p in parts:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == p), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(p, int) and p < len(node.value):
            nxt = node.value[p]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def _key_line(root: yaml.Node, parts: list[Any], key: str) -> int | None:
    """1-based line of the key ``key`` in the mapping at ``parts``."""
    node: yaml.Node | None = root
    for p in parts:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == p), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(p, int) and p < len(node.value):
            node = node.value[p]
        else:
            return _line_of(root, parts)
    if isinstance(node, yaml.MappingNode):
        for k, _v in node.value:
            if str(k.value) == key:
                return k.start_mark.line + 1
    return _line_of(root, parts)


def _normalise(obj: Any) -> Any:
    """YAML dates become ISO strings so the JSON schema (format: date) and JSON output agree."""
    if isinstance(obj, dict):
        return {str(k): _normalise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    if isinstance(obj, dt.datetime):
        return obj.isoformat()
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj


# --------------------------------------------------------------------------- public API
@dataclass(slots=True)
class Experiment:
    """A validated experiment.yaml.

    Attributes
    ----------
    data
        The metadata as plain JSON types (dates as ISO strings).
    notes
        Things worth telling the user that are not errors (e.g. an ontology id that is well
        formed but not in the bundled vocabulary).
    """

    data: dict[str, Any]
    path: Path
    notes: list[str] = field(default_factory=list)

    @property
    def modality(self) -> str:
        return self.data["modality"]

    @property
    def access(self) -> str:
        return self.data["access"]["level"]

    @property
    def dataset_id(self) -> str:
        return self.data.get("dataset_id") or default_dataset_id(
            self.data["request_id"], self.modality
        )

    @property
    def block(self) -> dict[str, Any]:
        """The modality's own parameters (empty when the YAML has none: defaults apply)."""
        return dict(self.data.get(self.modality) or {})


def load_experiment(run_dir: str | Path) -> Experiment:
    """Read and validate ``RUN_DIR/experiment.yaml`` (or a YAML file given directly).

    Raises
    ------
    InputError
        With one :class:`Problem` per error found: all of them, not just the first.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / EXPERIMENT_FILE
    fname = path.name if path.parent == Path(run_dir) else str(path)
    if not path.exists():
        raise InputError(
            Problem(
                "no experiment.yaml in the run folder",
                file=str(path),
                hint=f"write one with: binds init {path.parent} --modality MODALITY",
            )
        )
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise InputError(
            Problem(
                f"the file is {size:,} bytes; experiment.yaml is at most {MAX_YAML_BYTES:,}",
                file=fname,
                hint="it holds metadata only: put data and long tables in their own files in the run folder",
            )
        )
    text, read_notes = _decode(path.read_bytes(), fname)
    try:
        root, raw = _parse_yaml(text)
    except _RefusedYAML as err:
        mark = err.problem_mark
        raise InputError(
            Problem(
                err.problem,
                file=fname,
                hint=err.hint,
                where=f"line {mark.line + 1}, column {mark.column + 1}",
            )
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(err, "problem", None) or str(err)
        if "#x0000" in problem or "control characters are not allowed" in problem:
            problem += " (a binary file, or not text)"
        raise InputError(
            Problem(
                f"YAML syntax error: {problem}",
                file=fname,
                where=where,
                hint="check indentation and quote values containing ':' or '#'",
            )
        ) from None
    if not isinstance(raw, dict):
        raise InputError(
            Problem(
                "expected a mapping of fields (key: value), got "
                f"{type(raw).__name__ if raw is not None else 'an empty file'}",
                file=fname,
                hint="start from: binds init RUN_DIR --modality M",
            )
        )
    data = _normalise(raw)
    problems, notes = validate_experiment(data, file=fname, root=root)
    if problems:
        raise InputError(problems)
    return Experiment(data=data, path=path, notes=read_notes + notes)


def validate_experiment(
    data: dict[str, Any], *, file: str = EXPERIMENT_FILE, root: yaml.Node | None = None
) -> tuple[list[Problem], list[str]]:
    """Validate metadata already loaded as JSON types; return (problems, notes)."""
    problems: list[Problem] = []
    for err in sorted(
        _validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]
    ):
        problems.extend(_explain(err, data, file, root))
    more, notes = _semantic_checks(data, file, root)
    problems.extend(more)
    problems.sort(
        key=lambda p: int(m.group(1)) if (m := re.match(r"line (\d+)", p.where or "")) else 0
    )
    # one line per (place, message): anyOf/ref branches can repeat themselves
    seen, unique = set(), []
    for p in problems:
        if (p.where, p.message) not in seen:
            seen.add((p.where, p.message))
            unique.append(p)
    return unique, notes


def _where(parts: list[Any], root: yaml.Node | None, *, path: str | None = None) -> str:
    line = _line_of(root, parts) if root is not None else None
    path = path or yaml_path(parts)
    return f"line {line}: {path}" if line else path


def _explain(err: jsonschema.ValidationError, data: dict, file: str, root) -> list[Problem]:
    """The problems one schema error stands for, each with its line and a hint."""
    parts = list(err.absolute_path)
    if err.validator == "required":
        return [_missing_field(err, parts, file=file, root=root)]
    where = _where(parts, root)
    if err.validator == "additionalProperties":
        return _unknown_fields(err, parts, file=file, where=where, root=root)
    message, hint = _message_and_hint(err, parts)
    return [Problem(message, file=file, where=where, hint=hint)]


def _missing_field(
    err: jsonschema.ValidationError, parts: list[Any], *, file: str, root
) -> Problem:
    missing = re.findall(r"'([^']+)' is a required property", err.message)
    name = missing[0] if missing else err.message
    full = yaml_path([*parts, name])
    hint = _REQUIRED_HINTS.get(full) or _REQUIRED_HINTS.get(name)
    # a missing top-level field has no line of its own; a nested one points at its parent
    where = _where(parts, root, path=full) if parts else full
    return Problem("required field is missing", file=file, where=where, hint=hint)


def _unknown_fields(
    err: jsonschema.ValidationError, parts: list[Any], *, file: str, where: str, root
) -> list[Problem]:
    """One problem per unknown name, the first :data:`MAX_UNKNOWN_FIELDS` of them."""
    # one error lists every extra name ("'a', 'b' were unexpected"): one Problem per name,
    # each on the line of its key, taken from the instance rather than the message text
    schema = err.schema if isinstance(err.schema, dict) else {}
    value = err.instance
    allowed = list((schema.get("properties") or {}).keys())
    patterns = [re.compile(p) for p in (schema.get("patternProperties") or {})]
    names = [
        str(k)
        for k in (value if isinstance(value, dict) else {})
        if k not in allowed and not any(p.search(str(k)) for p in patterns)
    ]
    out = []
    if len(names) > MAX_UNKNOWN_FIELDS:  # a pasted table, not typos: the first ones show it
        out.append(
            Problem(
                f"{len(names)} unknown fields here; the first {MAX_UNKNOWN_FIELDS} follow",
                file=file,
                where=where,
                hint="experiment.yaml holds the fields of the schema only",
            )
        )
        names = names[:MAX_UNKNOWN_FIELDS]
    for name in names:
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed here: {', '.join(allowed)}"
        line = _key_line(root, parts, name) if root is not None else None
        path = yaml_path([*parts, name])
        out.append(
            Problem(
                f"unknown field '{name}'",
                file=file,
                where=f"line {line}: {path}" if line else path,
                hint=hint,
            )
        )
    return out


def _message_and_hint(err: jsonschema.ValidationError, parts: list[Any]) -> tuple[str, str | None]:
    """What is wrong with one value, and what to write instead, in the researcher's words."""
    schema = err.schema if isinstance(err.schema, dict) else {}
    value = err.instance
    v = err.validator
    if v == "pattern" and "x-ontology" in schema:
        onto = schema["x-ontology"]
        term = (
            lookup_label(onto, str(value)) if onto != "CHEBI" or not str(value).isdigit() else None
        )
        hint = f"did you mean {term.id}?" if term else _ONTOLOGY_FORMS[onto]
        return f"{value!r} is not {_ONTOLOGY_ARTICLE[onto]} id", hint
    if v == "pattern":
        return f"{value!r} is not allowed here", schema.get("x-binds-hint")
    if v == "enum":
        close = difflib.get_close_matches(
            str(value), [str(x) for x in err.validator_value], n=1, cutoff=0.5
        )
        return (
            f"{value!r} is not one of {', '.join(map(str, err.validator_value))}",
            f"did you mean '{close[0]}'?" if close else None,
        )
    if v == "const" and parts == ["schema_version"]:
        return (
            f"schema_version {value!r} is not supported",
            "this version of binds reads schema_version: 1",
        )
    if v == "format" and err.validator_value == "date":
        return f"{value!r} is not a date", "write it as YYYY-MM-DD, e.g. 2026-11-20"
    if v == "type":
        return _wrong_type(value, want=err.validator_value)
    if v == "minItems":
        return (
            f"needs at least {err.validator_value} item(s)",
            "list each sample as '- id: S1'" if parts == ["samples"] else None,
        )
    if v in ("anyOf", "oneOf"):
        desc = (schema.get("description") or "").split(". ")[0].rstrip(".")
        return f"{_short(value)} is not a valid value here", desc or None
    return err.message, None


def _wrong_type(value: Any, *, want: str | list[str]) -> tuple[str, str | None]:
    wanted = " or ".join(want) if isinstance(want, list) else want
    got = (
        "nothing"
        if value is None
        else type(value).__name__.replace("dict", "mapping").replace("list", "list")
    )
    hint = (
        "a mapping is written as indented 'key: value' lines"
        if wanted == "object"
        else ("a list is written as lines starting with '- '" if wanted == "array" else None)
    )
    return f"expected {wanted}, got {got} ({_short(value)})", hint


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


_ONTOLOGY_ARTICLE = {
    "NCBITaxon": "an NCBITaxon",
    "UBERON": "an UBERON",
    "CL": "a CL",
    "CHEBI": "a ChEBI or PubChem compound",
}
_ONTOLOGY_FORMS = {
    "NCBITaxon": "write NCBITaxon:<digits>, e.g. NCBITaxon:9606 for human",
    "UBERON": "write UBERON:<7 digits>, e.g. UBERON:0000178 for blood",
    "CL": "write CL:<7 digits>, e.g. CL:0000236 for B cell, or 'unknown'",
    "CHEBI": "write CHEBI:<digits> or PUBCHEM.COMPOUND:<cid>, e.g. CHEBI:27732",
}
_REQUIRED_HINTS = {
    "schema_version": "add 'schema_version: 1'",
    "request_id": "the support request id, e.g. 'request_id: BINDS-2026-0042'",
    "title": "one line describing the run",
    "modality": "one of cryoem, metabolomics, transcriptomics, screening",
    "instrument": "e.g. 'instrument: {manufacturer: Thermo Fisher, model: Titan Krios G4}'",
    "instrument.model": "e.g. 'model: Titan Krios G4'",
    "acquired": "the acquisition date, e.g. 'acquired: 2026-11-20'",
    "access": "e.g. 'access: {level: consortium}' (open | consortium | restricted)",
    "access.level": "open | consortium | restricted",
    "license": "an SPDX id, e.g. 'license: CC-BY-4.0'",
    "samples": "at least one sample: 'samples: [{id: S1}]'",
}


def _semantic_checks(data: dict, file: str, root) -> tuple[list[Problem], list[str]]:
    """What the schema cannot say: licence ids, duplicate samples, placeholders, dates, the
    unit's code, data-use terms (problems); ontology ids outside the bundled subsets, an
    embargo (notes)."""
    samples = (
        [s for s in data.get("samples") or [] if isinstance(s, dict)]
        if isinstance(data.get("samples"), list)
        else []
    )
    access = data.get("access")
    if not isinstance(access, dict):
        access = {}
    problems = [
        *_licence_problems(data, file, root),
        *_duplicate_sample_problems(samples, file, root),
        *_placeholder_problems(data, file, root),
        *_date_and_unit_problems(data, file, root),
        *_data_use_problems(access, file, root),
    ]
    notes = [*_unbundled_term_notes(samples, file), *_embargo_notes(access, file)]
    return problems, notes


def _licence_problems(data: dict, file: str, root) -> list[Problem]:
    spdx = vocabulary("spdx")
    lic = data.get("license")
    if not isinstance(lic, str) or lic in spdx:
        return []
    term = lookup_label("spdx", lic)
    return [
        Problem(
            f"{lic!r} is not an accepted SPDX licence id",
            file=file,
            where=_where(["license"], root),
            hint=f"did you mean {term.id}?" if term else f"one of {', '.join(spdx)}",
        )
    ]


def _duplicate_sample_problems(samples: list[dict], file: str, root) -> list[Problem]:
    problems = []
    first_seen: dict[str, int] = {}
    for i, sid in enumerate(str(s.get("id")) for s in samples):
        if first_seen.setdefault(sid, i) != i:
            problems.append(
                Problem(
                    f"duplicate sample id {sid!r}",
                    file=file,
                    where=_where(["samples", i, "id"], root),
                    hint="every sample needs its own id",
                )
            )
    return problems


def _unbundled_term_notes(samples: list[dict], file: str) -> list[str]:
    """Well-formed ontology ids that the bundled subsets do not hold: kept, and said."""
    notes = []
    for i, sample in enumerate(samples):
        for key, onto in (
            ("organism", "NCBITaxon"),
            ("tissue", "UBERON"),
            ("cell_type", "CL"),
            ("compound", "CHEBI"),
        ):
            val = sample.get(key)
            if (
                isinstance(val, str)
                and re.fullmatch(r"[A-Za-z]+:\d+", val)
                and not val.startswith("PUBCHEM")
                and val not in vocabulary(onto)
            ):
                notes.append(
                    f"{file}: {yaml_path(['samples', i, key])}: {val} is well formed but not in "
                    f"the bundled {onto} subset; it is kept as given"
                )
    return notes


def _placeholder_problems(data: dict, file: str, root) -> list[Problem]:
    return [
        Problem(
            "placeholder from `binds init` not filled in",
            file=file,
            where=_where(path, root),
            hint="replace it with the real value",
        )
        for path, value in _walk(data)
        if value == PLACEHOLDER or (path == ["request_id"] and value == PLACEHOLDER_REQUEST)
    ]


def _date_and_unit_problems(data: dict, file: str, root) -> list[Problem]:
    """An acquisition date in the future; a support unit code that is not one."""
    problems = []
    acquired = _date_or_none(data.get("acquired"))
    if acquired and acquired > dt.date.today() + dt.timedelta(days=1):
        problems.append(
            Problem(
                f"acquisition date {data['acquired']} is in the future",
                file=file,
                where=_where(["acquired"], root),
                hint="check the year",
            )
        )
    if (
        "support_unit" in data
    ):  # a code: it reaches bills and Prefect tags (pipelines.describe.support_units)
        from pipelines.describe.support_units import unit_problem

        if bad := unit_problem(data["support_unit"]):
            problems.append(
                Problem(bad[0], file=file, where=_where(["support_unit"], root), hint=bad[1])
            )
    return problems


def _embargo_notes(access: dict, file: str) -> list[str]:
    emb = _date_or_none(access.get("embargo_until"))
    if emb and access.get("level") in ("open", "consortium") and emb > dt.date.today():
        return [
            f"{file}: access.embargo_until: under embargo until {emb}: held under _embargo/ "
            "(curators only) until `binds release` publishes it on that date"
        ]
    return []


def _data_use_problems(access: dict, file: str, root) -> list[Problem]:
    """Data-use conditions must be DUO terms the unit knows (metadata/vocab/DUO.tsv): a
    condition nobody can interpret protects nothing."""
    duo = vocabulary("DUO")
    given = access.get("data_use")
    codes: list[Any] = given if isinstance(given, list) else []
    return [
        Problem(
            f"{code!r} is not a known Data Use Ontology term",
            file=file,
            where=_where(["access", "data_use", i], root),
            hint=f"one of {', '.join(duo)} (metadata/vocab/DUO.tsv)",
        )
        for i, code in enumerate(codes)
        if isinstance(code, str) and re.fullmatch(r"DUO:[0-9]{7}", code) and code not in duo
    ]


PLACEHOLDER = "EDIT"
PLACEHOLDER_REQUEST = "BINDS-2026-0000"


def _walk(obj: Any, path: list[Any] | None = None):
    path = path or []
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, [*path, k])
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, [*path, i])
    else:
        yield path, obj


def _date_or_none(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def write_experiment_json(exp: Experiment, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(exp.data, indent=2, sort_keys=True) + "\n")
    return path
