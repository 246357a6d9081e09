"""The FastAPI application of ``binds serve-data``: GA4GH DRS 1.5 at ``/ga4gh/drs/v1``, the
signed byte links at ``/data/{token}``, ``/catalog`` and ``/health``.

Handlers stay thin: who the caller is comes from :func:`policy.authenticate`, whether they
may read from :func:`policy.decide`, and each decision is one audit line.
"""

from __future__ import annotations

import io
import json
import mimetypes
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from pipelines.access.ids import DrsName, parse_drs_id
from pipelines.dataservice import links
from pipelines.dataservice.audit import AuditLog, StoreAuditLog, open_log
from pipelines.dataservice.index import FileEntry, StoreIndex, Version
from pipelines.dataservice.policy import (
    AuthConfig,
    Caller,
    Unauthenticated,
    authenticate,
    decide,
)
from pipelines.dataservice.replication import ReplicationStatus

DRS = "/ga4gh/drs/v1"
MAX_BULK = 200
ACCESS_ID = "https"  # the one access method: a signed link served by this service
CHUNK = 1 << 20  # bytes per read while streaming: memory stays flat whatever the file size
NOT_FOUND = "no such object, or not visible to this caller"  # one text: no existence oracle
MIME = {
    ".parquet": "application/vnd.apache.parquet",
    ".jsonld": "application/ld+json",
    ".json": "application/json",
    ".html": "text/html",
    ".zarr": "application/octet-stream",
}


