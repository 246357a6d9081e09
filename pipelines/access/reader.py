"""The reader API: :func:`catalog`, :func:`open`, :func:`manifest`, :func:`verify`.

Everything goes through fsspec, so a local folder and ``s3://bucket/prefix`` behave alike;
nothing is downloaded that the caller does not read (Zarr chunks and Parquet row groups are
fetched on access).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipelines.access.catalog_schema import CATALOG_SCHEMA, filter_frame, latest_only

ACCESS_LEVELS = ("open", "consortium", "restricted")
DEFAULT_STORE = "./store"
#: what :func:`open` returns when ``path`` is not given
# The main entry of the built-ins' versions catalogued before the catalog listed each version's
# main entry first (binds-pipelines 0.1): those rows list their entries sorted. Every other
# modality's main entry is the first of its row's data_paths (ModalitySpec.main_data).
MAIN_DATA_BEFORE_0_2 = {
    "cryoem": "data/map.ome.zarr",
    "transcriptomics": "data/adata.zarr",
    "screening": "data/wells.parquet",
    "metabolomics": "data/spectra.parquet",
}


class DatasetNotFound(LookupError):
    """No such dataset (or version) in the catalog levels this store lets us read."""


@dataclass(frozen=True)
class _Root:
    fs: Any  # fsspec filesystem
    path: str  # root path inside it, no trailing slash
    url: str  # what the user gave
    arrow_fs: Any = None  # the same as a pyarrow filesystem (Parquet reads), when there is one

    def join(self, *parts: str) -> str:
        return "/".join([self.path, *(p.strip("/") for p in parts if p)])


def endpoint_url() -> str | None:
    """The S3 endpoint: ``AWS_ENDPOINT_URL`` (the standard variable every AWS tool reads), else
    ``BINDS_S3_ENDPOINT_URL``; AWS itself when neither is set."""
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("BINDS_S3_ENDPOINT_URL") or None


def _root(store: str | os.PathLike[str] | None) -> _Root:
    url = (
        os.fspath(store) if store is not None else (os.environ.get("BINDS_STORE") or DEFAULT_STORE)
    )
    if url.startswith("s3://"):
        # pyarrow's S3 client (the AWS C++ SDK): the standard credential chain, and a cold
        # start of ~0.3 s where botocore-based clients (s3fs) need ~1.5 s to load their models
        import pyarrow.fs as pafs
        from fsspec.implementations.arrow import ArrowFSWrapper

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        options: dict[str, Any] = {"region": region} if region else {}
        if ep := endpoint_url():
            options["endpoint_override"] = ep
            options.setdefault("region", "us-east-1")
        arrow_fs = pafs.S3FileSystem(**options)

        class _S3(ArrowFSWrapper):
            @property
            def fsid(self) -> str:  # fsspec's derives it from a host name S3 has not got
                return f"arrow-s3-{id(self.fs)}"

            def cat_file(self, path, start=None, end=None, **kwargs):
                # one sized read into one bytes object (every Zarr chunk comes through here):
                # fsspec's default opens an unsized stream, which pyarrow reads in small
                # pieces (each a ranged GET) and then joins, a second copy of the chunk
                with self.fs.open_input_file(self._strip_protocol(path)) as f:
                    size = f.size()
                    lo = 0 if start is None else (start if start >= 0 else max(0, size + start))
                    hi = size if end is None else min(size, end if end >= 0 else size + end)
                    return f.read_at(max(0, hi - lo), lo)

        return _Root(_S3(arrow_fs), url.removeprefix("s3://").rstrip("/"), url, arrow_fs)
    if "://" in url and not url.startswith("file://"):
        raise ValueError(f"unsupported store URL {url!r}: a local folder or s3://bucket/prefix")
    from fsspec.implementations.local import LocalFileSystem

    path = os.path.abspath(url.removeprefix("file://"))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no store folder at {path}")
    return _Root(LocalFileSystem(), path.rstrip("/"), url)


def _catalog_files(root: _Root, levels: Iterable[str], dataset_id: str | None = None) -> list[str]:
    """The catalog row files (one listing per level; a level we may not list is skipped)."""
    files = []
    for level in levels:
        try:
            names = root.fs.ls(root.join(level, "catalog"), detail=False)
        except (PermissionError, FileNotFoundError, OSError):
            continue
        for name in names:
            base = name.rsplit("/", 1)[-1]
            if base.endswith(".parquet") and (dataset_id is None or f"--{dataset_id}--v" in base):
                files.append(name)
    return sorted(files)


class _FsSource:
    """The store root as the catalog log's source (fsspec reads, in parallel)."""

    def __init__(self, root: _Root) -> None:
        self.root = root
        self.workers = 16 if root.url.startswith("s3://") else 8

    def get(self, key: str) -> bytes:
        try:
            return self.root.fs.cat_file(self.root.join(key))
        except FileNotFoundError:
            raise KeyError(key) from None

    def list(self, prefix: str) -> list[str]:
        try:
            names = self.root.fs.ls(self.root.join(prefix), detail=False)
        except FileNotFoundError:
            return []
        start = len(self.root.path) + 1
        return sorted(n[start:] for n in names if n.endswith(".parquet") or n.endswith(".json"))


