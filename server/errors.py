"""One error type for everything a client did wrong (or must retry), and its JSON shape.

Handlers raise ``HttpError(message, status)`` anywhere below them; the message goes back
verbatim as ``{"error": message}`` (over HTTP with that status, over a websocket as an error
message), so every 4xx/503 a person sees names what to change.
"""

from __future__ import annotations

from aiohttp import web


class HttpError(Exception):
    """A client error (4xx) or a retry-later (503); ``headers`` go out with the response."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def json_error(message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