def mime_type(path: str) -> str:
    for suffix, mime in MIME.items():
        if path.endswith(suffix):
            return mime
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def error(status: int, msg: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="binds-data"'} if status == 401 else None
    return JSONResponse({"msg": msg, "status_code": status}, status_code=status, headers=headers)


class Refusal(Exception):
    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.msg = status, msg


@dataclass
class Service:
    cfg: AuthConfig
    index: StoreIndex
    audit: AuditLog | StoreAuditLog
    secret: bytes
    store_url: str

    # -- callers and decisions ----------------------------------------------------------
    def caller(
        self, request: Request, passports: list[str] | None, *, action: str, obj: str | None
    ) -> Caller:
        header = request.headers.get("authorization") or ""
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
        if header and bearer is None:
            self.record(None, action, obj, None, 401, "not a bearer token")
            raise Refusal(401, "expected Authorization: Bearer <token>")
        try:
            return authenticate(self.cfg, bearer, passports or [])
        except Unauthenticated as e:
            self.record(None, action, obj, None, 401, str(e))
            raise Refusal(401, "invalid token") from None

    def record(
        self,
        caller: Caller | None,
        action: str,
        obj: str | None,
        version: Version | None,
        status: int,
        reason: str,
        *,
        durable: bool = True,
    ) -> None:
        self.audit.append(
            durable=durable,
            subject=caller.subject if caller else None,
            issuer=caller.issuer if caller else None,
            action=action,
            object=obj,
            dataset=version.dataset_id if version else None,
            version=version.version if version else None,
            outcome="allow" if status < 400 else "deny",
            status=status,
            reason=reason,
        )

    def resolve(
        self, caller: Caller, drs_id: str, *, action: str
    ) -> tuple[Version, FileEntry | None]:
        """The version (and file) a DRS id names, if ``caller`` may read it; else
        :class:`Refusal` with the status :func:`decide` gives (audited either way)."""
        name = parse_drs_id(drs_id)
        v = self.index.version(name.dataset_id, name.version) if name else None
        if name is None or v is None:
            self.record(caller, action, drs_id, None, 404, "unknown id")
            raise Refusal(404, NOT_FOUND)
        d = decide(
            self.cfg, caller, level=v.level, dataset_id=v.dataset_id, embargo_until=v.embargo_until
        )
        if not d.allowed:
            self.record(caller, action, drs_id, v, d.status, d.reason)
            raise Refusal(d.status, NOT_FOUND if d.status == 404 else "access not granted")
        entry = None
        if name.path is not None:
            entry = v.files.get(name.path)
            if entry is None:
                self.record(caller, action, drs_id, v, 404, "unknown path")
                raise Refusal(404, NOT_FOUND)
        self.record(caller, action, drs_id, v, 200, d.reason)
        return v, entry

    def visible(self, caller: Caller, v: Version) -> bool:
        return decide(
            self.cfg, caller, level=v.level, dataset_id=v.dataset_id, embargo_until=v.embargo_until
        ).allowed

    # -- DRS documents ---------------------------------------------------------------------
    def description(self, v: Version, entry: FileEntry | None) -> str:
        what = f"{entry.path} of " if entry else ""
        text = f"{what}{v.dataset_id} version {v.version} ({v.modality}, {v.level})"
        duo = v.row.get("data_use") or []
        if duo:
            text += "; data use: " + ", ".join(duo)
        if v.embargo_until:
            text += f"; embargo until {v.embargo_until.isoformat()}"
        return text

    def drs_object(self, request: Request, v: Version, entry: FileEntry | None) -> dict[str, Any]:
        host = request.url.netloc
        if entry is None:
            return self.bundle(request, v)
        name = DrsName(v.dataset_id, v.version, entry.path)
        base = re.sub(r"[^A-Za-z0-9._-]", "_", entry.path.rsplit("/", 1)[-1])
        return {
            "id": name.drs_id,
            "name": base,
            "self_uri": f"drs://{host}/{name.drs_id}",
            "size": entry.size,
            "created_time": v.created,
            "updated_time": v.created,
            "version": str(v.version),
            "mime_type": mime_type(entry.path),
            "checksums": [{"type": "sha-256", "checksum": entry.sha256}],
            "access_methods": [self.access_method(v)],
            "description": self.description(v, entry),
            "aliases": [name.text],
        }

    def access_method(self, v: Version) -> dict[str, Any]:
        method: dict[str, Any] = {"type": "https", "access_id": ACCESS_ID, "available": True}
        if v.level != "open" or v.embargo_until:
            method["authorizations"] = self.authorizations(None, open_=False)
        return method

    def bundle(self, request: Request, v: Version) -> dict[str, Any]:
        host = request.url.netloc
        return {
            "id": v.name.drs_id,
            "name": f"{v.dataset_id}-v{v.version}",
            "self_uri": f"drs://{host}/{v.name.drs_id}",
            "size": v.size,
            "created_time": v.created,
            "updated_time": v.created,
            "version": str(v.version),
            "mime_type": "application/x-directory",
            "checksums": [{"type": "sha-256", "checksum": v.checksum}],
            "access_methods": [self.access_method(v)],
            "contents": [
                {
                    "name": path,
                    "id": DrsName(v.dataset_id, v.version, path).drs_id,
                    "drs_uri": [f"drs://{host}/{DrsName(v.dataset_id, v.version, path).drs_id}"],
                }
                for path in sorted(v.files)
            ],
            "description": self.description(v, None),
            "aliases": [v.name.text],
        }

    def authorizations(self, drs_id: str | None, *, open_: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "supported_types": (["None"] if open_ else []) + ["BearerAuth", "PassportAuth"],
            "bearer_auth_issuers": self.cfg.issuer_names,
            "passport_auth_issuers": self.cfg.issuer_names,
        }
        if drs_id is not None:
            out = {"drs_object_id": drs_id, **out}
        return out

    def options(self, drs_id: str) -> dict[str, Any]:
        """Authorizations of an id, told apart only for open data: everything else (controlled,
        restricted, embargoed or unknown) gets the same answer."""
        name = parse_drs_id(drs_id)
        v = self.index.version(name.dataset_id, name.version) if name else None
        is_open = (
            v is not None
            and v.level == "open"
            and not v.embargo_until
            and (name is not None and (name.path is None or name.path in v.files))
        )
        return self.authorizations(drs_id, open_=is_open)

    def access_url(
        self, request: Request, caller: Caller, v: Version, entry: FileEntry | None
    ) -> dict[str, Any]:
        grant = links.Grant(
            bundle=v.name.drs_id,
            key=entry.path if entry else None,
            prefix=None if entry else "",
            subject=caller.subject,
            issuer=caller.issuer,
            expires=int(time.time()) + self.cfg.link_seconds,
        )
        token = links.sign(self.secret, grant)
        base = str(request.base_url).rstrip("/")
        return {"url": f"{base}/data/{token}" + ("" if entry else "/")}


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Refusal(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refusal(400, "the body must be a JSON object")
    passports = body.get("passports")
    if passports is not None and not (
        isinstance(passports, list) and all(isinstance(p, str) for p in passports)
    ):
        raise Refusal(400, "passports must be a list of JWT strings")
    return body


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``Range: bytes=...`` request; None for the whole file."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or (not m[1] and not m[2]):
        return None  # multiple or malformed ranges: the whole file (RFC 9110 allows ignoring)
    if not m[1]:
        n = int(m[2])
        if n == 0:
            raise Refusal(416, "empty suffix range")
        return max(0, size - n), size - 1
    first = int(m[1])
    last = min(int(m[2]), size - 1) if m[2] else size - 1
    if first >= size or last < first:
        raise Refusal(416, "range not satisfiable")
    return first, last


def create_app(
    store_url: str, cfg: AuthConfig, *, refresh_s: float = 30.0, replica_url: str | None = None
) -> FastAPI:
    """The service of ``store_url``; with ``replica_url`` (a preservation copy), ``/health``
    also reports the replication lag (:mod:`pipelines.dataservice.replication`)."""
    # imported when the worker starts, not by its first /catalog request (~0.3-0.5 s of a
    # reader's `open("drs://...")`, which asks the catalog for the version first)
    import pandas  # noqa: F401

    import pipelines.describe.catalog  # noqa: F401
    from pipelines.store import open_store

    store = open_store(store_url, read_only=True)
    replication = ReplicationStatus(store, replica_url) if replica_url else None
    svc = Service(
        cfg,
        StoreIndex(store, refresh_s=refresh_s),
        open_log(cfg.audit),
        links.link_secret(),
        store_url,
    )
    app = FastAPI(
        title="BINDS data service (GA4GH DRS 1.5)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = svc

    @app.exception_handler(Refusal)
    async def _refused(_request: Request, exc: Refusal) -> JSONResponse:
        return error(exc.status, exc.msg)

    @app.get("/health")
    def health() -> JSONResponse:
        try:
            # a fresh request to the store each time (the index may be cached): one listing
            next(iter(svc.index.store.list_prefix("open/catalog/")), None)
            svc.index.versions()
        except Exception:  # any store failure is "unhealthy", never a traceback
            return JSONResponse({"status": "store unreachable"}, status_code=503)
        if replication is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "ok", "replication": replication.status()})

    _info_routes(app, svc)
    _bulk_routes(app, svc)
    _object_routes(app, svc)
    _byte_routes(app, svc, store_url)
    _catalog_routes(app, svc)
    return app


def _info_routes(app: FastAPI, svc: Service) -> None:
    """GET /ga4gh/drs/v1/service-info."""

    @app.get(f"{DRS}/service-info")
    def service_info(request: Request) -> JSONResponse:
        caller = svc.caller(request, None, action="service-info", obj=None)
        visible = [v for v in svc.index.versions().values() if svc.visible(caller, v)]
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("binds-pipelines")
        except PackageNotFoundError:  # a checkout that is not installed
            ours = "0"
        return JSONResponse(
            {
                "id": "org.binds.drs",
                "name": "BINDS data service",
                "type": {"group": "org.ga4gh", "artifact": "drs", "version": "1.5.0"},
                "description": "The curated BINDS store as GA4GH DRS objects (one bundle per "
                "dataset version); counts are of the objects this caller may read.",
                "organization": {"name": "BINDS", "url": "https://binds.example"},
                "version": ours,
                "maxBulkRequestLength": MAX_BULK,
                "drs": {
                    "maxBulkRequestLength": MAX_BULK,
                    "objectCount": sum(len(v.files) for v in visible),
                    "totalObjectSize": sum(v.size for v in visible),
                },
            }
        )


def _bulk_ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("bulk_object_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
        raise Refusal(400, "bulk_object_ids must be a non-empty list of ids")
    if len(ids) > MAX_BULK:
        raise Refusal(413, f"at most {MAX_BULK} ids per request")
    return ids


def _bulk_answer(
    *, requested: int, resolved: list[dict[str, Any]], failed: dict[int, list[str]], key: str
) -> JSONResponse:
    """A bulk reply: the counts, the ids refused (grouped by status) and ``resolved`` as ``key``."""
    return JSONResponse(
        {
            "summary": {
                "requested": requested,
                "resolved": len(resolved),
                "unresolved": requested - len(resolved),
            },
            "unresolved_drs_objects": [
                {"error_code": c, "object_ids": ids} for c, ids in sorted(failed.items())
            ],
            key: resolved,
        }
    )


def _bulk_routes(app: FastAPI, svc: Service) -> None:
    """The bulk endpoints (declared before /objects/{id}: "access" is no object id)."""

    # -- bulk (declared first: "/objects/access" is not an object id) ---------------------
    @app.post(f"{DRS}/objects/access")
    async def bulk_access(request: Request) -> JSONResponse:
        body = await _body(request)
        items = body.get("bulk_object_access_ids")
        if not isinstance(items, list) or not items:
            raise Refusal(400, "bulk_object_access_ids must be a non-empty list")
        if len(items) > MAX_BULK:
            raise Refusal(413, f"at most {MAX_BULK} ids per request")
        caller = svc.caller(request, body.get("passports"), action="access", obj=None)
        resolved, failed, requested = [], {}, 0
        for item in items:
            oid = str((item or {}).get("bulk_object_id") or "")
            for aid in (item or {}).get("bulk_access_ids") or [ACCESS_ID]:
                requested += 1
                try:
                    v, entry = svc.resolve(caller, oid, action="access")
                    if aid != ACCESS_ID:
                        raise Refusal(404, NOT_FOUND)
                except Refusal as r:
                    failed.setdefault(r.status, []).append(oid)
                    continue
                url = svc.access_url(request, caller, v, entry)
                resolved.append({"drs_object_id": oid, "drs_access_id": aid, **url})
        return _bulk_answer(
            requested=requested,
            resolved=resolved,
            failed=failed,
            key="resolved_drs_object_access_urls",
        )

    @app.post(f"{DRS}/objects")
    async def bulk_objects(request: Request) -> JSONResponse:
        body = await _body(request)
        ids = _bulk_ids(body)
        caller = svc.caller(request, body.get("passports"), action="resolve", obj=None)
        resolved, failed = [], {}
        for oid in ids:
            try:
                v, entry = svc.resolve(caller, oid, action="resolve")
            except Refusal as r:
                failed.setdefault(r.status, []).append(oid)
                continue
            resolved.append(svc.drs_object(request, v, entry))
        return _bulk_answer(
            requested=len(ids), resolved=resolved, failed=failed, key="resolved_drs_object"
        )

    @app.options(f"{DRS}/objects")
    async def bulk_options(request: Request) -> JSONResponse:
        ids = _bulk_ids(await _body(request))
        return _bulk_answer(
            requested=len(ids),
            resolved=[svc.options(i) for i in ids],
            failed={},
            key="resolved_drs_object",
        )


def _object_routes(app: FastAPI, svc: Service) -> None:
    """GET/POST/OPTIONS /objects/{id} and GET/POST /objects/{id}/access/{access_id}."""

    # -- single objects --------------------------------------------------------------------
    @app.options(f"{DRS}/objects/{{object_id}}")
    def object_options(object_id: str) -> JSONResponse:
        return JSONResponse(svc.options(object_id))

    @app.get(f"{DRS}/objects/{{object_id}}")
    def get_object(request: Request, object_id: str) -> JSONResponse:
        caller = svc.caller(request, None, action="resolve", obj=object_id)
        v, entry = svc.resolve(caller, object_id, action="resolve")
        return JSONResponse(svc.drs_object(request, v, entry))

    @app.post(f"{DRS}/objects/{{object_id}}")
    async def post_object(request: Request, object_id: str) -> JSONResponse:
        body = await _body(request)
        caller = svc.caller(request, body.get("passports"), action="resolve", obj=object_id)
        v, entry = svc.resolve(caller, object_id, action="resolve")
        return JSONResponse(svc.drs_object(request, v, entry))

    def _access(request: Request, caller: Caller, object_id: str, access_id: str) -> JSONResponse:
        v, entry = svc.resolve(caller, object_id, action="access")
        if access_id != ACCESS_ID:
            raise Refusal(404, "no such access id for this object")
        return JSONResponse(svc.access_url(request, caller, v, entry))

    @app.get(f"{DRS}/objects/{{object_id}}/access/{{access_id}}")
    def get_access(request: Request, object_id: str, access_id: str) -> JSONResponse:
        caller = svc.caller(request, None, action="access", obj=object_id)
        return _access(request, caller, object_id, access_id)

    @app.post(f"{DRS}/objects/{{object_id}}/access/{{access_id}}")
    async def post_access(request: Request, object_id: str, access_id: str) -> JSONResponse:
        body = await _body(request)
        caller = svc.caller(request, body.get("passports"), action="access", obj=object_id)
        return _access(request, caller, object_id, access_id)


def _byte_routes(app: FastAPI, svc: Service, store_url: str) -> None:
    """GET/HEAD /data/{token}[/path]: the bytes behind a signed link, with Range."""
    from pipelines.access.reader import filesystem

    fs, base = filesystem(store_url)

    # -- bytes -------------------------------------------------------------------------------
    @app.api_route("/data/{token}", methods=["GET", "HEAD"])
    def object_bytes(request: Request, token: str) -> Response:
        return _serve(request, token, None)

    @app.api_route("/data/{token}/{path:path}", methods=["GET", "HEAD"])
    def prefix_bytes(request: Request, token: str, path: str) -> Response:
        return _serve(request, token, path)

    def _serve(request: Request, token: str, path: str | None) -> Response:
        try:
            grant = links.check(svc.secret, token)
        except links.BadLink as e:
            svc.record(None, "bytes", None, None, 403, str(e))
            raise Refusal(403, "invalid or expired link") from None
        who = Caller(grant.subject, grant.issuer)
        name = parse_drs_id(grant.bundle)
        v = svc.index.version(name.dataset_id, name.version) if name else None
        if v is None:
            svc.record(who, "bytes", grant.bundle, None, 404, "version gone")
            raise Refusal(404, NOT_FOUND)
        rel = grant.key if (grant.key is not None and not path) else (path or "")
        entry = v.files.get(rel) if grant.covers(rel) else None
        if entry is None:
            listable = grant.key is None and (rel == "" or grant.covers(rel.rstrip("/") + "/"))
            children = _children(v, rel) if listable else []
            if children:  # a "folder" of the version: an HTML listing, for fsspec's ls
                html = "".join(f'<a href="{c}">{c}</a>\n' for c in children)
                return Response(html, media_type="text/html")
            svc.record(who, "bytes", grant.bundle, v, 404, "not under the link")
            raise Refusal(404, NOT_FOUND)
        oid = DrsName(v.dataset_id, v.version, entry.path).drs_id
        span = _range(request.headers.get("range"), entry.size)
        first, last = span if span else (0, entry.size - 1)
        length = max(0, last - first + 1)
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Length": str(length),
            "ETag": f'"{entry.sha256}"',
            "Cache-Control": "private, no-store",
        }
        if span:
            headers["Content-Range"] = f"bytes {first}-{last}/{entry.size}"
        status = 206 if span else 200
        svc.record(
            who,
            "bytes",
            oid,
            v,
            status,
            f"bytes {first}-{last}" if span else "whole file",
            durable=False,  # under a grant already recorded durably (the access decision)
        )
        if request.method == "HEAD":
            return Response(
                b"", status_code=status, headers=headers, media_type=mime_type(entry.path)
            )
        full = f"{base}/{v.prefix}{entry.path}"
        return StreamingResponse(
            _stream(fs, full, first, length),
            status_code=status,
            headers=headers,
            media_type=mime_type(entry.path),
        )


def _catalog_routes(app: FastAPI, svc: Service) -> None:
    """GET /catalog: the caller's catalog rows (JSON or Parquet)."""

    # -- the caller's catalog ------------------------------------------------------------------
    @app.get("/catalog")
    def catalog(request: Request, format: str = "json", latest: bool = False) -> Response:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from pipelines.access.catalog_schema import CATALOG_SCHEMA, filter_table, parse_where
        from pipelines.describe.catalog import version_records

        caller = svc.caller(request, None, action="catalog", obj=None)
        if format not in ("json", "parquet"):
            raise Refusal(400, "format is json or parquet")
        rows = [v.row for v in svc.index.versions().values() if svc.visible(caller, v)]
        table = pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)
        try:
            filters = parse_where(request.query_params.getlist("where"))
            for key in ("modality", "dataset_id", "access", "request_id"):
                if request.query_params.get(key):
                    filters[key] = request.query_params[key]
            table = filter_table(table, filters, latest=latest)
        except (KeyError, ValueError) as e:
            raise Refusal(400, f"bad filter: {e}") from None
        ids = [
            DrsName(d, int(n)).drs_id
            for d, n in zip(
                table["dataset_id"].to_pylist(), table["version"].to_pylist(), strict=True
            )
        ]
        table = table.append_column(pa.field("drs_id", pa.string()), pa.array(ids, pa.string()))
        svc.record(caller, "catalog", None, None, 200, f"{table.num_rows} versions listed")
        if format == "parquet":
            buf = io.BytesIO()
            pq.write_table(table, buf)
            return Response(buf.getvalue(), media_type="application/vnd.apache.parquet")
        return JSONResponse(version_records(table))


def _children(v: Version, folder: str) -> list[str]:
    """Immediate entries of ``folder`` (``""``: the version root) among the version's files;
    sub-folders end with '/'."""
    folder = folder.rstrip("/") + "/" if folder else ""
    out = set()
    for p in v.files:
        if p.startswith(folder):
            rest = p[len(folder) :]
            head, sep, _ = rest.partition("/")
            out.add(head + sep)
    return sorted(out)


def _stream(fs: Any, path: str, first: int, length: int) -> Iterator[bytes]:
    with fs.open(path, "rb") as f:
        f.seek(first)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
