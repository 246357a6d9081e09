# Transcriptomics: decide once, while parsing, which rule set runs and which files it reads.
#
# The input is found by extension (pipelines.modalities.transcriptomics.discover) unless the
# experiment.yaml block names it.  When it cannot be resolved here the single-cell rules are
# used anyway: their first rule resolves again and reports the problem (file, place, hint)
# through run_step, so `binds run` exits 2 with that message instead of a parse traceback.

from pipelines.errors import InputError
from pipelines.modalities import transcriptomics as TX

modality_block("transcriptomics", fill_defaults=False)  # unknown keys stop here (defaults: TX.params_*)
TX_WORK = STAGE / "_meta" / "work"
TX_DATA = STAGE / "data"
TX_QC = STAGE / "qc"

try:
    _tx_spec = TX.resolve_input(RUN_DIR, TX.params_from_experiment(EXPERIMENT))
    TX_KIND = "single_cell" if _tx_spec.single_cell else "bulk"
    TX_INPUTS = [str(p) for p in TX.list_inputs(RUN_DIR, EXPERIMENT).files]
except InputError:
    TX_KIND = "single_cell"
    TX_INPUTS = []


# Requests from the matrix size in the file headers (stored counts), not the file size: see
# pipelines.modalities.transcriptomics.memory_mb (measured 6.6 GB at 166M counts).
TX_MEM_MB = TX.memory_mb(RUN_DIR, EXPERIMENT)
TX_COUNTS = TX.stored_counts(RUN_DIR, EXPERIMENT) or 0
# ~5 min per 166M counts here; three times that for slower nodes
TX_RUNTIME_MIN = max(10, 15 * TX_COUNTS // 166_000_000 + 10)
