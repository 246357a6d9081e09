# Helpers every modality's rules use (included by the top-level Snakefile before them).


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
