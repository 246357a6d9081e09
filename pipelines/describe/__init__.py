"""What describes a version: experiment metadata and its template, JSON-LD, DCAT, the catalog,
the QC report, the provenance crate, job records, the usage record and billing, the embargo
record, BagIt export.

Imports the toolkit, the modalities, the store and the reader (``pipelines.access``); never the
layers that run or orchestrate a workflow (``pipelines.run``, ``pipelines.orchestrate``,
``pipelines.cli``): tests/core/test_code_shape.py checks it.
"""
