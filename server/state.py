"""Process-wide server state: the engine, the executors, admission and the live calls.

It lives apart from the HTTP handlers so every handler module (signalling, REST, rooms,
assistants) imports it from here rather than from ``app`` (which imports them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection

from engines.animator import FaceAnimator, LayerCache, LayerFactory
from engines.render import FaceLayers

from . import ice
from .admission import Admission, Full, SharedAdmission
from .batcher import ModelBatcher
from .call import CONFIDENT_SECONDS, Call
from .config import PRIVACY_MODES, SIZES, ServerConfig
from .errors import HttpError
from .metrics import Metrics
from .offer import parse_offer, skin_tones
from .oneshot import OneShotQueue
from .ratelimit import RateLimiter
from .turn import ice_servers_for_browser
from .video import refresh_on_keyframe_request
from .workers import WorkerGroup, came_from_worker, client_address

log = logging.getLogger("speech2face.server")

# typed application keys (aiohttp ≥ 3.9)
STATE = web.AppKey("s2f_state", "ServerState")
CLIENT = web.AppKey("s2f_client_dir", Path)


class ServerState:
    """Everything process-wide: the engine, executors, admission and the live calls."""

    def __init__(
        self,
        config: ServerConfig,
        engine: Any = None,
        layer_factory: LayerFactory | None = None,
        group: WorkerGroup | None = None,
    ) -> None:
        self.config = config
        self.group = group  # None: a single process
        self.engine = engine
        self.layer_factory: LayerFactory = LayerCache(layer_factory or FaceLayers.build)
        self.model_executor = ThreadPoolExecutor(max_workers=config.model_workers, thread_name_prefix="s2f-model")
        # Rasterising a new face (~50 ms) must not queue behind model work nor block the loop.
        self.render_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2f-render")
        self.oneshot = OneShotQueue(config.oneshot_queue, config.retry_after, config.backend)
        self.offer_limiter = RateLimiter(config.offers_per_minute)
        self.upload_limiter = RateLimiter(config.uploads_per_minute)
        self.admission: Admission = (
            Admission(config.session_budget)
            if group is None
            else SharedAdmission(config.session_budget, group.admission_path, group.index)
        )
        self._forwarding = [0] * (group.count if group else 0)  # offers on their way to each worker
        self.metrics = Metrics()
        self.metrics.session_budget.set(config.session_budget)
        self.metrics.bind_fps(self.mean_fps)
        self.calls: dict[str, Call] = {}
        self.assistants: dict[str, Any] = {}  # assistant_ws.AssistantSession by id
        self.started_at = time.time()
        self.engine_error: str | None = None
        self.lag_task: asyncio.Task | None = None
        self.warm_task: asyncio.Future | None = None
        self.batcher: ModelBatcher | None = None
        self._trim_handle: asyncio.TimerHandle | None = None

    async def watch_loop_lag(self, period: float = 0.25) -> None:
        """A stalled loop delays every call's frames and audio at once: measure it."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(period)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - t - period))
            self.metrics.refresh()

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.batcher is not None

    def retry_headers(self) -> dict[str, str]:
        """What a 503 sends: when to try again."""
        return {"Retry-After": str(self.config.retry_after)}

    def mean_fps(self) -> float:
        live = [c.fps for c in self.calls.values() if c.connected_at is not None]
        return sum(live) / len(live) if live else 0.0

    async def load_engine(self) -> None:
        if self.engine is None:
            from engines.pipeline import AvatarEngine

            loop = asyncio.get_running_loop()
            self.engine = await loop.run_in_executor(
                self.model_executor,
                lambda: AvatarEngine(backend=self.config.backend, room_secret=room_secret()),
            )
        self.batcher = ModelBatcher(self.engine, self.model_executor, on_encode=self.metrics.encoded)
        self.batcher.start()

    def make_animator(self, size: int, **kwargs: Any) -> FaceAnimator:
        """A new face at rest (slow: it rasterises; run it in ``render_executor``)."""
        return FaceAnimator(size, layer_factory=self.layer_factory, **kwargs)

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
        sessions = list(self.calls.values()) + list(self.assistants.values())
        if sessions:
            await asyncio.gather(*(s.close(reason) for s in sessions), return_exceptions=True)

    # --- signalling shared by POST /offer and the websocket ---
    async def answer(self, body: Any, *, send_video: bool = True) -> dict:
        """Answer a caller's offer with a new Call; ``send_video=False`` for a room member,
        whose avatar leaves through Janus rather than back on this peer connection."""
        if self.admission.in_use >= self.admission.budget:  # full: say so before judging the offer
            self.metrics.rejected_sessions.inc()
            raise HttpError(f"server is full ({self.admission.budget} calls)", 503, self.retry_headers())
        options, offer = parse_offer(body, self.config, video=send_video)
        if not self.ready:
            raise HttpError("engine is still loading", 503, self.retry_headers())
        placeholder = "pending-" + os.urandom(6).hex()
        try:
            self.admission.acquire(placeholder)
        except Full as exc:
            self.metrics.rejected_sessions.inc()
            raise HttpError(str(exc), 503, self.retry_headers()) from exc
        call: Call | None = None
        pc: RTCPeerConnection | None = None
        try:
            loop = asyncio.get_running_loop()
            animator = await loop.run_in_executor(self.render_executor, self.make_animator, options.size)
            pc = RTCPeerConnection(configuration=ice.rtc_configuration(self.config))
            call = Call(
                pc,
                self.config,
                options,
                self.engine,
                self.batcher,
                self.model_executor,
                self.metrics,
                animator,
                self.render_executor,
                on_closed=self.call_closed,
                call_id=self.group.new_call_id() if self.group else None,
            )
            self.admission.rename(placeholder, call.id)  # the slot stays ours (workers share the budget)
            self.calls[call.id] = call
            self.metrics.live_sessions.set(len(self.calls))
            self.metrics.sessions_total.inc()
            try:
                await pc.setRemoteDescription(offer)
            except Exception as exc:  # aiortc raises assorted types on bad SDP
                raise HttpError(f"malformed SDP: {exc or type(exc).__name__}") from exc
            kinds = {t.kind for t in pc.getTransceivers()}
            if "audio" not in kinds:
                raise HttpError("the offer has no audio (microphone) track")
            if send_video:
                if "video" not in kinds:
                    raise HttpError("the offer does not receive video (add a recvonly video transceiver)")
                refresh_on_keyframe_request(pc.addTrack(call.video), call.video)
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

    # --- workers: where an offer goes, who holds a call ---
    def place(self, request: web.Request) -> int | None:
        """The worker that should answer this offer: the least loaded (None: this one)."""
        if self.group is None or came_from_worker(request):
            return None
        me = self.group.index
        loads = [n + f for n, f in zip(self.admission.loads(), self._forwarding)]  # type: ignore[attr-defined]
        ready = [i for i in range(len(loads)) if i == me or self.group.socket_path(i).exists()]  # not (re)starting
        best = min(ready, key=lambda i: (loads[i], i != me))
        return None if best == me or loads[best] >= loads[me] else best

    async def forward_offer(self, target: int, raw: bytes, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        assert self.group is not None
        self._forwarding[target] += 1
        try:
            return await self.group.forward(
                target, "POST", "/offer", raw, {"Content-Type": "application/json"}, client=client_address(request)
            )
        finally:
            self._forwarding[target] -= 1

    def owner_elsewhere(self, call_id: str, request: web.Request) -> int | None:
        """The other worker that holds this call (None: ours, unknown, or already forwarded)."""
        if self.group is None or call_id in self.calls or came_from_worker(request):
            return None
        owner = self.group.owner_of(call_id)
        return None if owner == self.group.index else owner

    def options_json(self) -> dict:
        ice_servers = ice_servers_for_browser(self.config, "call")
        return {
            "sizes": list(SIZES),
            "privacy_modes": list(PRIVACY_MODES),
            "default_size": self.config.size,
            "default_privacy": self.config.privacy,
            "fps": self.config.fps,
            "skin_tones": skin_tones(),
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


_generated_secret: str | None = None


def room_secret() -> str:
    """``S2F_ROOM_SECRET``, else a random one for this process (warned once).

    The room mode salts each face with this secret; an empty or public one would let anyone
    who knows a room name compute its face mapping from the public code. A generated secret
    keeps rooms unlinkable but changes every restart (faces in a room change with it); set
    ``S2F_ROOM_SECRET`` to keep them across restarts and server replicas.
    """
    global _generated_secret
    configured = os.environ.get("S2F_ROOM_SECRET", "")
    if configured:
        return configured
    if _generated_secret is None:
        _generated_secret = secrets.token_hex(32)
        log.warning("S2F_ROOM_SECRET is not set: using a random room secret for this run (room faces change on restart)")
    return _generated_secret
