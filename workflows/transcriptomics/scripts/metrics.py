from pipelines.modalities.transcriptomics import write_metrics
from pipelines.toolkit.smk import run_step

run_step(
    snakemake,
    write_metrics,
    dest=snakemake.output.metrics,
    summaries=list(snakemake.input.summaries),
    facts_json=snakemake.input.facts,
)
