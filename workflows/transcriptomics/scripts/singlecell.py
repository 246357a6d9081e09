from pipelines.modalities.transcriptomics import process_single_cell, write_single_cell
from pipelines.toolkit.smk import run_step

out = snakemake.output


def single_cell(**outputs):
    result = process_single_cell(
        run_dir=snakemake.params.run_dir, experiment=dict(snakemake.params.experiment)
    )
    return write_single_cell(result, **outputs)


run_step(
    snakemake,
    single_cell,
    facts_json=out.facts,
    cells_parquet=out.cells,
    violin_png=out.violin,
    top_genes_png=out.top_genes,
    qc_summary_json=out.qc_summary,
    adata_zarr=out.zarr,
    obs_parquet=out.obs,
    var_parquet=out.var,
    markers_parquet=out.markers,
    umap_png=out.umap,
    cluster_summary_json=out.cluster_summary,
)
