# cryoem_inspect: check every header, write _meta/facts.json (InputError -> exit 2).
from pipelines.modalities.cryoem import inspect_inputs
from pipelines.toolkit.smk import run_step

smk = snakemake
run_step(
    smk,
    inspect_inputs,
    run_dir=smk.params.run_dir,
    block=smk.params.block,
    by_run_id=smk.params.by_run_id,
    facts_json=smk.output.facts,
)
