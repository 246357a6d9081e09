"""The reader through the data service (``binds serve-data``): the same objects as from a
store, for callers who hold a token instead of store credentials.

* ``catalog("http://host:8080", token=...)``: ``GET /catalog?format=parquet``, only what the
  token may read;
* ``open("drs://host:8080/<id>", token=...)`` or ``open(dataset_id, version,
  store="http://host:8080", token=...)``: one DRS ``access`` call for the version's bundle
  gives a signed link to the version's prefix; Zarr chunks and Parquet row groups are then
  plain HTTP (Range) requests under it, one per chunk, not one DRS round trip each.  The link
  lives ``link_seconds``; the file system asks for a fresh one shortly before it expires, so
  a lazy object outlives its first link.

Hostname-based ``drs://`` URIs resolve over https, except for loopback hosts (http), or set
``BINDS_DRS_SCHEME``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlparse

DRS = "/ga4gh/drs/v1"
LINK = "_link_"  # placeholder of the link token in the paths the file system sees
REFRESH_S = 15  # fetch a new link when the current one expires within this many seconds


def is_service(store: Any) -> bool:
    return isinstance(store, str) and store.startswith(("http://", "https://", "drs://"))


def service_url(uri: str) -> str:
    """``drs://host:port/...`` or ``http(s)://host:port/...`` -> ``scheme://host:port``."""
    p = urlparse(uri)
    if p.scheme == "drs":
        host = p.hostname or ""
        default = "http" if host in ("localhost", "127.0.0.1", "::1") else "https"
        return f"{os.environ.get('BINDS_DRS_SCHEME', default)}://{p.netloc}"
    return f"{p.scheme}://{p.netloc}{p.path.rstrip('/')}"


def _get(url: str, token: str | None, **params: Any) -> bytes:
    import urllib.error
    import urllib.request

    from pipelines.access.reader import DatasetNotFound

    query = urlencode(params, doseq=True)
    req = urllib.request.Request(url + (f"?{query}" if query else ""))
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise DatasetNotFound(f"not found (or not visible with this token): {url}") from None
        if e.code in (401, 403):
            raise PermissionError(f"{e.code}: the service refused this token for {url}") from None
        raise


def catalog_frame(base: str, token: str | None, *, latest: bool = False, **params: Any):
    import pyarrow.parquet as pq

    from pipelines.access.reader import table_to_frame

    raw = _get(f"{base}/catalog", token, format="parquet", latest=str(latest).lower(), **params)
    return table_to_frame(pq.read_table(io.BytesIO(raw)))


class _Link:
    """The signed prefix link of one version, renewed shortly before it expires."""

    def __init__(self, base: str, bundle_id: str, token: str | None) -> None:
        self.base, self.bundle_id, self.token = base, bundle_id, token
        self._lock = threading.Lock()
        self._url, self._expires = "", 0.0

    def url(self) -> str:
        with self._lock:
            if time.time() > self._expires - REFRESH_S:
                raw = _get(f"{self.base}{DRS}/objects/{self.bundle_id}/access/https", self.token)
                self._url = json.loads(raw)["url"].rstrip("/")
                payload = self._url.rsplit("/", 1)[-1].split(".")[0]
                claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                self._expires = float(claims["x"])
            return self._url

    @property
    def stable(self) -> str:
        """The version's root as the file system sees it (the token a placeholder)."""
        return f"{self.base}/data/{LINK}"


def _filesystem(link: _Link, *, asynchronous: bool = False):
    from fsspec.implementations.http import HTTPFileSystem

    class LinkedHTTPFileSystem(HTTPFileSystem):
        def encode_url(self, url):  # every request: the placeholder becomes the current link
            stable = link.stable
            if url.startswith(stable):
                url = link.url() + url[len(stable) :]
            return super().encode_url(url)

    return LinkedHTTPFileSystem(asynchronous=asynchronous, skip_instance_cache=True)


