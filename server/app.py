"""The aiohttp application: signalling, the one-shot REST avatar, health, metrics, the web client.

One event loop carries HTTP, websockets and every peer connection; CPU work leaves it
for two places only: aiortc's codecs (the default executor, aiortc's choice) and the model
(``model_executor``, ours, so a burst of uploads never starves video encoding).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from engines.animator import LayerFactory

from . import ice, rooms, tts, vp8
from .body import loads_strict, read_json
from .call import Call
from .config import SIZES, ServerConfig
from .errors import HttpError, error_middleware, install_log_filter, json_error, retry_after_seconds, sanitize
from .metrics import CONTENT_TYPE_LATEST
from .offer import MAX_SDP_CHARS
from .oneshot import render_job
from .origin import origin_middleware
from .runner import set_server_header
from .state import CLIENT, STATE, ServerState
from .workers import WorkerGroup, came_from_worker

log = logging.getLogger("speech2face.server")

MAX_OFFER_BYTES = MAX_SDP_CHARS * 2  # the SDP plus the options, JSON-escaped

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client_web"


# --- handlers ---
async def offer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not came_from_worker(request):  # the worker the caller reached counts its offers
        state.offer_limiter.take(request.remote or "", "offers")
    body = await read_json(request, MAX_OFFER_BYTES, state.config.body_timeout)
    target = state.place(request)
    if target is not None:  # another worker is less loaded: the call lives there
        try:
            status, headers, data = await state.forward_offer(target, json.dumps(body).encode(), request)
            return web.Response(status=status, body=data, headers=headers)
        except ConnectionError:
            log.warning("worker %d unreachable; answering the offer here", target)
    return web.json_response(await state.answer(body))


def _ws_error(exc: HttpError) -> dict[str, Any]:
    err: dict[str, Any] = {"type": "error", "status": exc.status, "error": str(exc)}
    retry = retry_after_seconds(exc)
    if retry is not None:
        err["retry_after"] = retry
    return err


async def _offer_elsewhere(state: ServerState, target: int, body: Any, request: web.Request) -> dict | None:
    """A websocket offer answered by another worker: its reply, or None if it is unreachable."""
    try:
        status, headers, data = await state.forward_offer(target, json.dumps(body).encode(), request)
    except ConnectionError:
        log.warning("worker %d unreachable; answering the offer here", target)
        return None
    reply = loads_strict(data)
    if status != 200:
        raise HttpError(str(reply.get("error", "offer failed")), status, dict(headers))
    return reply


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Signalling twin of POST /offer; the call lives as long as the socket (a clean hang-up).

    Every bad message gets ``{"type": "error", "status", "error"}`` and the socket stays open;
    a message over the size cap closes it with 1009 (message too big), as the protocol says.
    """
    state = request.app[STATE]
    ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_OFFER_BYTES)
    await ws.prepare(request)
    mine: list[Call] = []
    remote: list[tuple[int, str]] = []  # (worker, call id) of calls placed on other workers
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_json({"type": "error", "status": 400, "error": "send JSON text messages, not binary"})
                continue
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                body = loads_strict(msg.data)
                kind = body.get("type") if isinstance(body, dict) else None
                if kind == "offer":
                    state.offer_limiter.take(request.remote or "", "offers")
                    target = state.place(request)
                    reply = None if target is None else await _offer_elsewhere(state, target, body, request)
                    if reply is not None:
                        remote.append((target, reply["call_id"]))
                    else:
                        reply = await state.answer(body)
                        mine.append(state.calls[reply["call_id"]])
                    await ws.send_json(reply)
                elif kind == "bye":
                    for call in mine:
                        await call.close("bye")
                    mine.clear()
                    await _hang_up_remote(state, remote, "bye")
                else:
                    raise HttpError('expected {"type": "offer"|"bye"}')
            except HttpError as exc:
                log.info("ws message → %d: %s", exc.status, sanitize(exc))
                await ws.send_json(_ws_error(exc))
            except ConnectionResetError:
                break
            except Exception:  # a bug of ours: say so, keep the socket, keep the traceback
                log.exception("websocket message failed")
                await ws.send_json({"type": "error", "status": 500, "error": "internal error"})
    finally:
        for call in mine:
            await call.close("websocket_closed")
        await _hang_up_remote(state, remote, "websocket_closed")
    return ws


async def _hang_up_remote(state: ServerState, remote: list[tuple[int, str]], reason: str) -> None:
    for worker, call_id in remote:
        try:
            await state.group.forward(worker, "POST", f"/internal/calls/{call_id}/close?reason={reason}")
        except ConnectionError:  # that worker is gone, and its calls with it
            pass
    remote.clear()


