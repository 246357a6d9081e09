# Single cell: two heavy steps, each a fresh process so that peak memory is per step.
# Load and QC share one process: the unfiltered matrix is never written out and read back.


rule transcriptomics_qc:
    input:
        raw=TX_INPUTS,
    output:
        h5ad=temp(TX_WORK / "qc_passed.h5ad"),
        facts=STAGE / "_meta" / "facts.json",
        cells=TX_QC / "cell_qc.parquet",
        violin=report(TX_QC / "qc_violin.png", caption="report/qc_violin.rst", category="QC"),
        top_genes=report(TX_QC / "highest_expressed_genes.png", caption="report/highest_expressed.rst",
                         category="QC"),
        summary=TX_WORK / "qc_summary.json",
    params:
        run_dir=RUN_DIR,
        experiment=EXPERIMENT,
    log:
        LOGS / "transcriptomics_qc.log",
    benchmark:
        BENCH / "transcriptomics_qc.tsv"
    threads: 1
    resources:
        mem_mb=tx_mem_mb(8),
        runtime=tx_runtime(10),
    conda:
        "../../envs/transcriptomics.yaml"
    script:
        "scripts/qc.py"


rule transcriptomics_cluster:
    input:
        h5ad=TX_WORK / "qc_passed.h5ad",
    output:
        zarr=directory(TX_DATA / "adata.zarr"),
        obs=TX_DATA / "obs.parquet",
        var=TX_DATA / "var.parquet",
        markers=TX_DATA / "markers.parquet",
        umap=report(TX_QC / "umap_leiden.png", caption="report/umap.rst", category="Clusters"),
        summary=TX_WORK / "cluster_summary.json",
    params:
        experiment=EXPERIMENT,
    log:
        LOGS / "transcriptomics_cluster.log",
    benchmark:
        BENCH / "transcriptomics_cluster.tsv"
    threads: 2
    resources:
        mem_mb=tx_mem_mb(3),
        runtime=tx_runtime(15),
    conda:
        "../../envs/transcriptomics.yaml"
    script:
        "scripts/cluster.py"


TX_SUMMARIES = [TX_WORK / "qc_summary.json", TX_WORK / "cluster_summary.json"]
TX_PUBLISHED = [TX_DATA / "adata.zarr", TX_DATA / "obs.parquet", TX_DATA / "var.parquet",
                TX_DATA / "markers.parquet", TX_QC / "cell_qc.parquet", TX_QC / "qc_violin.png",
                TX_QC / "highest_expressed_genes.png", TX_QC / "umap_leiden.png"]
