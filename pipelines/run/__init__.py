"""Running a workflow and publishing what it produced: the run folder's checks (the privacy
gate), the work folder's lock, Snakemake's command and its steps, publishing a version.

Never imports Prefect or ``pipelines.orchestrate``: a run works without any server, and the
Prefect layer watches it from above (tests/core/test_code_shape.py checks it).
"""