async def close_call(request: web.Request) -> web.Response:
    """Internal (another worker's websocket ended): hang up a call this worker holds."""
    state = request.app[STATE]
    if not came_from_worker(request):
        return json_error("not found", 404)
    call = state.calls.get(request.match_info["call_id"])
    if call is not None:
        reason = request.query.get("reason", "bye")
        await call.close(reason if reason in ("bye", "websocket_closed") else "bye")
    return web.json_response({"closed": call is not None})


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ready = state.ready
    body = {
        "status": "ok" if ready else "loading",
        # calls and assistant sessions; with workers, every worker's
        "sessions": len(state.calls) + len(state.assistants) if state.group is None else state.admission.in_use,
        "budget": state.config.session_budget,
        "uptime_s": round(time.time() - state.started_at, 1),
        "oneshot_worker": "ready" if state.oneshot.ready else "starting",  # uploads wait for it until ready
    }
    room_health = rooms.health(request.app)
    if ready and room_health.pop("degraded", False):
        body["status"] = "degraded"  # 1:1 calls work; rooms wait for Janus to come back
    body.update(room_health)
    if state.group is not None:  # which worker answered, and every worker's calls
        body["worker"] = {"index": state.group.index, "sessions": len(state.calls) + len(state.assistants)}
        body["workers"] = [
            {"index": i, "sessions": n, "ready": i == state.group.index or state.group.socket_path(i).exists()}
            for i, n in enumerate(state.admission.loads())
        ]
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
    state = request.app[STATE]
    owner = state.owner_elsewhere(request.match_info["call_id"], request)
    if owner is not None:  # the call lives in another worker
        try:
            status, headers, body = await state.group.forward(owner, "GET", request.path_qs)
            return web.Response(status=status, body=body, headers=headers)
        except ConnectionError:
            return json_error("no such call (its worker is gone)", 404)
    call = state.calls.get(request.match_info["call_id"])
    if call is None:
        return json_error("no such call (it may have ended)", 404)
    fmt = request.query.get("format", "png").lower()
    if fmt not in ("png", "svg"):
        return json_error("format must be png or svg", 400)
    try:
        size = int(request.query.get("size", call.animator.size))
    except ValueError:
        size = -1
    if size not in SIZES:
        return json_error(f"size must be one of {list(SIZES)}", 400)
    params = call.current.params
    name = f"speech2face-v{call.current.version}"
    with state.oneshot.slot():
        picture = await state.oneshot.run(render_job, params, size, fmt)
    kind = "image/png" if fmt == "png" else "image/svg+xml"
    return web.Response(body=picture, content_type=kind, headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[CLIENT] / "index.html")


def create_app(
    config: ServerConfig,
    engine: Any = None,
    layer_factory: LayerFactory | None = None,
    group: WorkerGroup | None = None,
) -> web.Application:
    """Build the app; the engine loads at startup unless one is passed in (tests share one)."""
    from . import assistant_ws, avatar_api

    if config.is_loopback:
        ice.use_loopback_only(True)
    ice.use_patient_consent()
    ice.use_large_receive_buffers()
    vp8.use_avatar_vp8()
    install_log_filter()
    app = web.Application(
        client_max_size=config.max_upload_bytes + 64 * 1024, middlewares=[error_middleware, origin_middleware(config)]
    )
    state = ServerState(config, engine, layer_factory, group)
    app[STATE] = state
    app[CLIENT] = Path(config.static_dir) if config.static_dir else CLIENT_DIR
    app.router.add_get("/", index)
    app.router.add_post("/offer", offer)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/v1/assistant", assistant_ws.assistant)
    app.router.add_post("/v1/avatar", avatar_api.avatar)
    app.router.add_get("/v1/options", options)
    app.router.add_get("/v1/calls/{call_id}/avatar", call_avatar)
    if group is not None:
        app.router.add_post("/internal/calls/{call_id}/close", close_call)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    tts.add_routes(app)  # GET /assistant (the demo page), GET/POST /v1/tts
    app.router.add_static("/static/", app[CLIENT], show_index=False)
    rooms.register(app)

    async def startup(app: web.Application) -> None:
        state.lag_task = asyncio.ensure_future(state.watch_loop_lag())
        try:
            await state.load_engine()
        except Exception as exc:
            state.engine_error = f"{type(exc).__name__}: {exc}"
            log.exception("engine failed to load")
        state.warm_task = asyncio.ensure_future(state.oneshot.warm())  # uploads need not wait for it

    async def shutdown(app: web.Application) -> None:
        await state.close_all("shutdown")
        if state.batcher is not None:
            await state.batcher.close()
        for task in (state.lag_task, state.warm_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def cleanup(app: web.Application) -> None:
        if state._trim_handle is not None:
            state._trim_handle.cancel()
        state.model_executor.shutdown(wait=True, cancel_futures=True)
        state.render_executor.shutdown(wait=True, cancel_futures=True)

    app.on_response_prepare.append(set_server_header)
    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return app
