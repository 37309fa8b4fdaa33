"""Other web sites must not use a visitor's browser against this server.

Any page a user visits can make their browser POST to ``http://127.0.0.1:8080/offer`` or
open a websocket to it: a "simple" cross-origin POST (``text/plain``) needs no CORS
preflight, and websockets are not covered by CORS at all. Browsers always send ``Origin``
on such requests, so ``origin_middleware`` refuses (403, JSON) every state-changing request —
any method but GET/HEAD/OPTIONS, and every websocket upgrade — whose ``Origin`` is neither
the serving origin nor in the configured allow-list (``--allowed-origins`` /
``S2F_ALLOWED_ORIGINS``, ``*`` to allow all). Requests without ``Origin`` (curl, Python,
the LiveKit/Pipecat plugins) are not from a browser page and pass.

When the server listens on loopback it also insists that ``Host`` names loopback
(``127.0.0.1``, ``localhost``, ``[::1]``): a DNS-rebinding page on ``evil.example`` that
resolves to 127.0.0.1 would otherwise be "same origin" with us.

New routes need nothing: the middleware covers every POST and every websocket of the app.
A handler that accepts a websocket on a path the middleware should not judge can still call
``check_origin(request, config)`` itself before ``ws.prepare``.
"""

from __future__ import annotations

from typing import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from .config import ServerConfig
from .errors import HttpError
from .workers import came_from_worker

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _host_only(netloc: str) -> str:
    """``host`` of ``host:port`` (IPv6 literals keep their brackets)."""
    if netloc.startswith("["):
        return netloc.split("]", 1)[0] + "]"
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def needs_origin_check(request: web.Request) -> bool:
    return request.method not in SAFE_METHODS or is_websocket_upgrade(request)


def check_host(request: web.Request, config: ServerConfig) -> None:
    """On loopback, ``Host`` must name loopback or an allowed origin's host (DNS rebinding)."""
    if not config.is_loopback or "*" in config.allowed_origins:
        return
    host = _host_only(request.headers.get(hdrs.HOST, "")).lower()
    if host in LOOPBACK_HOSTS or host in {_host_only(urlsplit(o).netloc) for o in config.allowed_origins}:
        return
    raise HttpError("Host must name this machine (127.0.0.1 or localhost) when serving on loopback", 403)


def check_origin(request: web.Request, config: ServerConfig) -> None:
    """Raise HttpError(403) unless the request may act on this server (see the module doc)."""
    check_host(request, config)
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or "*" in config.allowed_origins:
        return
    origin = origin.strip().rstrip("/").lower()
    if origin in config.allowed_origins:
        return
    parts = urlsplit(origin)
    if origin != "null" and parts.scheme in ("http", "https") and parts.netloc == request.headers.get(hdrs.HOST, "").lower():
        return  # the page this server served (scheme may differ behind a TLS-terminating proxy)
    raise HttpError("cross-origin request refused (add the page's origin to S2F_ALLOWED_ORIGINS to allow it)", 403)


def origin_middleware(config: ServerConfig) -> Callable:
    """Host check on every request; Origin check on every state-changing one."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if came_from_worker(request):  # judged by the worker the caller reached (server/workers.py)
            return await handler(request)
        if needs_origin_check(request):
            check_origin(request, config)
        else:
            check_host(request, config)
        return await handler(request)

    return middleware
