# cryoem_metrics: qc/metrics.json, the flat key figures the catalog keeps.
from pipelines.modalities.cryoem import write_metrics
from pipelines.toolkit.smk import run_step

smk = snakemake
run_step(
    smk,
    write_metrics,
    zarr_path=smk.input.zarr,
    stats_json=smk.input.stats,
    facts_json=smk.input.facts,
    fsc_json=smk.input.get("fsc"),
    metrics_json=smk.output.metrics,
)
