"""The shared toolkit every modality builds on (inputs, tables, figures ...).

Kept free of Snakemake, Prefect and boto3 imports: every Snakemake job imports it.
"""
