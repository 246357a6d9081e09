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

if not MET_RUNS:
    # report it like a rule's bad input (binds run prints it, exit 2) instead of a parse traceback
    _err = STAGE / "_meta" / "errors" / "metabolomics_common.json"
    _err.parent.mkdir(parents=True, exist_ok=True)
    _err.write_text(json.dumps({"rule": "metabolomics_common", "problems": [
        {"file": str(RUN_DIR), "where": None, "message": "no mzML files in the run folder",
         "hint": "put the .mzML (or .mzML.gz) files in the run folder"}]}))
    raise ValueError(f"no mzML files in {RUN_DIR}")


wildcard_constraints:
    run="|".join(re.escape(r) for r in MET_RUNS),


def met_size_mb(path):
    return max(1, Path(path).stat().st_size // 2**20)


def met_spectra(run):
    return STAGE / "data" / "spectra.parquet" / f"{run}.parquet"


def met_chromatograms(run):
    return STAGE / "data" / "chromatograms.parquet" / f"{run}.parquet"
