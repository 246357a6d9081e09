# Bulk RNA-seq: one light step (tables of thousands of genes x tens of samples).


rule transcriptomics_bulk:
    input:
        raw=TX_INPUTS,
    output:
        zarr=directory(TX_DATA / "adata.zarr"),
        obs=TX_DATA / "obs.parquet",
        var=TX_DATA / "var.parquet",
        counts=TX_DATA / "counts.parquet",
        correlation=TX_QC / "sample_correlation.parquet",
        pca=report(TX_QC / "pca_samples.png", caption="report/bulk_pca.rst", category="QC"),
        heatmap=report(TX_QC / "sample_correlation.png", caption="report/bulk_correlation.rst", category="QC"),
        summary=TX_WORK / "bulk_summary.json",
        facts=STAGE / "_meta" / "facts.json",
    params:
        run_dir=RUN_DIR,
        experiment=experiment_fields("modality", "transcriptomics", "samples"),
    log:
        LOGS / "transcriptomics_bulk.log",
    benchmark:
        BENCH / "transcriptomics_bulk.tsv"
    threads: 1
    resources:
        mem_mb=attempt_mem_mb(lambda wildcards, input: max(2000, int(20 * input.size_mb))),  # dense tables, small
        runtime=10,
    conda:
        "../../envs/transcriptomics.yaml"
    script:
        "scripts/bulk.py"


TX_SUMMARIES = [TX_WORK / "bulk_summary.json"]
TX_PUBLISHED = [TX_DATA / "adata.zarr", TX_DATA / "obs.parquet", TX_DATA / "var.parquet",
                TX_DATA / "counts.parquet", TX_QC / "sample_correlation.parquet", TX_QC / "pca_samples.png",
                TX_QC / "sample_correlation.png"]
