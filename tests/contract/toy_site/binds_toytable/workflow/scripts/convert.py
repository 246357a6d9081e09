from binds_toytable import convert

from pipelines.toolkit.smk import run_step

smk = snakemake
run_step(
    smk, convert, sources=list(smk.input), dest=smk.output.table, delimiter=smk.params.delimiter
)
