from pipelines.modalities.metabolomics import write_qc
from pipelines.toolkit.smk import run_step

inp, out = snakemake.input, snakemake.output
run_step(
    snakemake,
    write_qc,
    conversions=list(inp.conversions),
    chromatograms=list(inp.chromatograms),
    experiment=dict(snakemake.params.experiment),
    metrics_out=out.metrics,
    runs_out=out.runs,
    tic_png=out.tic,
    facts_out=out.facts,
    features_qc=inp.features_qc[0] if inp.features_qc else None,
    targets_qc=inp.targets_qc[0] if inp.targets_qc else None,
    targets=inp.targets[0] if inp.targets else None,
    target_png=out.target_png[0] if out.target_png else None,
)
