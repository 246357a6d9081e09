# Helpers every modality's rules use (included by the top-level Snakefile before them).
import json as _json

from snakemake.exceptions import WorkflowError

from pipelines.errors import Problem as _Problem
from pipelines.toolkit import run_ids as _run_ids

# human data (pipelines.toolkit.run_ids.applies): raw files go by run ids in what the rules write
BY_RUN_ID = _run_ids.applies(EXPERIMENT)


def raw_file_names(files):
    """``{str(file): the name it goes by}`` in tables, attributes and QC files: its run id for
    human data (as _meta/run_ids.json records it), else its path in the run folder.  ``files``:
    every raw file the modality's workflow reads."""
    return {str(p): name for p, name in _run_ids.raw_names(RUN_DIR, EXPERIMENT, files).items()}


def experiment_fields(*keys):
    """The experiment.yaml fields a step uses, passed as its params.  Snakemake reruns a step
    when its params change; so a corrected title or licence (publish-time metadata) reruns
    nothing, while a corrected organism reruns the steps that write it into the data."""
    return {k: EXPERIMENT[k] for k in keys if k in EXPERIMENT}


def attempt_mem_mb(request):
    """``mem_mb`` that grows by half with each retry (``restart-times``), so a job killed
    for memory is resubmitted with more.  ``request`` is a number of MB, or a function
    ``(wildcards, input) -> MB`` (e.g. scaled by the input size)."""

    def mem_mb(wildcards, input, attempt):
        base = request(wildcards, input) if callable(request) else request
        return int(base * (1 + 0.5 * (attempt - 1)))

    return mem_mb


def stop_with_problems(step, problems):
    """Stop while parsing (before any job) with input problems: written where `binds run`
    reads a job's bad-input report (``_meta/errors/<step>.json``, one stable name per step),
    so they are printed once, as file/place/problem lines, exit 2."""
    err = STAGE / "_meta" / "errors" / f"{step}.json"
    err.parent.mkdir(parents=True, exist_ok=True)
    err.write_text(_json.dumps({"rule": step, "problems": [p.to_dict() for p in problems]}, indent=2))
    raise ValueError("; ".join(str(p) for p in problems))


def modality_block(name, *, fill_defaults=True):
    """The experiment's block of modality ``name``, checked against the modality's schema
    (unknown keys refused, as `binds validate` does), with the schema's defaults filled in the
    one way every modality fills them (pipelines.toolkit.params.with_defaults)."""
    from jsonschema.exceptions import ValidationError
    from pipelines.toolkit.params import with_defaults

    block = dict(EXPERIMENT.get(name) or {})
    schema = str(modality_spec(name).path("schema"))
    try:
        validate(block, schema=schema, set_default=False)
    except (ValidationError, WorkflowError) as err:
        stop_with_problems(f"{name}_block", [_Problem(str(err).splitlines()[0], file="experiment.json",
                                                      where=name, hint="run `binds validate RUN_DIR`")])
    if not fill_defaults:
        return block
    with open(schema, encoding="utf-8") as fh:
        return with_defaults(_json.load(fh), block, where=name)
