from pipelines.modalities.transcriptomics import process_bulk
from pipelines.toolkit.smk import run_step

out = snakemake.output
run_step(
    snakemake,
    process_bulk,
    run_dir=snakemake.params.run_dir,
    experiment=dict(snakemake.params.experiment),
    adata_zarr=out.zarr,
    obs_parquet=out.obs,
    var_parquet=out.var,
    counts_parquet=out.counts,
    correlation_parquet=out.correlation,
    pca_png=out.pca,
    correlation_png=out.heatmap,
    summary_json=out.summary,
    facts_json=out.facts,
)
