# Last rule: QC plots, the per-run table, facts for metadata.jsonld and qc/metrics.json.
# It takes every other output as input, so `rule all` (qc/metrics.json) builds the dataset.
rule metabolomics_qc:
    input:
        conversions=expand(MET_WORK / "runs" / "{run}.json", run=MET_RUNS),
        spectra=expand(STAGE / "data" / "spectra.parquet" / "{run}.parquet", run=MET_RUNS),
        chromatograms=expand(STAGE / "data" / "chromatograms.parquet" / "{run}.parquet", run=MET_RUNS),
        features_qc=[MET_WORK / "features_qc.json"] if MET_FEATURES else [],
        features=[STAGE / "data" / "features.parquet", STAGE / "data" / "feature_peaks.parquet"] if MET_FEATURES else [],
        targets_qc=[MET_WORK / "targets_qc.json"] if MET_TARGETS else [],
        targets=[STAGE / "data" / "targets.parquet"] if MET_TARGETS else [],
    output:
        metrics=STAGE / "qc" / "metrics.json",
        runs=STAGE / "qc" / "runs.parquet",
        tic=report(STAGE / "qc" / "tic_bpc.png", caption="report/tic_bpc.rst", category="QC"),
        target_png=[report(STAGE / "qc" / "target_mass_errors.png", caption="report/target_mass_errors.rst",
                           category="QC")] if MET_TARGETS else [],
        facts=STAGE / "_meta" / "facts.json",
    log:
        LOGS / "metabolomics_qc.log",
    benchmark:
        BENCH / "metabolomics_qc.tsv"
    params:
        experiment=experiment_fields("modality", "metabolomics", "instrument"),
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(1000),
        runtime=10,
    conda:
        "../../envs/metabolomics.yaml"
    script:
        "scripts/qc.py"
