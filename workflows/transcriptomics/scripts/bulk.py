from pipelines.modalities.transcriptomics import process_bulk, write_bulk
from pipelines.toolkit.smk import run_step

out = snakemake.output


def bulk(**outputs):
    result = process_bulk(
        run_dir=snakemake.params.run_dir, experiment=dict(snakemake.params.experiment)
    )
    return write_bulk(result, **outputs)


run_step(
    snakemake,
    bulk,
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
