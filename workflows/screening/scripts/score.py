from pipelines.modalities.screening import process_screen, write_screen
from pipelines.toolkit.smk import run_step

s = snakemake


def score(**outputs):
    screen = process_screen(
        run_dir=s.params.run_dir,
        block=s.params.block,
        raw=list(s.input.raw),
        samples=list(s.params.samples),
        by_run_id=s.params.by_run_id,
    )
    return write_screen(screen, **outputs)


run_step(
    s,
    score,
    wells_out=s.output.wells,
    plates_out=s.output.plates,
    hits_out=s.output.hits,
    dose_response_out=s.output.fits,
    facts_out=s.output.facts,
)
