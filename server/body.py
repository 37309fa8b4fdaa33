"""Reading request bodies: capped in size, bounded in time, JSON parsed strictly.

A body is read in chunks against its cap (a 2 GB upload is refused after the cap, not
buffered) and within ``timeout`` seconds overall (a body trickled at one byte a second
would otherwise hold its connection and handler for ever). JSON is the standard subset:
``NaN``/``Infinity`` and numbers that overflow to infinity (``1e400``) are refused, as are
nesting deep enough to exhaust the parser's recursion and strings with unpaired UTF-16
surrogates (valid JSON escapes, but no UTF-8 text can hold them); each gets a 400 instead
of an exception deep inside the handler.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from aiohttp import BodyPartReader, StreamReader

from .errors import HttpError


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` for untrusted input: raises HttpError(400) on anything not plain JSON."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise HttpError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise HttpError("body is not valid JSON (not UTF-8 text)") from None
    except ValueError as exc:  # JSONDecodeError, or our refusals of NaN/Infinity/overflow
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise HttpError(f"body is not valid JSON ({reason})") from None
    if _has_lone_surrogate(value):
        raise HttpError("JSON text contains an unpaired surrogate (\\ud800-\\udfff escape)")
    return value


async def read_capped(stream: StreamReader | BodyPartReader, cap: int) -> bytes:
    chunks, total = [], 0
    while True:
        if isinstance(stream, BodyPartReader):
            chunk = await stream.read_chunk(64 * 1024)
        else:
            chunk = await stream.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise HttpError(f"upload larger than {cap} bytes", 413)
        chunks.append(chunk)


def body_timeout_error(timeout: float) -> HttpError:
    return HttpError(f"the request body did not arrive within {timeout:g} s", 408)


async def read_json(request: Any, cap: int, timeout: float) -> Any:
    """The body of a JSON request (``Content-Type: application/json`` required; 415 otherwise)."""
    if request.content_type != "application/json":
        raise HttpError("send the body as Content-Type: application/json", 415)
    if request.content_length is not None and request.content_length > cap:
        raise HttpError(f"body larger than {cap} bytes", 413)
    try:
        async with asyncio.timeout(timeout):
            data = await read_capped(request.content, cap)
    except TimeoutError:
        raise body_timeout_error(timeout) from None
    return loads_strict(data)
