from binds_toytable import write_metrics

from pipelines.toolkit.smk import run_step

smk = snakemake
run_step(smk, write_metrics, table=smk.input.table, dest=smk.output.metrics)
