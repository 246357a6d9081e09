"""Read the curated store: the catalog, and any dataset version as its standard object.

For AI teams; needs only pyarrow, pandas, fsspec (s3fs for ``s3://``), zarr and, for
transcriptomics, anndata: no Snakemake, Prefect or boto3 (light install: README, "For AI
teams")::

    from pipelines import access
    cat = access.catalog("s3://binds-curated", modality="screening", z_prime_median__min=0.5)
    wells = access.open("binds-2026-0042-screening")           # pyarrow.dataset.Dataset
    root = access.open("binds-2026-0007-cryoem", version=2)    # zarr.Group (OME-Zarr 0.5)
    adata = access.open("binds-2026-0011-transcriptomics")     # AnnData, X backed by Zarr

S3 endpoint and credentials: the standard AWS settings (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` or a profile, ``AWS_DEFAULT_REGION``);
``BINDS_S3_ENDPOINT_URL`` is still honoured.
"""

from __future__ import annotations

from pipelines.access.reader import DatasetNotFound, catalog, manifest, open, samples, verify

__all__ = ["DatasetNotFound", "catalog", "manifest", "open", "samples", "verify"]
