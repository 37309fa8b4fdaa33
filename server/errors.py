"""One error type for everything a client did wrong (or must retry), and its JSON shape.

Handlers raise ``HttpError(message, status)`` anywhere below them; the message goes back
verbatim as ``{"error": message}`` (over HTTP with that status, over a websocket as an error
message), so every 4xx/503 a person sees names what to change.

``error_middleware`` gives aiohttp's own errors the same shape: an unknown route (404), a
wrong method (405), a body over the size cap (413) and a body the parser cannot read
(bad chunking or compression, a multipart part header over 8 KiB) all answer JSON.
What a client sent is never copied into the reason or into the log: parser exceptions
quote the raw bytes they choked on (an uploaded WAV, once), so each class gets a fixed text.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    ContentEncodingError,
    DecompressSizeError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.web_exceptions import HTTPException
from aiohttp.web_protocol import RequestPayloadError

log = logging.getLogger("speech2face.http")

MAX_LOGGED_CHARS = 200  # a log line about a client error quotes at most this much of anything


class HttpError(Exception):
    """A client error (4xx) or a retry-later (503); ``headers`` go out with the response."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers

    def __reduce__(self) -> tuple:  # raised in the one-shot worker process, re-raised here
        return (HttpError, (str(self), self.status, self.headers))


def json_error(message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def retry_after_seconds(exc: HttpError) -> int | None:
    """The Retry-After an error carries, as the int a websocket error message sends."""
    value = (exc.headers or {}).get("Retry-After")
    return int(value) if value is not None and value.isdigit() else None


# Fixed reasons for what aiohttp's parser raises: its messages quote the offending bytes.
_PARSER_REASONS: tuple[tuple[type[BaseException], int, str], ...] = (
    (LineTooLong, 431, "a request line or header is too long (limit 8190 bytes)"),
    (InvalidURLError, 400, "the request URL is malformed"),
    (InvalidHeader, 400, "a request header is malformed"),
    (ContentEncodingError, 415, "the body's Content-Encoding is not supported (use gzip, deflate or none)"),
    (DecompressSizeError, 413, "the body decompresses to more than the server accepts"),
    (TransferEncodingError, 400, "the body's chunked transfer encoding is malformed"),
    (BadHttpMessage, 400, "malformed HTTP request"),
    (HttpProcessingError, 400, "malformed HTTP request"),
)


def parser_error(exc: BaseException | None, status: int = 400) -> tuple[int, str]:
    """(status, fixed reason) for an exception from aiohttp's HTTP or multipart parser."""
    if isinstance(exc, RequestPayloadError):  # while reading the body: the data is bad, not the head
        cause = exc.__cause__
        if isinstance(cause, DecompressSizeError):
            return 413, "the body decompresses to more than the server accepts"
        if isinstance(cause, ContentEncodingError) or "encoding" in str(exc).lower():
            return 400, "the body's Content-Encoding data is corrupt"
        return 400, "the request body could not be read (truncated or malformed)"
    for kind, code, reason in _PARSER_REASONS:
        if isinstance(exc, kind):
            return code, reason
    return status, "malformed HTTP request"


def sanitize(text: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """At most ``limit`` printable characters of ``text``, for a log line."""
    s = "".join(ch if ch.isprintable() else "?" for ch in str(text)[: limit + 1])
    return s if len(s) <= limit else s[:limit] + "…"


def _http_exception_json(exc: HTTPException) -> web.Response:
    reason = {
        404: "no such resource",
        405: f"method not allowed here (allowed: {exc.headers.get('Allow', 'none')})",
        413: "request body too large",
    }.get(exc.status, exc.reason or "request refused")
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After", "Location")}
    return json_error(reason, exc.status, headers or None)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """Every error a client can cause becomes a JSON 4xx, logged as one line without its data."""
    try:
        return await handler(request)
    except HttpError as exc:
        log.info("%s %s → %d: %s", request.method, sanitize(request.path), exc.status, sanitize(exc))
        return json_error(str(exc), exc.status, exc.headers)
    except HTTPException as exc:
        if exc.status < 400:  # redirects and the like pass through untouched
            raise
        log.info("%s %s → %d", request.method, sanitize(request.path), exc.status)
        return _http_exception_json(exc)
    except (RequestPayloadError, HttpProcessingError) as exc:
        status, reason = parser_error(exc)
        log.info("%s %s → %d: %s", request.method, sanitize(request.path), status, reason)
        resp = json_error(reason, status)
        resp.force_close()  # the rest of this connection's bytes cannot be trusted to frame a request
        return resp
    except ConnectionResetError:
        # the client went away mid-request: nobody to answer, nothing to trace
        log.info("%s %s: client disconnected", request.method, sanitize(request.path))
        raise


try:  # aiortc's DTLS: an SCTP send racing a peer's teardown fails in OpenSSL, in a task nobody awaits
    from OpenSSL.SSL import Error as DtlsError
except ImportError:  # pragma: no cover - aiortc always brings pyOpenSSL

    class DtlsError(Exception):  # type: ignore[no-redef]
        pass


class ClientErrorLogFilter(logging.Filter):
    """Caps what a library's log record may copy from a request, and keeps client errors to one line.

    aiohttp's parser exceptions quote the bytes they failed on, so a record's message is cut
    to ``MAX_LOGGED_CHARS`` printable characters; when the exception is the client's doing (a
    malformed request, a connection reset mid-upload, a DTLS send to a peer that just hung up)
    the traceback is dropped and the record demoted to DEBUG: the handler that answered the
    client, or the call that closed, logged it already.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (HttpProcessingError, RequestPayloadError, ConnectionError, HttpError, DtlsError)):
            # our handlers already logged the one line this error deserves
            record.exc_info = None
            record.exc_text = None
            record.msg, record.args = "%s (%s)", (sanitize(record.getMessage()), type(exc).__name__)
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        else:
            message = record.getMessage()
            if len(message) > MAX_LOGGED_CHARS:
                record.msg, record.args = "%s", (sanitize(message),)
        return True


CLIENT_FACING_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.websocket", "aiohttp.internal", "asyncio")


def install_log_filter() -> None:
    """Attach ``ClientErrorLogFilter`` to the loggers that see raw requests (idempotent)."""
    for name in CLIENT_FACING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientErrorLogFilter) for f in logger.filters):
            logger.addFilter(ClientErrorLogFilter())
