from pipelines.modalities.metabolomics import group_features
from pipelines.toolkit.smk import run_step

run_step(
    snakemake,
    group_features,
    peak_tables=list(snakemake.input.peaks),
    features_out=snakemake.output.features,
    peaks_out=snakemake.output.peaks,
    params=dict(snakemake.params.features),
    qc_out=snakemake.output.qc,
)
