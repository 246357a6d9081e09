# Transcriptomics workflow.  One run folder = one 10x library or one bulk count table.
#   single cell: load (10x h5 / mtx / h5ad) -> QC (MAD outliers, doublets) -> cluster + write
#   bulk:        count table + sample sheet -> log-CPM, PCA, correlation + write
# Both end in qc/metrics.json.  Processing lives in pipelines.modalities.transcriptomics; the
# rules only call it (scripts/*.py, a few lines each).


include: "common.smk"


if TX_KIND == "single_cell":

    include: "singlecell.smk"

else:

    include: "bulk.smk"


include: "metrics.smk"
