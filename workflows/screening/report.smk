# QC plots (with captions for `snakemake --report`) and the metrics the catalog keeps.

SCREENING_QC = STAGE / "qc"


rule screening_plots:
    input:
        wells=STAGE / "data" / "wells.parquet",
        plates=STAGE / "data" / "plates.parquet",
        fits=STAGE / "data" / "dose_response.parquet",
    output:
        heatmap_raw=report(SCREENING_QC / "plate_heatmaps_raw.png", caption="report/heatmap_raw.rst", category="Screening"),
        heatmap_normalised=report(SCREENING_QC / "plate_heatmaps_normalised.png", caption="report/heatmap_normalised.rst", category="Screening"),
        plate_qc=report(SCREENING_QC / "plate_qc.png", caption="report/plate_qc.rst", category="Screening"),
        score_hist=report(SCREENING_QC / "score_distribution.png", caption="report/score_distribution.rst", category="Screening"),
        curves=report(SCREENING_QC / "dose_response_curves.png", caption="report/dose_response.rst", category="Screening"),
    params:
        block=SCREENING_BLOCK,
    log:
        LOGS / "screening_plots.log",
    benchmark:
        BENCH / "screening_plots.tsv"
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(lambda wildcards, input: screening_mb([input.wells], base=1000, factor=40)),
        runtime=20,
    conda:
        "../../envs/screening.yaml"
    script:
        "scripts/plots.py"


rule screening_metrics:
    input:
        wells=STAGE / "data" / "wells.parquet",
        plates=STAGE / "data" / "plates.parquet",
        hits=STAGE / "data" / "hits.parquet",
        fits=STAGE / "data" / "dose_response.parquet",
        plots=rules.screening_plots.output,
        facts=STAGE / "_meta" / "facts.json",
    output:
        metrics=STAGE / "qc" / "metrics.json",
    log:
        LOGS / "screening_metrics.log",
    benchmark:
        BENCH / "screening_metrics.tsv"
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(lambda wildcards, input: screening_mb([input.wells], base=500, factor=20)),
        runtime=10,
    conda:
        "../../envs/screening.yaml"
    script:
        "scripts/metrics.py"
