# Screening: resolve the run's inputs once, at parse time, and fix the number of read batches.
# Nothing here reads plate data; a run folder whose inputs cannot be resolved still gets one
# batch job, which then reports the problem (file, place, hint) through pipelines.toolkit.smk.run_step.

from functools import cache

from pipelines.errors import InputError
from pipelines.modalities import screening as SCREENING

# binds validated experiment.yaml already; this guards a hand-written --config experiment=...
# (defaults are filled by pipelines.modalities.screening.settings)
SCREENING_BLOCK = modality_block("screening", fill_defaults=False)

SCREENING_WORK = STAGE / "_meta" / "screening"


@cache
def screening_inputs():
    """The resolved inputs, or None when they do not resolve (the read job will say why).
    Cached: the input functions below run once per job while the DAG is built."""
    try:
        return SCREENING.resolve(RUN_DIR, SCREENING_BLOCK)
    except InputError:
        return None


SCREENING_BATCHES = list(range(len(screening_inputs().batches()) if screening_inputs() else 1))


def screening_batch_files(wildcards):
    """Raw files of one batch that exist (a missing one is reported by the rule, not by
    Snakemake's MissingInputException, so the user sees the plate and the plate list line)."""
    found = screening_inputs()
    if found is None:
        return []
    batches = found.batches()
    units = batches[int(wildcards.batch)] if int(wildcards.batch) < len(batches) else []
    return sorted({str(u.file) for u in units if u.file.is_file()})


def screening_metadata_files(wildcards):
    """Plate configuration, screen log, annotation, plate map, description: reruns follow edits."""
    found = screening_inputs()
    if found is None:
        return []
    extra = [found.plate_config, found.screen_log, found.annotation, found.plate_map, found.description]
    return sorted({str(p) for p in extra if p is not None})


def screening_mb(paths, *, base=500, factor=20):
    """Memory for a rule: a base plus ``factor`` times its input size (Parquet inflates ~10x
    into pandas, then numpy copies)."""
    total = sum(Path(p).stat().st_size for p in paths if Path(p).exists())
    return int(base + factor * total / 1e6)
