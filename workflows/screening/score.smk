# Score the whole screen in one job (vectorised over plates: 1,000 plates take well under a
# second), then fit the dose-response curves of all compounds in one batched job.

rule screening_score:
    input:
        raw=expand(SCREENING_WORK / "raw" / "batch_{batch}.parquet", batch=SCREENING_BATCHES),
        meta=screening_metadata_files,
    output:
        wells=STAGE / "data" / "wells.parquet",
        plates=STAGE / "data" / "plates.parquet",
        hits=STAGE / "data" / "hits.parquet",
        facts=STAGE / "_meta" / "facts.json",
    params:
        run_dir=RUN_DIR,
        block=SCREENING_BLOCK,
    log:
        LOGS / "screening_score.log",
    benchmark:
        BENCH / "screening_score.tsv"
    threads: 1
    resources:
        mem_mb=lambda wildcards, input: screening_mb(input.raw, base=1000, factor=60),
        runtime=30,
    conda:
        "../../envs/screening.yaml"
    script:
        "scripts/score.py"


rule screening_dose_response:
    input:
        wells=STAGE / "data" / "wells.parquet",
    output:
        fits=STAGE / "data" / "dose_response.parquet",
    params:
        block=SCREENING_BLOCK,
    log:
        LOGS / "screening_dose_response.log",
    benchmark:
        BENCH / "screening_dose_response.tsv"
    threads: 1
    resources:
        mem_mb=lambda wildcards, input: screening_mb([input.wells], base=1000, factor=40),
        runtime=30,
    conda:
        "../../envs/screening.yaml"
    script:
        "scripts/dose_response.py"
