# cryoem_inspect: check every header, write _meta/facts.json (InputError -> exit 2).
from pipelines.modalities.cryoem import inspect_inputs
from pipelines.smk import run_step

run_step(snakemake, inspect_inputs, run_dir=snakemake.params.run_dir, block=snakemake.params.block,  # noqa: F821
         facts_json=snakemake.output.facts)  # noqa: F821
