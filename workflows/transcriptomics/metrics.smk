# Last rule: qc/metrics.json (key QC figures for the catalog), after every other output.


rule transcriptomics_metrics:
    input:
        summaries=TX_SUMMARIES,
        facts=STAGE / "_meta" / "facts.json",
        published=TX_PUBLISHED,
    output:
        metrics=TX_QC / "metrics.json",
    log:
        LOGS / "transcriptomics_metrics.log",
    benchmark:
        BENCH / "transcriptomics_metrics.tsv"
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(500),
        runtime=5,
    conda:
        "../../envs/transcriptomics.yaml"
    script:
        "scripts/metrics.py"