def _catalog_table(root: _Root, levels: Iterable[str], dataset_id: str | None = None):
    import pyarrow as pa
    import pyarrow.dataset as ds

    if dataset_id is None:  # the newest snapshot plus the recent rows of each level
        from pipelines.access.catalog_log import SORT, read_state

        tables = []
        for level in levels:
            try:
                tables.append(read_state(_FsSource(root), f"{level}/catalog/").table)
            except (PermissionError, OSError):
                continue  # a level we may not read
        tables = [t for t in tables if t.num_rows]
        if len(tables) == 1:
            return tables[0]
        return pa.concat_tables(tables).sort_by(SORT) if tables else CATALOG_SCHEMA.empty_table()
    files = _catalog_files(root, levels, dataset_id)
    if not files:
        return CATALOG_SCHEMA.empty_table()
    # the current schema: rows written by older versions get the new columns as nulls
    return ds.dataset(
        files, format="parquet", filesystem=root.arrow_fs or root.fs, schema=CATALOG_SCHEMA
    ).to_table()


def _to_pandas(table):
    import pandas as pd
    import pyarrow as pa

    mapping = {
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    df = table.to_pandas(types_mapper=mapping.get)
    if len(df):
        df = df.sort_values(["created", "dataset_id", "version"], ascending=[False, True, False])
    return df.reset_index(drop=True)


def catalog(
    store: str | os.PathLike[str] | None = None,
    *,
    levels: Iterable[str] = ACCESS_LEVELS,
    latest: bool = False,
    token: str | None = None,
    **filters: Any,
):
    """The catalog as a pandas DataFrame (one row per version, newest first), filtered.

    ``store``: a folder or ``s3://bucket/prefix`` (default ``BINDS_STORE``, else ``./store``).
    Filters (docs/formats/store.md lists the columns): ``modality="cryoem"``,
    ``organisms="NCBITaxon:9606"`` (list columns: contains), ``licence=["CC0-1.0", "CC-BY-4.0"]``
    (any of), ``qc_pass=True``, ``resolution_angstrom__max=3.5``, ``acquired__min="2026-01-01"``,
    a callable on the column.  ``latest``: only the newest version of each dataset.

    ``store`` may be a data service (``http(s)://host:port``, ``binds serve-data``): its
    ``/catalog`` lists what ``token`` (a bearer token / GA4GH passport) may read, with a
    ``drs_id`` column.
    """
    from pipelines.access import drs

    if drs.is_service(store):
        df = drs.catalog_frame(drs.service_url(str(store)), token)
        df = df[df["access"].isin(list(levels))]
        df = filter_frame(df, filters)
        return (latest_only(df) if latest else df).reset_index(drop=True)
    df = _to_pandas(_catalog_table(_root(store), levels))
    df = filter_frame(df, filters)
    return (latest_only(df) if latest else df).reset_index(drop=True)


def samples(
    store: str | os.PathLike[str] | None = None,
    *,
    levels: Iterable[str] = ACCESS_LEVELS,
    latest: bool = True,
    **filters: Any,
):
    """One row per (sample, dataset version): ``sample_id``, ``organism``, ``tissue``,
    ``cell_type``, ``compound`` (ontology ids) with ``dataset_id``, ``version``, ``modality``,
    ``access``, ``path``, so a compound or cell line can be joined across modalities.

    ``filters`` apply to these columns (same rules as :func:`catalog`); ``latest``: only the
    newest version of each dataset (default).
    """
    import pandas as pd

    cat = catalog(store, levels=levels, latest=latest)
    rows = [
        {
            **s,
            "dataset_id": r.dataset_id,
            "version": r.version,
            "modality": r.modality,
            "access": r.access,
            "path": r.path,
        }
        for r in cat.itertuples()
        for s in (r.samples if r.samples is not None else [])
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "sample_id",
            "organism",
            "tissue",
            "cell_type",
            "compound",
            "dataset_id",
            "version",
            "modality",
            "access",
            "path",
        ],
    )
    return filter_frame(df, filters).reset_index(drop=True)


