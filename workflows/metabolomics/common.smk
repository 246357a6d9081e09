# Metabolomics: resolve the runs and parameters once, before any rule.
#
# Every *.mzML / *.mzML.gz / *.mzML.idx.gz of the run folder is one run, named after its file
# (pipelines.modalities.metabolomics.find_runs).  Parameters are the experiment.yaml block with
# the schema's defaults filled in (metadata/schemas/metabolomics.schema.json).

import re

from pipelines.run import privacy_gate as PRIVACY
from pipelines.modalities import metabolomics as MET_MOD

MET = MET_MOD.resolve_params(modality_block("metabolomics"), run_dir=RUN_DIR)
# human data: run ids (run-001 ...) instead of file names (pipelines.run.privacy_gate.run_ids)
MET_RUNS = MET_MOD.find_runs(RUN_DIR, experiment=EXPERIMENT)
MET_PRIVATE = PRIVACY.applies(EXPERIMENT)
MET_WORK = STAGE / "_meta" / "metabolomics"
MET_FEATURES = bool(MET["features"]["enabled"])
MET_TARGETS = MET["targets"]

_problems = MET_MOD.plan_problems(RUN_DIR, MET, MET_RUNS)
# run -> experiment.yaml sample (samples[].files); every table row of the run carries it
MET_SAMPLES = MET_MOD.run_samples(RUN_DIR, EXPERIMENT, MET_RUNS, problems=_problems)
if _problems:
    stop_with_problems("metabolomics_plan", _problems)


wildcard_constraints:
    run="|".join(re.escape(r) for r in MET_RUNS),


def met_size_mb(path):
    return max(1, Path(path).stat().st_size // 2**20)

