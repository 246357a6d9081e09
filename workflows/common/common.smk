# Helpers every modality's rules use (included by the top-level Snakefile before them).


def experiment_fields(*keys):
    """The experiment.yaml fields a rule uses, as its params: Snakemake reruns a rule when its
    params change, so a corrected title or licence (publish-time metadata) reruns nothing,
    while a corrected organism reruns the rules that write it into the data."""
    return {k: EXPERIMENT[k] for k in keys if k in EXPERIMENT}