def resolve(
    dataset_or_uri: str, version: int | str, store: str | None, token: str | None
) -> tuple[str, dict[str, Any], str | None]:
    """(service base URL, catalog row, path named by the id or None)."""
    from pipelines.access.ids import parse_drs_id
    from pipelines.access.reader import DatasetNotFound

    path = None
    if dataset_or_uri.startswith("drs://"):
        base = service_url(dataset_or_uri)
        name = parse_drs_id(urlparse(dataset_or_uri).path.strip("/"))
        if name is None:
            raise DatasetNotFound(f"{dataset_or_uri} is not a DRS id of this service")
        dataset_id, version, path = name.dataset_id, name.version, name.path
    else:
        base = service_url(str(store))
        dataset_id = dataset_or_uri
        if "@" in dataset_id:
            dataset_id, _, v = dataset_id.partition("@")
            version = v
    params: dict[str, Any] = {"dataset_id": dataset_id}
    if version != "latest":
        params["where"] = f"version={int(str(version).removeprefix('v'))}"
    df = catalog_frame(base, token, **params)
    if df.empty:
        raise DatasetNotFound(f"no dataset {dataset_id!r} version {version} visible at {base}")
    return base, df.sort_values("version").iloc[-1], path


def open_version(
    dataset_or_uri: str,
    version: int | str,
    store: str | None,
    *,
    token: str | None,
    path: str | None,
    check_sha256: bool,
):
    """What :func:`pipelines.access.open` returns, read through the service."""
    from pipelines.access import reader
    from pipelines.access.ids import drs_id

    base, row, id_path = resolve(dataset_or_uri, version, store, token)
    bundle = drs_id(row["dataset_id"], int(row["version"]))
    link = _Link(base, bundle, token)
    rel = reader.data_entry(row, path or _entry(row, id_path))
    # the bundle's contents (every file of the version) only where they are needed
    files = _contents(base, bundle, token) if check_sha256 or rel.endswith(".parquet") else []
    if check_sha256:
        _verify(base, link, row, rel, files, token)
    full = f"{link.stable}/{rel}"
    if rel.endswith(".parquet"):
        import pyarrow.dataset as ds

        parts = [
            f"{link.stable}/{p}"
            for p in files
            if p.startswith(rel + "/") and p.endswith(".parquet")
        ]
        return ds.dataset(parts or full, format="parquet", filesystem=_filesystem(link))
    if rel.endswith(".zarr"):
        import zarr
        from zarr.storage import FsspecStore

        fs = _filesystem(link, asynchronous=True)
        group = zarr.open_group(FsspecStore(fs, path=full, read_only=True), mode="r")
        if "obs" in group and "var" in group and "X" in group:
            return reader.anndata_of(group)
        return group
    raise ValueError(f"{rel} is neither Zarr nor Parquet")


def _entry(row, id_path: str | None) -> str | None:
    """The data entry an object id points into (``data/x.zarr/0/c/1`` -> ``data/x.zarr``)."""
    if id_path is None:
        return None
    for entry in row["data_paths"]:
        if id_path == entry or id_path.startswith(entry + "/"):
            return str(entry)
    return id_path


def _contents(base: str, bundle: str, token: str | None) -> list[str]:
    raw = _get(f"{base}{DRS}/objects/{bundle}", token)
    return [c["name"] for c in json.loads(raw).get("contents") or []]


def _verify(base, link: _Link, row, rel: str, files: list[str], token: str | None) -> None:
    """Re-read the entry's files through the link; compare with the DRS sha-256 checksums."""
    import hashlib
    import urllib.request

    from pipelines.access.ids import drs_id

    for p in files:
        if p != rel and not p.startswith(rel + "/"):
            continue
        obj = json.loads(
            _get(f"{base}{DRS}/objects/{drs_id(row['dataset_id'], int(row['version']), p)}", token)
        )
        want = next(c["checksum"] for c in obj["checksums"] if c["type"] == "sha-256")
        h = hashlib.sha256()
        with urllib.request.urlopen(f"{link.url()}/{p}", timeout=60) as r:
            while chunk := r.read(8 << 20):
                h.update(chunk)
        if h.hexdigest() != want:
            raise ValueError(
                f"{row['dataset_id']} v{row['version']}: {p} differs from the manifest"
            )
