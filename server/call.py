"""One call: a peer connection, the tasks that serve it, and how it ends.

A ``Call`` owns everything it starts — the audio drain, the pipeline feeder, the watchdog,
the video track — and ``close()`` cancels and awaits all of it, closes the peer and frees
the admission slot, whatever path got there (bye, ICE failure, silence, SIGTERM).

Data path: aiortc decodes Opus to 48 kHz stereo s16 in 20 ms frames (even from a mono
sender) → the mouth envelope reads each frame on arrival → ``av.AudioResampler`` makes
16 kHz mono float32 in chunks (``SpeechFeed``) → the feeder pushes as often as a refinement can
fall (every 0.2–1 s) to the shared ``ModelBatcher`` (one encoder batch for all calls, in the
dedicated model executor), one push at a time per call, so the drain never waits for the model
and an unconsumed track can never pile frames up in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable

import av
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from engines.animator import FaceAnimator
from engines.pipeline import CONFIDENT_SECONDS

from .batcher import ModelBatcher
from .config import SIZES, ServerConfig
from .feed import SpeechFeed, packet_samples
from .metrics import Metrics
from .video import AvatarVideoTrack, FrameInfo

log = logging.getLogger("speech2face.call")

DATACHANNEL_HIGH_WATER = 256 * 1024  # drop per-frame events, never status, past this backlog
WATCHDOG_PERIOD = 0.5
#: the least time between two rasterised faces of one call, young and confident (``face_interval``)
YOUNG_FACE_INTERVAL = 0.5
SETTLED_FACE_INTERVAL = 3.0
TEARDOWN_WAIT = 5.0  # seconds a closing call may wait for its transports before its slot is freed


def _log_teardown_failure(task: asyncio.Future) -> None:
    """A transport that fails while closing a finished call is worth one line, not a traceback."""
    if not task.cancelled() and task.exception() is not None:
        log.info("%s failed: %s", task.get_name(), task.exception() or type(task.exception()).__name__)


def face_interval(seconds_heard: float) -> float:
    """How long after one rasterised face the next may be drawn (the newest refinement then).

    Early refinements are big (traits, then identity) and come every 0.5 s: a young face shows
    each one as it comes (what a caller watching their face form expects; a 1 s interval was
    measured to draw 9 instead of 12 of a session's 20 refinements, at the price of a face that
    lags its estimate). Once the face is confident refinements are small: at most every 3 s.
    """
    return YOUNG_FACE_INTERVAL if seconds_heard < CONFIDENT_SECONDS else SETTLED_FACE_INTERVAL


@dataclass(frozen=True)
class CallOptions:
    privacy: str = "stable"
    room: str | None = None
    skin_tone: str | None = None  # a SKIN_TONES name, or None for the look seed / default
    seed: str | None = None  # the caller's look seed (engines/look.py): colours, never from the voice
    size: int = 256
    frame_events: bool = False  # per-frame mouth telemetry on the datachannel (tests, lip-sync checks)


def update_json(update: Any, kind: str = "status") -> dict:
    """``Update.to_json()`` tagged with its message type: the one payload the client, the
    REST JSON and ``analyze --json`` share (seconds heard is ``speech_seconds``)."""
    return {"type": kind, **update.to_json()}


class Call:
    def __init__(
        self,
        pc: RTCPeerConnection,
        config: ServerConfig,
        options: CallOptions,
        engine: Any,
        batcher: ModelBatcher,
        executor: Executor,
        metrics: Metrics,
        animator: FaceAnimator,
        render_executor: Executor,
        on_closed: Callable[["Call"], None],
        call_id: str | None = None,  # a worker's ids name the worker (server/workers.py)
    ) -> None:
        self.id = call_id or uuid.uuid4().hex[:12]
        self.pc = pc
        self.config = config
        self.options = options
        self.metrics = metrics
        self._executor = executor
        self._batcher = batcher
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.last_audio_at: float | None = None
        self.closed = asyncio.Event()
        self.closing = asyncio.Event()  # set when close() starts (a room member leaves Janus at once)
        self._closing = False
        self._closer: asyncio.Task | None = None
        self.teardown: set[asyncio.Future] = set()  # what was still closing when the slot was released
        self.close_reason: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self._channel: RTCDataChannel | None = None
        self.feed = SpeechFeed()
        self._pcm_ready = asyncio.Event()
        self._fps = 0.0
        self._fps_slots = 0
        self._fps_at = time.monotonic()
        self._held_counted = 0  # of the track's held slots, how many the metrics have

        self._overrides: dict[str, str] = {}
        if options.skin_tone is not None:
            self._overrides["skin_tone"] = options.skin_tone
        self._model_lock = asyncio.Lock()  # the pipeline is not thread-safe: one job at a time
        self.pipeline = engine.pipeline(
            privacy=options.privacy,
            room=options.room,
            overrides=dict(self._overrides) or None,
            max_speech_seconds=config.max_speech_seconds,
            seed=options.seed,
        )
        self.current = self.pipeline.current
        self.animator = animator
        #: also gets every decoded audio frame with its arrival time (a room member's feed
        #: carries the caller's own voice beside the avatar)
        self.audio_sink: Callable[[av.AudioFrame, float], None] | None = None
        self.video = AvatarVideoTrack(animator, config.fps, on_frame=self._on_frame)
        self._render_executor = render_executor
        self._size_wanted: int | None = None
        self._face_changed = asyncio.Event()
        self._face_interval = 0.0  # at least this long between two rasterised faces
        self._last_raster = -1e9
        self._face_wanted: tuple[Any, int] | None = (self.current.params, self.current.version)  # user choices show at once
        self._face_changed.set()

        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)
        self._spawn(self._feeder(), "feeder")
        self._spawn(self._watchdog(), "watchdog")
        self._spawn(self._face_updates(), "face")

    # --- task ownership ---
    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        task.set_name(f"call-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s task %s failed", self.id, task.get_name(), exc_info=task.exception())
            self.close_soon("error")

    # --- peer events ---
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._drain_audio(track), "audio")
        else:  # anything else we were sent must still be consumed
            self._spawn(self._drain_discard(track), track.kind)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        channel.on("message", self._on_message)
        # RTCDataChannel reaches "open" before the event fires on the answerer side.
        self._send_status(self.current, kind="hello")

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
        elif state in ("failed", "closed"):
            await self.close(f"connection_{state}")

    def _on_message(self, message: Any) -> None:
        if not isinstance(message, str) or len(message) > 4096:
            return
        try:
            msg = json.loads(message)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("type")
        if kind == "configure":
            self.configure(msg)
        elif kind == "ping":
            self._send({"type": "pong", "t": msg.get("t")})
        elif kind == "bye":
            self.close_soon("bye")

    def configure(self, msg: dict) -> None:
        """Live changes that need no new pipeline: video size, skin tone and look seed ("new look")."""
        from engines.face import SKIN_TONES
        from engines.look import check_seed

        size = msg.get("size")
        if isinstance(size, int) and size in SIZES:
            self._size_wanted = size
            self._face_changed.set()
        seed: str | None | bool = False  # False: unchanged
        if "seed" in msg:
            try:
                seed = check_seed(msg["seed"])
            except ValueError as exc:
                self._send({"type": "error", "error": f"seed: {exc}"})
                return
        if "skin_tone" in msg or seed is not False:
            tone = msg.get("skin_tone", self._overrides.get("skin_tone"))
            if tone in (None, "", "auto"):
                self._overrides.pop("skin_tone", None)
            elif tone in SKIN_TONES:
                self._overrides["skin_tone"] = tone
            else:
                self._send({"type": "error", "error": f"skin_tone must be one of {list(SKIN_TONES)} or auto"})
                return
            self._spawn(self._apply_overrides(seed), "overrides")
        else:
            self._send_status(self.current)

    async def _apply_overrides(self, seed: str | None | bool = False) -> None:
        async with self._model_lock:
            update = await self._loop.run_in_executor(self._executor, self.pipeline.set_overrides, dict(self._overrides), seed)
        self._accept_update(update)

    def _accept_update(self, update: Any) -> None:
        self.current = update
        self._face_interval = face_interval(update.seconds_heard)
        self._face_wanted = (update.params, update.version)
        self._face_changed.set()
        self._send_status(update)

    async def _face_updates(self) -> None:
        """Hand refinements to the animator, newest first, one rasterisation at a time, off the loop."""
        while True:
            await self._face_changed.wait()
            self._face_changed.clear()
            if self._size_wanted is not None:
                size, self._size_wanted = self._size_wanted, None
                await self._render(self.animator.set_size, size)
            if self._face_wanted is None:
                continue
            params, version = self._face_wanted
            if not self.animator.differs(params):
                self._face_wanted = None
                self.animator.set_face(params, version)  # cheap: only the version moves
                continue
            wait = self._last_raster + self._face_interval - time.monotonic()
            if wait > 0:  # a size change or a newer refinement wakes us early
                try:
                    await asyncio.wait_for(self._face_changed.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                self._face_changed.set()
                continue
            self._face_wanted = None
            await self._render(self.animator.set_face, params, version)
            self._last_raster = time.monotonic()

    async def _render(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            await self._loop.run_in_executor(self._render_executor, fn, *args)
        except Exception:  # a face that fails to draw must not end the call: keep the current one
            log.exception("call %s: face update failed; keeping the current face", self.id)

    # --- audio ---
    @property
    def face_final(self) -> bool:
        """Enough speech heard (``max_speech_seconds``): the face no longer changes."""
        return self.pipeline.seconds_heard >= self.config.max_speech_seconds

    async def _drain_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            self.last_audio_at = now
            raw = packet_samples(frame)
            self.animator.push_audio(raw, frame.sample_rate, channels=frame.layout.nb_channels, arrival=now)
            if self.audio_sink is not None:
                self.audio_sink(frame, now)
            if self.face_final:
                continue  # the mouth still moves; the model needs no more audio
            if self.feed.add(raw, frame):
                self._pcm_ready.set()

    async def _drain_discard(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return

    async def _feeder(self) -> None:
        while True:
            await self._pcm_ready.wait()
            self._pcm_ready.clear()
            chunk = self.feed.take()
            if chunk is None or self.face_final:
                continue  # keep draining, skip the model (VAD included)
            started = time.perf_counter()
            async with self._model_lock:
                update = await self._batcher.push(self.pipeline, chunk)
            self.feed.plan(self.pipeline.seconds_until_refinement)
            if update is not None:
                self.metrics.refinement_latency.observe(time.perf_counter() - started)
                self._accept_update(update)

    # --- watchdog: connect timeout, vanished caller, maximum duration, fps ---
    async def _watchdog(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD)
            now = time.monotonic()
            self._update_fps(now)
            if self.connected_at is None:
                if now - self.created_at > cfg.connect_timeout:
                    await self.close("connect_timeout")
                    return
                continue
            heard = self.last_audio_at if self.last_audio_at is not None else self.connected_at
            if now - heard > cfg.idle_timeout:
                await self.close("idle")
                return
            if now - self.created_at > cfg.max_call_seconds:
                await self.close("max_duration")
                return

    def _count_held(self) -> None:
        """Bring the held-slot counter up to date (per sent frame and per watchdog tick: a held slot costs nothing)."""
        held = self.video.frames_held
        if held != self._held_counted:
            self.metrics.frames_held.inc(held - self._held_counted)
            self._held_counted = held

    def _update_fps(self, now: float) -> None:
        self._count_held()
        dt = now - self._fps_at
        if dt >= 1.0:
            slots = self.video.slots
            self._fps = (slots - self._fps_slots) / dt
            self._fps_slots, self._fps_at = slots, now

    @property
    def fps(self) -> float:
        """Frame slots served per second, held pictures included: what the viewer's picture
        keeps up with (a starved call falls behind; a still face only sends less)."""
        return self._fps

    # --- status events ---
    def _send(self, payload: dict, droppable: bool = False) -> None:
        ch = self._channel
        if ch is None or ch.readyState != "open":
            return
        if droppable and ch.bufferedAmount > DATACHANNEL_HIGH_WATER:
            return
        try:
            ch.send(json.dumps(payload, separators=(",", ":")))
        except Exception:  # the transport may be tearing down
            log.debug("datachannel send failed", exc_info=True)

    def _send_status(self, update: Any, kind: str = "status") -> None:
        body = update_json(update, kind)
        body.update(
            {
                "call_id": self.id,
                "size": self.animator.size,
                "fps": self.config.fps,
                "privacy": self.options.privacy,
                "skin_tone": self._overrides.get("skin_tone"),
            }
        )
        self._send(body)

    def _on_frame(self, info: FrameInfo) -> None:
        self.metrics.frames_sent.inc()
        self._count_held()
        self.metrics.mouth_age_seconds.observe(info.frame.mouth_age)
        if info.seq == 0:
            self.metrics.first_frame_seconds.observe(time.monotonic() - self.created_at)
        if self.options.frame_events and self.config.frame_events:
            self._send(info.to_json(), droppable=True)

    # --- teardown ---
    def close_soon(self, reason: str) -> None:
        """Close from a callback that cannot await; the task is kept until it finishes."""
        if not self._closing and self._closer is None:
            self._closer = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str = "closed") -> None:
        """Stop the call's work, give its slot back, then let the transports finish closing.

        The slot is released after at most ``TEARDOWN_WAIT`` seconds even when aiortc's
        ``pc.close()`` (or a task ignoring its cancellation) takes longer: a caller who hung up
        must never keep a place in a full server. What is still running then is kept in
        ``self.teardown`` and logged, not abandoned.
        """
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        self.closing.set()
        self.close_reason = reason
        started = time.monotonic()
        log.info("call %s closing: %s", self.id, reason)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        self.video.stop()
        self._update_fps(time.monotonic())
        self.animator.close()
        pc_close = asyncio.ensure_future(self.pc.close())
        pc_close.set_name(f"call-{self.id}-pc-close")
        pc_close.add_done_callback(_log_teardown_failure)
        _, pending = await asyncio.wait([pc_close, *tasks], timeout=TEARDOWN_WAIT)
        if pending:
            log.warning(
                "call %s: %s still running %.0f s after close; its slot is released anyway",
                self.id,
                ", ".join(sorted(t.get_name() for t in pending)),
                TEARDOWN_WAIT,
            )
        self.teardown = pending
        self.feed.clear()
        self.metrics.closed_sessions.labels(reason=reason).inc()
        self._on_closed(self)
        self.closed.set()
        log.info("call %s closed in %.2f s", self.id, time.monotonic() - started)
