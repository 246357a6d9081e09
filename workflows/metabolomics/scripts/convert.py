from pipelines.modalities.metabolomics import convert_mzml
from pipelines.toolkit.smk import run_step

run_step(
    snakemake,
    convert_mzml,
    src=snakemake.input.mzml,
    spectra_out=snakemake.output.spectra,
    chromatograms_out=snakemake.output.chromatograms,
    qc_out=snakemake.output.qc,
    run=snakemake.wildcards.run,
    sample_id=snakemake.params.sample_id,
    threads=snakemake.threads,
    file_label=snakemake.params.file_label,
)
