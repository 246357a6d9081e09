from pipelines.modalities.screening import fit_dose_response
from pipelines.smk import run_step

s = snakemake  # noqa: F821 - injected by Snakemake
run_step(s, fit_dose_response, wells=s.input.wells, block=s.params.block, out=s.output.fits)
