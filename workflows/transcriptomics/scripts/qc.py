from pipelines.modalities.transcriptomics import qc_cells
from pipelines.smk import run_step

out = snakemake.output
run_step(snakemake, qc_cells, src=snakemake.input.h5ad, dest=out.h5ad, cells_parquet=out.cells,
         violin_png=out.violin, top_genes_png=out.top_genes, summary_json=out.summary,
         experiment=dict(snakemake.params.experiment))
