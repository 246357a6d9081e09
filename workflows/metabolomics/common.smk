# Metabolomics: resolve the runs and parameters once, before any rule.
#
# Every *.mzML / *.mzML.gz / *.mzML.idx.gz of the run folder is one run, named after its file
# (pipelines.modalities.metabolomics.find_runs).  Parameters are the experiment.yaml block with
# the schema's defaults filled in (metadata/schemas/metabolomics.schema.json).

import json
import re

from pipelines.modalities import metabolomics as MET_MOD

MET = MET_MOD.resolve_params(EXPERIMENT.get("metabolomics") or {}, run_dir=RUN_DIR)
MET_RUNS = MET_MOD.find_runs(RUN_DIR)
MET_WORK = STAGE / "_meta" / "metabolomics"
MET_FEATURES = bool(MET["features"]["enabled"])
MET_TARGETS = MET["targets"]

_problems = MET_MOD.plan_problems(RUN_DIR, MET, MET_RUNS)
if _problems:
    # reported like a rule's bad input (binds run prints them, exit 2), not as a parse traceback
    _err = STAGE / "_meta" / "errors" / "metabolomics_plan.json"
    _err.parent.mkdir(parents=True, exist_ok=True)
    _err.write_text(json.dumps({"rule": "metabolomics_plan", "problems": [p.to_dict() for p in _problems]}))
    raise ValueError("; ".join(str(p) for p in _problems))


wildcard_constraints:
    run="|".join(re.escape(r) for r in MET_RUNS),


def met_size_mb(path):
    return max(1, Path(path).stat().st_size // 2**20)

