"""``POST /v1/avatar``: one audio clip in, one avatar out (PNG, SVG or JSON).

The body is read in chunks against the size cap (a 2 GB upload is refused after the cap,
not buffered), decoded with the engine's decoder against the duration cap, then analysed
and rendered in the model executor. Every failure is a 4xx ``{"error": ...}`` a person
can act on; nothing the client sends can raise out of the handler.
"""

from __future__ import annotations

import asyncio

from aiohttp import BodyPartReader, web

from .config import SIZES
from .errors import HttpError, json_error
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


async def _read_capped(stream, cap: int) -> bytes:
    chunks, total = [], 0
    while True:
        chunk = await stream.read(64 * 1024) if not isinstance(stream, BodyPartReader) else await stream.read_chunk(64 * 1024)
        if not chunk:
            break
        total += len(chunk)
        if total > cap:
            raise HttpError(f"upload larger than {cap} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_audio_body(request: web.Request, cap: int) -> bytes:
    if request.content_length is not None and request.content_length > cap:
        raise HttpError(f"upload larger than {cap} bytes", 413)
    ctype = request.content_type or ""
    # `curl --data-binary @clip.wav` labels raw audio as a urlencoded form: take any
    # non-multipart body as the audio itself and let the decoder say if it is not audio
    if ctype.startswith("multipart/"):
        try:
            reader = await request.multipart()
            part = await reader.next()
            while part is not None:
                if isinstance(part, BodyPartReader) and (part.filename or part.name in ("audio", "file")):
                    return await _read_capped(part, cap)
                await part.release()
                part = await reader.next()
        except HttpError:
            raise
        except (ValueError, AssertionError, RuntimeError) as exc:
            raise HttpError(f"malformed multipart body: {exc}") from exc
        raise HttpError('multipart body has no file part (send the audio as field "audio")')
    return await _read_capped(request.content, cap)


async def avatar(request: web.Request) -> web.Response:
    from .call import status_json

    state = request.app[STATE]
    cfg = state.config
    outcome = "error"
    try:
        fmt = choose_format(request)
        try:
            size = int(request.query.get("size", cfg.size))
        except ValueError:
            raise HttpError(f"size must be one of {list(SIZES)}") from None
        if size not in SIZES:
            raise HttpError(f"size must be one of {list(SIZES)}")
        tone = request.query.get("skin_tone")
        from engines.face import SKIN_TONES

        if tone not in (None, "", "auto") and tone not in SKIN_TONES:
            raise HttpError(f"skin_tone must be one of {list(SKIN_TONES)} or auto")
        from engines.look import check_seed

        try:
            seed = check_seed(request.query.get("seed"))
        except ValueError as exc:
            raise HttpError(f"seed: {exc}") from None
        if state.engine is None:
            raise HttpError("engine is still loading", 503, state.retry_headers())
        data = await read_audio_body(request, cfg.max_upload_bytes)
        if not data:
            raise HttpError('empty body: send an audio file (raw body or multipart field "audio")')
        overrides = {"skin_tone": tone} if tone not in (None, "", "auto") else None
        loop = asyncio.get_running_loop()
        update = await loop.run_in_executor(
            state.model_executor, _analyse, state.engine, data, cfg.max_upload_seconds, overrides, seed
        )
        params = update.params
        if fmt == "json":
            outcome = "ok"
            body = status_json(update, "avatar")
            return web.json_response(body)
        from engines.render import render_png, render_svg

        if fmt == "png":
            png = await loop.run_in_executor(state.model_executor, render_png, params, size)
            outcome = "ok"
            return web.Response(body=png, content_type="image/png", headers={"X-S2F-Version": str(update.version)})
        svg = await loop.run_in_executor(state.model_executor, render_svg, params, size)
        outcome = "ok"
        return web.Response(text=svg, content_type="image/svg+xml")
    except HttpError as exc:
        outcome = "rejected"
        return json_error(str(exc), exc.status, exc.headers)
    finally:
        state.metrics.avatar_requests.labels(outcome=outcome).inc()


def _analyse(engine, data: bytes, max_seconds: float, overrides: dict | None = None, seed: str | None = None):
    from engines.audio import AudioError, decode_audio

    try:
        decoded = decode_audio(data, max_seconds=max_seconds)
    except AudioError as exc:
        raise HttpError(str(exc), 415) from exc
    except Exception as exc:  # FFmpeg can fail in ways the decoder does not wrap
        raise HttpError(f"cannot decode the audio: {type(exc).__name__}", 415) from exc
    if getattr(decoded, "truncated_at_cap", False):
        raise HttpError(f"audio longer than the {max_seconds:g} s limit", 413)
    pcm = getattr(decoded, "pcm", decoded)
    if len(pcm) == 0:
        raise HttpError("the audio is empty", 400)
    try:
        return engine.analyze(pcm, overrides=overrides, seed=seed)
    except ValueError as exc:  # e.g. no speech found: the engine's message is for the user
        raise HttpError(str(exc), 422) from exc
