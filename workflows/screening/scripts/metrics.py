from pipelines.modalities.screening import write_metrics
from pipelines.toolkit.smk import run_step

s = snakemake
run_step(
    s,
    write_metrics,
    wells=s.input.wells,
    plates=s.input.plates,
    hits=s.input.hits,
    dose_response=s.input.fits,
    plots=list(s.input.plots),
    out=s.output.metrics,
)
