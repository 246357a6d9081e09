# Read the raw plate files in batches: thousands of plates become a few jobs, not thousands.

rule screening_read_batch:
    input:
        files=screening_batch_files,
        meta=screening_metadata_files,
    output:
        raw=SCREENING_WORK / "raw" / "batch_{batch}.parquet",
    params:
        run_dir=RUN_DIR,
        block=SCREENING_BLOCK,
        by_run_id=BY_RUN_ID,  # human data: run ids in the `file` column
    wildcard_constraints:
        batch=r"\d+",
    log:
        LOGS / "screening_read_batch" / "{batch}.log",
    benchmark:
        BENCH / "screening_read_batch" / "{batch}.tsv"
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(lambda wildcards, input: screening_mb(input.files, base=500, factor=30)),
        runtime=lambda wildcards, input: 10 + len(input.files) // 100,
    conda:
        "../../envs/screening.yaml"
    script:
        "scripts/read_batch.py"
