# Targeted quantification: XICs of the targets CSV in every run -> peak area, mass error.
# Only included when the run folder has a targets file (see common.smk).
rule metabolomics_quantify_targets:
    input:
        spectra=expand(STAGE / "data" / "spectra.parquet" / "{run}.parquet", run=MET_RUNS),
        targets=MET_TARGETS,
    output:
        targets=STAGE / "data" / "targets.parquet",
        qc=MET_WORK / "targets_qc.json",
    log:
        LOGS / "metabolomics_quantify_targets.log",
    benchmark:
        BENCH / "metabolomics_quantify_targets.tsv"
    params:
        runs=list(MET_RUNS),
        ppm=MET["target_ppm"],
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(1000),
        runtime=lambda wc, input: 10 + sum(met_size_mb(p) for p in input.spectra) // 200,
    conda:
        "../../envs/metabolomics.yaml"
    script:
        "scripts/quantify_targets.py"
