"""The aiohttp application: signalling, the one-shot REST avatar, health, metrics, the web client.

One event loop carries HTTP, websockets and every peer connection; CPU work leaves it
for two places only: aiortc's codecs (the default executor, aiortc's choice) and the model
(``model_executor``, ours, so a burst of uploads never starves video encoding).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from aiohttp import WSMsgType, web

from . import ice, rooms, vp8
from .call import Call
from .config import SIZES, ServerConfig
from .errors import HttpError, json_error
from .metrics import CONTENT_TYPE_LATEST
from .offer import MAX_SDP_CHARS
from .state import CLIENT, STATE, ServerState

log = logging.getLogger("speech2face.server")

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client_web"


# --- handlers ---
async def offer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        return json_error("body is not valid JSON", 400)
    try:
        return web.json_response(await state.answer(body))
    except HttpError as exc:
        return json_error(str(exc), exc.status, exc.headers)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Signalling twin of POST /offer; the call lives as long as the socket (a clean hang-up)."""
    state = request.app[STATE]
    ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_SDP_CHARS * 2)
    await ws.prepare(request)
    mine: list[Call] = []
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                body = json.loads(msg.data)
            except ValueError:
                await ws.send_json({"type": "error", "status": 400, "error": "message is not valid JSON"})
                continue
            kind = body.get("type") if isinstance(body, dict) else None
            if kind == "offer":
                try:
                    reply = await state.answer(body)
                    mine.append(state.calls[reply["call_id"]])
                    await ws.send_json(reply)
                except HttpError as exc:
                    err: dict[str, Any] = {"type": "error", "status": exc.status, "error": str(exc)}
                    if exc.headers and "Retry-After" in exc.headers:
                        err["retry_after"] = int(exc.headers["Retry-After"])
                    await ws.send_json(err)
            elif kind == "bye":
                for call in mine:
                    await call.close("bye")
                mine.clear()
            else:
                await ws.send_json({"type": "error", "status": 400, "error": 'expected {"type": "offer"|"bye"}'})
    finally:
        for call in mine:
            await call.close("websocket_closed")
    return ws


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ready = state.engine is not None and state.renderer_factory is not None
    body = {
        "status": "ok" if ready else "loading",
        "sessions": len(state.calls),
        "budget": state.config.session_budget,
        "uptime_s": round(time.time() - state.started_at, 1),
        "pid": os.getpid(),
    }
    room_health = rooms.health(request.app)
    if ready and room_health.pop("degraded", False):
        body["status"] = "degraded"  # 1:1 calls work; rooms wait for Janus to come back
    body.update(room_health)
    if state.engine_error:
        body.update(status="error", error=state.engine_error)
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    data = request.app[STATE].metrics.render()
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def options(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].options_json())


async def call_avatar(request: web.Request) -> web.Response:
    """The live call's current face as PNG or SVG (the page's download buttons)."""
    from engines.render import render_png, render_svg

    state = request.app[STATE]
    call = state.calls.get(request.match_info["call_id"])
    if call is None:
        return json_error("no such call (it may have ended)", 404)
    fmt = request.query.get("format", "png").lower()
    if fmt not in ("png", "svg"):
        return json_error("format must be png or svg", 400)
    try:
        size = int(request.query.get("size", call.video.size))
    except ValueError:
        size = -1
    if size not in SIZES:
        return json_error(f"size must be one of {list(SIZES)}", 400)
    params = call.current.params
    loop = asyncio.get_running_loop()
    name = f"speech2face-v{call.current.version}"
    if fmt == "png":
        body = await loop.run_in_executor(state.render_executor, render_png, params, size)
        return web.Response(
            body=body, content_type="image/png", headers={"Content-Disposition": f'attachment; filename="{name}.png"'}
        )
    text = await loop.run_in_executor(state.render_executor, render_svg, params, size)
    return web.Response(
        text=text, content_type="image/svg+xml", headers={"Content-Disposition": f'attachment; filename="{name}.svg"'}
    )


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[CLIENT] / "index.html")


def create_app(config: ServerConfig, engine: Any = None, renderer_factory: Callable[[int], Any] | None = None) -> web.Application:
    """Build the app; the engine loads at startup unless one is passed in (tests share one)."""
    from . import avatar_api

    if config.is_loopback:
        ice.use_loopback_only(True)
    ice.use_patient_consent()
    vp8.use_avatar_vp8()
    app = web.Application(client_max_size=config.max_upload_bytes + 64 * 1024)
    state = ServerState(config, engine, renderer_factory)
    app[STATE] = state
    app[CLIENT] = Path(config.static_dir) if config.static_dir else CLIENT_DIR
    app.router.add_get("/", index)
    app.router.add_post("/offer", offer)
    app.router.add_get("/ws", websocket)
    app.router.add_post("/v1/avatar", avatar_api.avatar)
    app.router.add_get("/v1/options", options)
    app.router.add_get("/v1/calls/{call_id}/avatar", call_avatar)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static/", app[CLIENT], show_index=False)
    rooms.register(app)

    async def startup(app: web.Application) -> None:
        state.lag_task = asyncio.ensure_future(state.watch_loop_lag())
        try:
            await state.load_engine()
        except Exception as exc:
            state.engine_error = f"{type(exc).__name__}: {exc}"
            log.exception("engine failed to load")

    async def shutdown(app: web.Application) -> None:
        await state.close_all("shutdown")
        if state.batcher is not None:
            await state.batcher.close()
        if state.lag_task is not None:
            state.lag_task.cancel()
            await asyncio.gather(state.lag_task, return_exceptions=True)

    async def cleanup(app: web.Application) -> None:
        if state._trim_handle is not None:
            state._trim_handle.cancel()
        state.model_executor.shutdown(wait=True, cancel_futures=True)
        state.render_executor.shutdown(wait=True, cancel_futures=True)

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return app
