from pipelines.modalities.transcriptomics import cluster_cells
from pipelines.smk import run_step

out = snakemake.output
run_step(snakemake, cluster_cells, src=snakemake.input.h5ad, adata_zarr=out.zarr, obs_parquet=out.obs,
         var_parquet=out.var, markers_parquet=out.markers, umap_png=out.umap, summary_json=out.summary,
         experiment=dict(snakemake.params.experiment))
