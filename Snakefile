# binds-pipelines: one run folder -> one staged dataset (data/, qc/, _meta/).
#
# Normally started by `binds run RUN_DIR`, which validates experiment.yaml first and writes
# <stage>/_meta/experiment.json.  To run by hand (HPC operators):
#
#   binds validate RUN_DIR            # writes nothing, exit 2 on invalid metadata
#   snakemake --profile profiles/slurm \
#       --config run_dir=RUN_DIR stage_dir=WORK/stage modality=cryoem \
#                experiment=WORK/stage/_meta/experiment.json
#
# The workflow of the modality is the one its registration names (pipelines.modalities:
# workflows/<modality>/main.smk for the built-in ones); its rules are thin and call functions
# of the modality's package.

from pathlib import Path
import json

from snakemake.utils import min_version, validate

from pipelines.modalities import spec as modality_spec

min_version("9.0")


validate(config, schema="workflows/common/config.schema.yaml")

RUN_DIR = Path(config["run_dir"])
STAGE = Path(config["stage_dir"])
MODALITY = config["modality"]
EXPERIMENT = json.loads(Path(config["experiment"]).read_text())
LOGS = STAGE / "_meta" / "logs"

BENCH = STAGE / "_meta" / "benchmarks"


# Every modality workflow ends in qc/metrics.json (key QC figures for the catalog); its rule
# takes all the other outputs as input, so this one target builds the whole dataset.
rule all:
    input:
        STAGE / "qc" / "metrics.json",
    default_target: True


include: "workflows/common/common.smk"
include: str(modality_spec(MODALITY).path("workflow"))
