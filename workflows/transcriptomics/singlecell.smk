# Single cell: one heavy step (load + checks -> QC -> normalise, HVG, PCA, kNN, UMAP, Leiden,
# markers -> write).  One process, not three: the matrix is never written out and read back
# between stages, and scanpy is imported once (~15% of the time at 100k cells, see
# benchmarks/README.md, transcriptomics).  The stages stay separate functions in
# pipelines.modalities.transcriptomics.singlecell (read_library, cell_qc, cluster), which return
# data; write_single_cell writes it to this rule's outputs.


rule transcriptomics_singlecell:
    input:
        raw=TX_INPUTS,
    output:
        facts=STAGE / "_meta" / "facts.json",
        cells=TX_QC / "cell_qc.parquet",
        violin=report(TX_QC / "qc_violin.png", caption="report/qc_violin.rst", category="QC"),
        top_genes=report(TX_QC / "highest_expressed_genes.png", caption="report/highest_expressed.rst",
                         category="QC"),
        qc_summary=TX_WORK / "qc_summary.json",
        zarr=directory(TX_DATA / "adata.zarr"),
        obs=TX_DATA / "obs.parquet",
        var=TX_DATA / "var.parquet",
        markers=TX_DATA / "markers.parquet",
        umap=report(TX_QC / "umap_leiden.png", caption="report/umap.rst", category="Clusters"),
        cluster_summary=TX_WORK / "cluster_summary.json",
    params:
        run_dir=RUN_DIR,
        experiment=experiment_fields("modality", "transcriptomics", "samples"),
    log:
        LOGS / "transcriptomics_singlecell.log",
    benchmark:
        BENCH / "transcriptomics_singlecell.tsv"
    threads: 2
    resources:
        mem_mb=attempt_mem_mb(TX_MEM_MB),
        runtime=TX_RUNTIME_MIN,
    conda:
        "../../envs/transcriptomics.yaml"
    script:
        "scripts/singlecell.py"


TX_SUMMARIES = [TX_WORK / "qc_summary.json", TX_WORK / "cluster_summary.json"]
TX_PUBLISHED = [TX_DATA / "adata.zarr", TX_DATA / "obs.parquet", TX_DATA / "var.parquet",
                TX_DATA / "markers.parquet", TX_QC / "cell_qc.parquet", TX_QC / "qc_violin.png",
                TX_QC / "highest_expressed_genes.png", TX_QC / "umap_leiden.png"]
