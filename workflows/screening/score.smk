# Score the whole screen and fit every compound's dose-response curve in one job: both are
# vectorised over plates/compounds (1,000 plates take well under a second), so a second job
# would cost more in interpreter start-up than it computes.

rule screening_score:
    input:
        raw=expand(SCREENING_WORK / "raw" / "batch_{batch}.parquet", batch=SCREENING_BATCHES),
        meta=screening_metadata_files,
    output:
        wells=STAGE / "data" / "wells.parquet",
        plates=STAGE / "data" / "plates.parquet",
        hits=STAGE / "data" / "hits.parquet",
        fits=STAGE / "data" / "dose_response.parquet",
        facts=STAGE / "_meta" / "facts.json",
    params:
        run_dir=RUN_DIR,
        block=SCREENING_BLOCK,
        samples=EXPERIMENT.get("samples") or [],
        by_run_id=BY_RUN_ID,  # human data: the batches name the files by run id
    log:
        LOGS / "screening_score.log",
    benchmark:
        BENCH / "screening_score.tsv"
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(lambda wildcards, input: screening_mb(input.raw, base=1000, factor=60)),
        runtime=30,
    conda:
        "../../envs/screening.yaml"
    script:
        "scripts/score.py"
