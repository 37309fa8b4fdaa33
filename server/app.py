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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from aiohttp import WSMsgType, web
from aiortc import RTCPeerConnection, RTCSessionDescription

from . import ice, vp8
from .admission import Admission, Full
from .batcher import ModelBatcher
from .call import CONFIDENT_SECONDS, Call, CallOptions
from .config import PRIVACY_MODES, SIZES, ServerConfig
from .metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger("speech2face.server")

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client_web"
MAX_SDP_CHARS = 64 * 1024
MAX_ROOM_CHARS = 64

# typed application keys (aiohttp ≥ 3.9)
STATE = web.AppKey("s2f_state", "ServerState")
CLIENT = web.AppKey("s2f_client_dir", Path)


class BadRequest(Exception):
    """A client error whose message goes back verbatim as ``{"error": ...}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def json_error(message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class ServerState:
    """Everything process-wide: the engine, executors, admission and the live calls."""

    def __init__(self, config: ServerConfig, engine: Any = None, renderer_factory: Callable[[int], Any] | None = None) -> None:
        self.config = config
        self.engine = engine
        self.renderer_factory = renderer_factory
        self.model_executor = ThreadPoolExecutor(max_workers=config.model_workers, thread_name_prefix="s2f-model")
        # Rasterising a new face (~50 ms) must not queue behind model work nor block the loop.
        self.render_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2f-render")
        self.admission = Admission(config.session_budget)
        self.metrics = Metrics()
        self.metrics.session_budget.set(config.session_budget)
        self.metrics.bind_fps(self.mean_fps)
        self.calls: dict[str, Call] = {}
        self.started_at = time.time()
        self.engine_error: str | None = None
        self.lag_task: asyncio.Task | None = None
        self.batcher: ModelBatcher | None = None
        self._trim_handle: asyncio.TimerHandle | None = None

    async def watch_loop_lag(self, period: float = 0.25) -> None:
        """A stalled loop delays every call's frames and audio at once: measure it."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(period)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - t - period))

    def mean_fps(self) -> float:
        live = [c.fps for c in self.calls.values() if c.connected_at is not None]
        return sum(live) / len(live) if live else 0.0

    async def load_engine(self) -> None:
        if self.engine is None:
            from engines.pipeline import AvatarEngine

            loop = asyncio.get_running_loop()
            self.engine = await loop.run_in_executor(
                self.model_executor,
                lambda: AvatarEngine(backend=self.config.backend, room_secret=os.environ.get("S2F_ROOM_SECRET", "")),
            )
        if self.renderer_factory is None:
            from engines.render import AvatarRenderer

            self.renderer_factory = lambda size: AvatarRenderer(size=size)
        self.batcher = ModelBatcher(self.engine, self.model_executor)
        self.batcher.start()

    def call_closed(self, call: Call) -> None:
        if self.calls.pop(call.id, None) is not None:
            self.admission.release(call.id)
            self.metrics.live_sessions.set(len(self.calls))
            self._schedule_trim()

    def _schedule_trim(self) -> None:
        """Give freed heap back to the OS a moment after calls end.

        Every call's codec threads allocate from their own glibc arenas; without a trim the
        process keeps its peak RSS forever, which looks exactly like a leak to an operator.
        Debounced so a wave of hang-ups costs one trim.
        """
        if self._trim_handle is not None or _malloc_trim is None:
            return
        loop = asyncio.get_running_loop()

        def run() -> None:
            self._trim_handle = None
            loop.run_in_executor(self.render_executor, _malloc_trim, 0)

        self._trim_handle = loop.call_later(1.0, run)

    async def close_all(self, reason: str = "shutdown") -> None:
        calls = list(self.calls.values())
        if calls:
            await asyncio.gather(*(c.close(reason) for c in calls), return_exceptions=True)

    # --- signalling shared by POST /offer and the websocket ---
    async def answer(self, body: Any) -> dict:
        options, offer = parse_offer(body, self.config)
        if self.engine is None or self.renderer_factory is None:
            raise BadRequest("engine is still loading", status=503)
        placeholder = "pending-" + os.urandom(6).hex()
        try:
            self.admission.acquire(placeholder)
        except Full as exc:
            self.metrics.rejected_sessions.inc()
            raise BadRequest(str(exc), status=503) from exc
        call: Call | None = None
        pc: RTCPeerConnection | None = None
        try:
            loop = asyncio.get_running_loop()
            renderer = await loop.run_in_executor(self.render_executor, self.renderer_factory, options.size)
            pc = RTCPeerConnection(configuration=ice.rtc_configuration(self.config))
            call = Call(
                pc,
                self.config,
                options,
                self.engine,
                self.batcher,
                self.model_executor,
                self.metrics,
                renderer,
                self.renderer_factory,
                self.render_executor,
                on_closed=self.call_closed,
            )
            self.admission.release(placeholder)
            self.admission.acquire(call.id)  # cannot fail: we just freed a slot
            self.calls[call.id] = call
            self.metrics.live_sessions.set(len(self.calls))
            self.metrics.sessions_total.inc()
            try:
                await pc.setRemoteDescription(offer)
            except Exception as exc:  # aiortc raises assorted types on bad SDP
                raise BadRequest(f"malformed SDP: {exc or type(exc).__name__}") from exc
            kinds = {t.kind for t in pc.getTransceivers()}
            if "audio" not in kinds:
                raise BadRequest("the offer has no audio (microphone) track")
            if "video" not in kinds:
                raise BadRequest("the offer does not receive video (add a recvonly video transceiver)")
            pc.addTrack(call.video)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "call_id": call.id}
        except BaseException:
            self.admission.release(placeholder)
            if call is not None:
                await call.close("offer_failed")
            elif pc is not None:
                await pc.close()
            raise

    def options_json(self) -> dict:
        ice_servers = (
            []
            if self.config.is_loopback
            else [
                {
                    "urls": s.urls,
                    **({"username": s.username} if s.username else {}),
                    **({"credential": s.credential} if s.credential else {}),
                }
                for s in self.config.ice_servers
            ]
        )
        return {
            "sizes": list(SIZES),
            "privacy_modes": list(PRIVACY_MODES),
            "default_size": self.config.size,
            "default_privacy": self.config.privacy,
            "fps": self.config.fps,
            "skin_tones": _skin_tones(),
            "ice_servers": ice_servers,
            "confident_seconds": CONFIDENT_SECONDS,
        }


