from pipelines.modalities.transcriptomics import load_single_cell
from pipelines.smk import run_step

run_step(snakemake, load_single_cell, run_dir=snakemake.params.run_dir,
         experiment=dict(snakemake.params.experiment), dest=snakemake.output.h5ad,
         facts_json=snakemake.output.facts)
