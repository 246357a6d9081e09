from pipelines.modalities.screening import make_plots
from pipelines.toolkit.smk import run_step

s = snakemake
run_step(
    s,
    make_plots,
    wells=s.input.wells,
    plates=s.input.plates,
    dose_response=s.input.fits,
    block=s.params.block,
    heatmap_raw=s.output.heatmap_raw,
    heatmap_normalised=s.output.heatmap_normalised,
    plate_qc=s.output.plate_qc,
    score_hist=s.output.score_hist,
    curves=s.output.curves,
)