def _load_malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _load_malloc_trim()


def _skin_tones() -> list[str]:
    from engines.face import SKIN_TONES

    return list(SKIN_TONES)


def parse_offer(body: Any, config: ServerConfig) -> tuple[CallOptions, RTCSessionDescription]:
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object {sdp, type}")
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer":
        raise BadRequest('"type" must be "offer"')
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadRequest('"sdp" must be a non-empty string')
    if len(sdp) > MAX_SDP_CHARS:
        raise BadRequest("SDP too large", status=413)
    if not sdp.lstrip().startswith("v=0"):
        raise BadRequest("malformed SDP: it must start with v=0")
    privacy = body.get("privacy") or config.privacy
    if privacy not in PRIVACY_MODES:
        raise BadRequest(f'"privacy" must be one of {list(PRIVACY_MODES)}')
    room = body.get("room")
    if room is not None and (not isinstance(room, str) or not 0 < len(room) <= MAX_ROOM_CHARS):
        raise BadRequest(f'"room" must be a string of 1..{MAX_ROOM_CHARS} characters')
    if privacy == "room" and not room:
        raise BadRequest('privacy "room" needs a "room" name')
    skin = body.get("skin_tone")
    if skin in ("", "auto"):
        skin = None
    if skin is not None and skin not in _skin_tones():
        raise BadRequest(f'"skin_tone" must be one of {_skin_tones()} or "auto"')
    size = body.get("size", config.size)
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise BadRequest(f'"size" must be one of {list(SIZES)}') from None
    if size not in SIZES:
        raise BadRequest(f'"size" must be one of {list(SIZES)}')
    frame_events = body.get("frame_events", False)
    if not isinstance(frame_events, bool):
        raise BadRequest('"frame_events" must be true or false')
    if config.is_loopback:
        sdp = ice.keep_loopback_candidates(sdp)
    return (
        CallOptions(privacy=privacy, room=room, skin_tone=skin, size=size, frame_events=frame_events),
        RTCSessionDescription(sdp=sdp, type="offer"),
    )


# --- handlers ---
async def offer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        return json_error("body is not valid JSON", 400)
    try:
        return web.json_response(await state.answer(body))
    except BadRequest as exc:
        headers = {"Retry-After": str(state.config.retry_after)} if exc.status == 503 else None
        return json_error(str(exc), exc.status, headers)


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
                except BadRequest as exc:
                    err = {"type": "error", "status": exc.status, "error": str(exc)}
                    if exc.status == 503:
                        err["retry_after"] = state.config.retry_after
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
