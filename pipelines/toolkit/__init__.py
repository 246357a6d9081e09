"""The shared toolkit every modality builds on: the run-folder guard and input list
(:mod:`.inputs`), the table writer (:mod:`.tables`), deterministic figures (:mod:`.figures`).

Kept free of Snakemake, Prefect and boto3 imports: every Snakemake job imports it.
"""
