from pipelines.modalities.metabolomics import detect_features
from pipelines.toolkit.smk import run_step

run_step(
    snakemake,
    detect_features,
    spectra=snakemake.input.spectra,
    out=snakemake.output.peaks,
    params=dict(snakemake.params.features),
    run=snakemake.wildcards.run,
    sample_id=snakemake.params.sample_id,
)
