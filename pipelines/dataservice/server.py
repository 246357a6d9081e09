"""Run the service: :func:`serve` (what ``binds serve-data`` calls) and the app factory the
uvicorn workers import (``--workers N`` starts N processes; they share the store URL, the
auth file and the link secret through the environment)."""

from __future__ import annotations

import os
import secrets
import socket

from pipelines.dataservice import links

STORE_ENV = "BINDS_DRS_STORE"
AUTH_ENV = "BINDS_DRS_AUTH"
REPLICA_ENV = "BINDS_DRS_REPLICA"


def app_from_env():
    from pipelines.dataservice.app import create_app
    from pipelines.dataservice.policy import load_auth

    return create_app(
        os.environ[STORE_ENV],
        load_auth(os.environ[AUTH_ENV]),
        replica_url=os.environ.get(REPLICA_ENV) or None,
    )


def check(store_url: str, auth_file: str) -> None:
    """Fail before binding the port: the auth YAML must be valid and the store readable."""
    from pipelines.dataservice.audit import open_log
    from pipelines.dataservice.policy import load_auth
    from pipelines.store import open_store

    cfg = load_auth(auth_file)
    open_log(cfg.audit)  # creates the folder, or fails now
    from pipelines.describe.catalog import read_catalog

    read_catalog(open_store(store_url, read_only=True))


def serve(
    store_url: str,
    auth_file: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    replica_url: str | None = None,
) -> None:
    import uvicorn

    check(store_url, auth_file)
    os.environ[STORE_ENV] = store_url
    if replica_url:
        os.environ[REPLICA_ENV] = replica_url
    os.environ[AUTH_ENV] = os.path.abspath(auth_file)
    # one secret for all workers of this start: a link signed by one is valid at every other
    os.environ.setdefault(links.SECRET_ENV, secrets.token_bytes(32).hex())
    config = uvicorn.Config(
        "pipelines.dataservice.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,  # X-Forwarded-Proto/-For from the TLS proxy on this host
        forwarded_allow_ips="127.0.0.1",
        server_header=False,
        log_level="warning",
        access_log=False,  # the audit log records every decision; URLs carry link tokens
    )
    if workers <= 1:
        uvicorn.Server(config).run()
        return
    from uvicorn.supervisors import Multiprocess

    # uvicorn's own shared socket has protocol 0, so asyncio never sets TCP_NODELAY on the
    # connections it accepts: Nagle plus delayed ACKs then cost ~40 ms per keep-alive request
    # (measured: 44 ms vs 1.4 ms). A socket made with IPPROTO_TCP keeps its protocol in the
    # workers, and asyncio sets TCP_NODELAY as it does for a single worker.
    Multiprocess(config, sockets=[_tcp_socket(host, port)]).run()


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