def _row(root: _Root, dataset_id: str, version: int | str):
    # only this dataset's row files are read (the file names carry the dataset id)
    df = _to_pandas(_catalog_table(root, ACCESS_LEVELS, dataset_id))
    df = df[df["dataset_id"] == dataset_id]
    if df.empty:
        raise DatasetNotFound(f"no dataset {dataset_id!r} in {root.url}")
    if version != "latest":
        df = df[df["version"] == int(str(version).removeprefix("v"))]
        if df.empty:
            raise DatasetNotFound(f"{dataset_id} has no version {version} in {root.url}")
    return df.sort_values("version").iloc[-1]


def manifest(
    dataset_id: str, version: int | str = "latest", store: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The version's manifest.json (every file with size and sha256)."""
    root = _root(store)
    row = _row(root, dataset_id, version)
    with root.fs.open(root.join(row["path"], "manifest.json"), "rb") as f:
        return json.load(f)


def verify(
    dataset_id: str,
    version: int | str = "latest",
    store: str | os.PathLike[str] | None = None,
    *,
    path: str | None = None,
) -> int:
    """Re-read the files of the version (those under ``path`` only, when given) and compare
    their sha256 with the manifest; returns the number of files checked.

    Raises ``ValueError`` naming the first file that differs or is missing.
    """
    root = _root(store)
    row = _row(root, dataset_id, version)
    return _verify(root, row, path)


def _verify(root: _Root, row, path: str | None) -> int:
    with root.fs.open(root.join(row["path"], "manifest.json"), "rb") as f:
        files = json.load(f)["files"]
    if path:
        files = [
            f for f in files if f["path"] == path or f["path"].startswith(path.rstrip("/") + "/")
        ]
    for entry in files:
        h = hashlib.sha256()
        try:
            with root.fs.open(root.join(row["path"], entry["path"]), "rb") as fh:
                while chunk := fh.read(8 << 20):
                    h.update(chunk)
        except FileNotFoundError:
            raise ValueError(
                f"{row['dataset_id']} v{row['version']}: {entry['path']} is missing"
            ) from None
        if h.hexdigest() != entry["sha256"]:
            raise ValueError(
                f"{row['dataset_id']} v{row['version']}: {entry['path']} differs from the "
                f"manifest (sha256 {h.hexdigest()[:12]}..., expected {entry['sha256'][:12]}...)"
            )
    return len(files)


def open(
    dataset_id: str,
    version: int | str = "latest",
    store: str | os.PathLike[str] | None = None,
    *,
    path: str | None = None,
    check_sha256: bool = False,
    chunks_in_flight: int | None = None,
    token: str | None = None,
):
    """Open a dataset version lazily, as the standard object of its format.

    ``path``: which data entry (default: the modality's main one, ``ModalitySpec.main_data``, listed first in the catalog row), e.g.
    ``"data/hits.parquet"`` or just ``"hits"``.  Returns

    * ``*.ome.zarr`` / ``*.zarr`` (not AnnData): a read-only ``zarr.Group`` (arrays are read
      chunk by chunk on indexing; the OME-NGFF metadata is in ``group.attrs["ome"]``);
    * ``adata.zarr``: an ``anndata.AnnData`` whose ``X`` and ``layers`` stay on the store
      (backed sparse datasets: slicing reads only those rows), obs / var / obsm loaded;
    * ``*.parquet`` (file or folder of parts): a ``pyarrow.dataset.Dataset`` (read columns /
      filters with ``.to_table(columns=..., filter=...)``, or ``.to_batches()``).

    ``check_sha256``: first re-read the files of that entry and compare them with the
    manifest (:func:`verify`); raises ``ValueError`` on a difference.

    ``chunks_in_flight``: Zarr chunks read concurrently (zarr's ``async.concurrency``, a
    process-wide setting; zarr's default is 10).  Each holds one decoded chunk besides the
    result, so 1 keeps a read within ~1.07x of its size (benchmarks: bench_access); more
    is faster on S3.

    Through a data service (``binds serve-data``): ``open("drs://host:port/<drs id>",
    token=...)``, or ``open(dataset_id, version, store="http(s)://host:port", token=...)``
    (``dataset_id`` may be ``id@v2``); the same objects, read lazily over signed links
    (:mod:`pipelines.access.drs`).
    """
    from pipelines.access import drs

    if chunks_in_flight:
        import zarr

        zarr.config.set({"async.concurrency": int(chunks_in_flight)})
    if dataset_id.startswith("drs://") or drs.is_service(store):
        return drs.open_version(
            dataset_id, version, store, token=token, path=path, check_sha256=check_sha256
        )
    root = _root(store)
    row = _row(root, dataset_id, version)
    rel = _resolve_path(row, path)
    if check_sha256:
        _verify(root, row, rel)
    full = root.join(row["path"], rel)
    if rel.endswith(".parquet"):
        import pyarrow.dataset as ds

        return ds.dataset(full, format="parquet", filesystem=root.arrow_fs or root.fs)
    if rel.endswith(".zarr"):
        _release_large_buffers()
        group = _zarr_group(root, full)
        if "obs" in group and "var" in group and "X" in group:
            return _anndata(group)
        return group
    raise ValueError(
        f"{rel} is neither Zarr nor Parquet; read it with {root.fs.__class__.__name__}.open"
    )


#: Allocations from this size on get their own mapping, returned to the system when freed.
MMAP_THRESHOLD_BYTES = 1 << 20


def _release_large_buffers() -> None:
    """Make glibc give freed chunk buffers back at once (Linux; elsewhere nothing happens).

    glibc raises its mmap threshold to the size of the first large block freed (a 4 MiB Zarr
    chunk), and from then on keeps such blocks on the heap of the thread that read them; the
    S3 reads run on worker threads, each with its own heap, so ~25 MB of freed chunks stayed
    resident beside a 127 MB slice (1.23x).  A fixed threshold (which also turns off that
    adjustment) keeps a read within ~1.0-1.05x of the slice (benchmarks/README.md, Access).
    """
    global _released
    if _released or not sys.platform.startswith("linux"):
        return
    _released = True
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD_BYTES)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        pass


