"""The curated store: local folder or S3, its key layout, and the commit protocol of a version.

A leaf: nothing here imports the layers above (metadata, jsonld, the catalog, the reports);
:mod:`pipelines.run.publishing` builds what describes a version and hands it down.

>>> from pipelines.store import open_store
>>> store = open_store("./store")                    # or "s3://bucket/prefix"
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.store.base import ObjectInfo, Store, StoreError, UploadItem
from pipelines.store.local import LocalStore

DEFAULT_STORE = "./store"


def store_url(url: str | None) -> str:
    """The store URL to use: the argument, else ``BINDS_STORE``, else ``./store``."""
    return url or os.environ.get("BINDS_STORE") or DEFAULT_STORE


def open_store(url: str | Path | None = None, *, read_only: bool = False) -> Store:
    """Open a local folder (a path) or an S3 prefix (``s3://bucket/prefix``)."""
    url = store_url(str(url) if url is not None else None)
    if url.startswith("s3://"):
        from pipelines.store.s3 import S3Store

        return S3Store(url, read_only=read_only)
    if "://" in url and not url.startswith("file://"):
        from pipelines.errors import InputError, Problem

        raise InputError(
            Problem(
                f"unsupported store URL {url!r}",
                where="--store",
                hint="a local folder or s3://bucket/prefix",
            )
        )
    return LocalStore(url.removeprefix("file://"), read_only=read_only)


#: The endpoint of a preservation copy at another S3 site (default: the source's endpoint).
COPY_ENDPOINT_ENV = "BINDS_COPY_S3_ENDPOINT_URL"


def open_copy(url: str, *, read_only: bool = True) -> Store:
    """A preservation copy (``binds replicate --to``, ``binds verify --copy``, ``binds
    serve-data --replica``): :func:`open_store`, on :data:`COPY_ENDPOINT_ENV` when it is S3."""
    import os

    store = open_store(url, read_only=read_only)
    endpoint = os.environ.get(COPY_ENDPOINT_ENV)
    if endpoint and store.url.startswith("s3://"):
        from pipelines.store.s3 import S3Store

        return S3Store(store.url, endpoint_url=endpoint, read_only=read_only)
    return store


__all__ = [
    "COPY_ENDPOINT_ENV",
    "LocalStore",
    "ObjectInfo",
    "Store",
    "StoreError",
    "UploadItem",
    "open_copy",
    "open_store",
    "store_url",
]
