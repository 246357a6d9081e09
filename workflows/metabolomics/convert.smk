# One job per mzML: stream it into the run's spectra and chromatogram Parquet files.
# Memory is bounded by the decode batches (~8 MiB of XML each, 3 in flight) and one row group
# (~64 MiB of peaks), not by the file size: ~350 MiB measured, plus ~90 MiB per decoding
# process on files of small spectra; runtime scales with it (~30 MB/s worst case here).
# Small files decode in the job's one process, so that two of them convert side by side; from
# 64 MB a job takes 2 cores (two decoding processes or threads, see MzMLReader).
rule metabolomics_convert:
    input:
        mzml=lambda wc: MET_RUNS[wc.run],
    output:
        spectra=STAGE / "data" / "spectra.parquet" / "{run}.parquet",
        chromatograms=STAGE / "data" / "chromatograms.parquet" / "{run}.parquet",
        qc=MET_WORK / "runs" / "{run}.json",
    log:
        LOGS / "metabolomics_convert" / "{run}.log",
    benchmark:
        BENCH / "metabolomics_convert" / "{run}.tsv"
    params:
        sample_id=lambda wc: MET_SAMPLES[wc.run],
        # human data: the QC and the log name the file by its run id
        file_label=lambda wc: f"{wc.run}.mzML" if MET_PRIVATE else None,
    threads: lambda wc, input: 2 if met_size_mb(input.mzml) >= 64 else 1
    resources:
        mem_mb=attempt_mem_mb(1000),
        runtime=lambda wc, input: 5 + met_size_mb(input.mzml) // 1800,
    conda:
        "../../envs/metabolomics.yaml"
    script:
        "scripts/convert.py"
