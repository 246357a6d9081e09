from pipelines.modalities.screening import read_batch
from pipelines.toolkit.smk import run_step

run_step(
    snakemake,
    read_batch,
    run_dir=snakemake.params.run_dir,
    block=snakemake.params.block,
    batch=int(snakemake.wildcards.batch),
    out=snakemake.output.raw,
    by_run_id=snakemake.params.by_run_id,
)
