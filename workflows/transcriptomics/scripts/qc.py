from pipelines.modalities.transcriptomics import load_and_qc
from pipelines.smk import run_step

out, params = snakemake.output, snakemake.params
run_step(snakemake, load_and_qc, run_dir=params.run_dir, experiment=dict(params.experiment), dest=out.h5ad,
         facts_json=out.facts, cells_parquet=out.cells, violin_png=out.violin, top_genes_png=out.top_genes,
         summary_json=out.summary)
