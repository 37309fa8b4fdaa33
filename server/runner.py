"""The HTTP server around the app: errors before any handler, header read time, no stack banner.

Some bad requests never reach a handler or a middleware: aiohttp's parser rejects a header
line over 8 KiB, a broken request line or an unsupported ``Content-Encoding`` while reading
the head, and answers from ``RequestHandler.handle_error`` — in text/plain, echoing the
parser's message (which quotes the raw bytes: the rest of an uploaded WAV when a client
sends a short ``Content-Length``) and logging it with a traceback. ``make_runner`` swaps in
a request handler whose ``handle_error`` answers ``{"error": reason}`` with a fixed reason
per error class and logs one line; a real server bug (a 500) still logs its traceback.

It also bounds how long a client may take to send its request head (a connection that
trickles headers is closed after ``header_timeout``; aiohttp's default is an hour) and
replaces aiohttp's ``Server: Python/… aiohttp/…`` banner.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .errors import parser_error, sanitize

log = logging.getLogger("speech2face.http")

SERVER_HEADER = "speech2face"


class _JsonErrorRequestHandler(RequestHandler):
    """aiohttp's request handler, answering its own errors as JSON without echoing input."""

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= 500 and exc is not None and not isinstance(exc, ConnectionError):
            # a bug of ours, not a client's doing: keep the traceback
            log.error("%s %s → %d", request.method, sanitize(request.rel_url.path), status, exc_info=exc)
            reason = HTTPStatus(status).phrase.lower()
        elif status >= 500:
            reason = HTTPStatus(status).phrase.lower()
            log.warning("%s → %d", sanitize(request.rel_url.path), status)
        else:
            status, reason = parser_error(exc, status)
            log.info("bad request from %s → %d: %s", request.remote, status, reason)
        if request.writer.output_size > 0:  # the response already started: nothing to replace it with
            raise ConnectionError("response already sent")
        resp = web.json_response({"error": reason}, status=status, headers={"Server": SERVER_HEADER})
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class HardenedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use the JSON error handler above."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # same object and state; only __call__ (the protocol factory) differs
        return server


async def set_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: our name instead of aiohttp's version banner."""
    response.headers["Server"] = SERVER_HEADER


def make_runner(app: web.Application, header_timeout: float = 10.0, **kwargs: Any) -> web.AppRunner:
    """An ``AppRunner`` for ``app``: JSON errors from the parser, ``header_timeout`` to send a head.

    ``header_timeout`` is aiohttp's keep-alive timeout, which also runs from the moment a
    connection opens until its first request head is complete, so it bounds both a
    slow-headers client and an idle keep-alive connection.
    """
    kwargs.setdefault("handle_signals", False)
    kwargs.setdefault("access_log", None)
    return HardenedAppRunner(app, keepalive_timeout=header_timeout, **kwargs)
