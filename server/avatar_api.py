"""``POST /v1/avatar``: one audio clip in, one avatar out (PNG, SVG or JSON).

The body is read in chunks against the size cap (a 2 GB upload is refused after the cap,
not buffered) and the body timeout, decoded with the engine's decoder against the duration
cap, then analysed and rendered in the one-shot queue (``server/oneshot.py``: behind the
calls' refinements, 503 when full), after a per-client rate limit (429). Every failure is a
4xx ``{"error": ...}`` a person can act on; nothing the client sends can raise out of it.
"""

from __future__ import annotations

import asyncio

from aiohttp import BodyPartReader, web

from .body import body_timeout_error, read_capped
from .config import SIZES
from .errors import HttpError
from .oneshot import avatar_job
from .state import STATE

FORMATS = {"png": "image/png", "svg": "image/svg+xml", "json": "application/json"}
_MIME_TO_FORMAT = {
    "image/png": "png",
    "image/svg+xml": "svg",
    "image/svg": "svg",
    "application/json": "json",
    "image/*": "png",
    "*/*": "png",
}


def choose_format(request: web.Request) -> str:
    """``?format=`` wins; else the first acceptable type in ``Accept`` (by q); default PNG."""
    fmt = request.query.get("format")
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise HttpError(f"format must be one of {sorted(FORMATS)}", 400)
        return fmt
    accept = request.headers.get("Accept", "")
    if not accept.strip():
        return "png"
    choices = []
    for i, item in enumerate(accept.split(",")):
        parts = [p.strip() for p in item.split(";")]
        q = 1.0
        for p in parts[1:]:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if parts[0].lower() in _MIME_TO_FORMAT and q > 0:
            choices.append((-q, i, _MIME_TO_FORMAT[parts[0].lower()]))
    if not choices:
        raise HttpError("cannot produce any type in Accept; use image/png, image/svg+xml or application/json", 406)
    return min(choices)[2]


async def read_audio_body(request: web.Request, cap: int) -> bytes:
    if request.content_length is not None and request.content_length > cap:
        raise HttpError(f"upload larger than {cap} bytes", 413)
    ctype = request.content_type or ""
    # `curl --data-binary @clip.wav` labels raw audio as a urlencoded form: take any
    # non-multipart body as the audio itself and let the decoder say if it is not audio
    if not ctype.startswith("multipart/"):
        return await read_capped(request.content, cap)
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None:
            if isinstance(part, BodyPartReader) and (part.filename or part.name in ("audio", "file")):
                return await read_capped(part, cap)
            await part.release()
            part = await reader.next()
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise HttpError(f"malformed multipart body ({type(exc).__name__})") from exc
    raise HttpError('multipart body has no file part (send the audio as field "audio")')


def _query_options(request: web.Request, default_size: int) -> tuple[str, int, str | None]:
    """(format, size, skin tone or None) from the query string and Accept, or HttpError(400/406)."""
    from engines.face import SKIN_TONES

    fmt = choose_format(request)
    raw = request.query.get("size", str(default_size))
    size = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 6 else -1
    if size not in SIZES:
        raise HttpError(f"size must be one of {list(SIZES)}")
    tone = request.query.get("skin_tone")
    if tone in (None, "", "auto"):
        return fmt, size, None
    if tone not in SKIN_TONES:
        raise HttpError(f"skin_tone must be one of {list(SKIN_TONES)} or auto")
    return fmt, size, tone


async def avatar(request: web.Request) -> web.Response:
    state = request.app[STATE]
    cfg = state.config
    outcome = "error"
    try:
        fmt, size, tone = _query_options(request, cfg.size)
        from engines.look import check_seed

        try:
            seed = check_seed(request.query.get("seed"))
        except ValueError as exc:
            raise HttpError(f"seed: {exc}") from None
        if state.engine is None:
            raise HttpError("engine is still loading", 503, state.retry_headers())
        state.upload_limiter.take(request.remote or "", "uploads")
        with state.oneshot.slot():
            try:
                async with asyncio.timeout(cfg.body_timeout):
                    data = await read_audio_body(request, cfg.max_upload_bytes)
            except TimeoutError:
                raise body_timeout_error(cfg.body_timeout) from None
            if not data:
                raise HttpError('empty body: send an audio file (raw body or multipart field "audio")')
            overrides = {"skin_tone": tone} if tone else None
            update, picture = await state.oneshot.run(avatar_job, data, cfg.max_upload_seconds, overrides, fmt, size, seed)
            del data
            outcome = "ok"
            if fmt == "json":
                return web.json_response({"type": "avatar", **update})
            headers = {"X-S2F-Version": str(update["version"])}
            return web.Response(body=picture, content_type=FORMATS[fmt], headers=headers)
    except HttpError:
        outcome = "rejected"
        raise
    finally:
        state.metrics.avatar_requests.labels(outcome=outcome).inc()
