# Untargeted features: per run (mass traces -> chromatographic peaks), then grouped across runs.
# Detection holds one run's MS1 centroids in memory (~16 bytes per centroid) and works through
# m/z bands of <= 2 M centroids (~600 MB of temporaries), hence mem_mb scales with the run's
# spectra file (measured: 1.4 GiB for a 401 MB mzML, benchmarks/README.md).
rule metabolomics_detect_features:
    input:
        spectra=rules.metabolomics_convert.output.spectra,
    output:
        peaks=MET_WORK / "features" / "{run}.parquet",
    log:
        LOGS / "metabolomics_detect_features" / "{run}.log",
    benchmark:
        BENCH / "metabolomics_detect_features" / "{run}.tsv"
    params:
        features=MET["features"],
        sample_id=lambda wc: MET_SAMPLES[wc.run],
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(lambda wc, input: 1000 + 8 * met_size_mb(input.spectra)),
        runtime=lambda wc, input: 10 + met_size_mb(input.spectra) // 100,
    conda:
        "../../envs/metabolomics.yaml"
    script:
        "scripts/detect_features.py"


rule metabolomics_group_features:
    input:
        peaks=expand(MET_WORK / "features" / "{run}.parquet", run=MET_RUNS),
    output:
        features=STAGE / "data" / "features.parquet",
        peaks=STAGE / "data" / "feature_peaks.parquet",
        qc=MET_WORK / "features_qc.json",
    log:
        LOGS / "metabolomics_group_features.log",
    benchmark:
        BENCH / "metabolomics_group_features.tsv"
    params:
        features=MET["features"],
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(2000),
        runtime=30,
    conda:
        "../../envs/metabolomics.yaml"
    script:
        "scripts/group_features.py"