_released = False


def _resolve_path(row, path: str | None) -> str:
    entries = list(row["data_paths"])
    if path is None:
        if not entries:
            raise DatasetNotFound(f"{row['dataset_id']} v{row['version']} has no data/ entries")
        main = MAIN_DATA_BEFORE_0_2.get(row["modality"])
        return main if main in entries else entries[0]
    for cand in (
        path,
        f"data/{path}",
        f"data/{path}.parquet",
        f"data/{path}.zarr",
        f"data/{path}.ome.zarr",
    ):
        if cand in entries:
            return cand
    if path.startswith("qc/"):
        return path
    raise DatasetNotFound(
        f"{row['dataset_id']} v{row['version']} has no {path!r}; it has {', '.join(entries)}"
    )


def _zarr_group(root: _Root, full: str):
    import zarr

    if "file" in root.fs.protocol:
        return zarr.open_group(full, mode="r")
    import fsspec.implementations.asyn_wrapper
    from zarr.storage import FsspecStore

    # zarr wants an asynchronous filesystem; wrapping the one already connected reuses its
    # session and credentials (a new asynchronous s3fs would set up both again: ~1 s)
    fs = fsspec.implementations.asyn_wrapper.AsyncFileSystemWrapper(root.fs, asynchronous=True)
    return zarr.open_group(FsspecStore(fs, path=full, read_only=True), mode="r")


def _anndata(group):
    import anndata as ad
    from anndata.io import read_elem, sparse_dataset

    def lazy(node):
        attrs = dict(node.attrs)
        if attrs.get("encoding-type") in ("csr_matrix", "csc_matrix"):
            return sparse_dataset(node)
        return node  # a dense zarr.Array: read on indexing

    layers = {k: lazy(group["layers"][k]) for k in group["layers"]} if "layers" in group else {}
    obsm = {k: read_elem(group["obsm"][k]) for k in group["obsm"]} if "obsm" in group else {}
    adata = ad.AnnData(
        X=lazy(group["X"]),
        obs=read_elem(group["obs"]),
        var=read_elem(group["var"]),
        obsm=obsm,
        layers=layers,
        uns={"binds": read_elem(group["uns"]["binds"])}
        if "uns" in group and "binds" in group["uns"]
        else None,
    )
    return adata


# -- for the data service and the reader through it (pipelines.dataservice, access.drs) ----
def filesystem(store: str | os.PathLike[str] | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, root path inside it) of a store URL: what the data service streams
    bytes from, with the reader's S3 client."""
    root = _root(store)
    return root.fs, root.path


def table_to_frame(table):
    """A catalog table as :func:`catalog` returns it (nullable integers, newest first)."""
    return _to_pandas(table)


def data_entry(row, path: str | None) -> str:
    """The ``data/`` entry :func:`open` reads for ``path`` (None: the modality's main one)."""
    return _resolve_path(row, path)


def anndata_of(group):
    """An AnnData over an ``adata.zarr`` group, ``X`` and layers left on the store."""
    return _anndata(group)
