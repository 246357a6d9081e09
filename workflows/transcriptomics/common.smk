# Transcriptomics: decide once, while parsing, which rule set runs and which files it reads.
#
# The input is found by extension (pipelines.modalities.transcriptomics.discover) unless the
# experiment.yaml block names it.  When it cannot be resolved here the single-cell rules are
# used anyway: their first rule resolves again and reports the problem (file, place, hint)
# through run_step, so `binds run` exits 2 with that message instead of a parse traceback.

from pipelines.errors import InputError
from pipelines.modalities import transcriptomics as TX

TX_WORK = STAGE / "_meta" / "work"
TX_DATA = STAGE / "data"
TX_QC = STAGE / "qc"

try:
    _tx_spec = TX.resolve_input(RUN_DIR, TX.params_from_experiment(EXPERIMENT))
    TX_KIND = "single_cell" if _tx_spec.single_cell else "bulk"
    TX_INPUTS = sorted(str(p) for p in ([_tx_spec.path] if _tx_spec.path.is_file() else _tx_spec.path.iterdir()))
    if _tx_spec.sample_sheet is not None:
        TX_INPUTS.append(str(_tx_spec.sample_sheet))
except InputError:
    TX_KIND = "single_cell"
    TX_INPUTS = []


def tx_mem_mb(factor, floor=2000):
    """Memory scaled by input size: AnnData in memory is a few times the compressed file."""
    return lambda wildcards, input: max(floor, int(factor * input.size_mb))


def tx_runtime(per_gb, floor=10):
    """Minutes scaled by input size (measured ~3 min per GB of h5ad for clustering here)."""
    return lambda wildcards, input: max(floor, int(per_gb * input.size_mb / 1024))
