from pipelines.modalities.metabolomics import quantify_targets
from pipelines.toolkit.smk import run_step

run_step(
    snakemake,
    quantify_targets,
    spectra=list(snakemake.input.spectra),
    runs=list(snakemake.params.runs),
    targets_csv=snakemake.input.targets,
    out=snakemake.output.targets,
    default_ppm=float(snakemake.params.ppm),
    qc_out=snakemake.output.qc,
)
