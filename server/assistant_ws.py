"""``GET /v1/assistant``: a voice agent's TTS over a websocket in, its lip-synced face out.

Protocol (README "Assistant websocket"): the first message is text
``{"type": "start", "sample_rate": 16000|22050|24000|48000, "size": 256, "fps": 25,
"format": "jpeg"|"rgb24", "face": {...}?, "seed": "..."?, "frame_events": bool?}``; then
binary PCM16LE mono at that rate, text ``{"type": "end"}`` (segment complete),
``{"type": "clear"}`` (interrupt) and ``{"type": "close"}`` (play what is queued, then
close). The server sends one binary message per frame (JPEG, or raw RGB rows) and text
events: ``playback_started``, ``playback_finished {position, interrupted}``, ``face`` (a
refinement) and, with ``frame_events``, ``{"type": "frame", "index", "mouth", "t"}`` right
after each frame, ``t`` being the position in the audio pushed since start that the frame
shows (null while idle).

Why it looks like this:
- The session only moves bytes: ``AssistantAvatar`` is the clock, the animator and the
  face; the writer sends what it yields, and a slow client makes the avatar drop frames
  (the send awaits), never queue them.
- Every check of what a client sends lives in ``AssistantProtocol`` (one place to add
  origin checks or rate limits). A bad message gets ``{"type": "error", "status",
  "error"}`` and, when the stream can no longer be trusted, a close code: 1008 protocol
  violation, 1009 message too big, 1013 server full (try again), 1011 server error.
- An assistant session holds one admission slot like a call and shows in /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from engines.face import FaceParams
from engines.render import SIZES
from speech2face.assistant import AssistantAvatar, AudioOut, FaceEvent, SegmentEnd, VideoOut, face_from_seed, face_params

from .admission import Full
from .body import loads_strict
from .errors import HttpError
from .state import STATE, ServerState

log = logging.getLogger("speech2face.assistant")

SAMPLE_RATES = (16000, 22050, 24000, 48000)
FORMATS = ("jpeg", "rgb24")
MAX_MESSAGE_BYTES = 512 * 1024  # one message: ~5 s of 48 kHz PCM16, or a start message with a face
HARD_MESSAGE_BYTES = 4 * MAX_MESSAGE_BYTES  # aiohttp drops the connection (1009) past this
START_TIMEOUT_S = 10.0
MAX_AHEAD_S = 30.0  # audio queued ahead of playback beyond this: stop reading (TCP backpressure)
MAX_FPS = 60.0

CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_TRY_AGAIN = 1000, 1001, 1008, 1009, 1011, 1013


class ProtocolError(HttpError):
    """A client error on the assistant socket; ``close_code`` set when the session must end."""

    def __init__(self, message: str, status: int = 400, close_code: int | None = CLOSE_POLICY, **kw: Any) -> None:
        super().__init__(message, status, **kw)
        self.close_code = close_code


@dataclass(frozen=True)
class AssistantOptions:
    sample_rate: int
    size: int = 256
    fps: float = 25.0
    format: str = "jpeg"
    face: FaceParams | None = None
    seed: str | None = None
    frame_events: bool = False


class AssistantProtocol:
    """Every check of what an assistant client sends: the start message, control messages, PCM."""

    def __init__(self) -> None:
        self.closing = False  # the client sent {"type": "close"}

    @staticmethod
    def _json(data: str) -> dict:
        if len(data) > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"message over {MAX_MESSAGE_BYTES} bytes", 413, CLOSE_TOO_BIG)
        try:
            body = loads_strict(data)  # NaN, 1e400, deep nesting, lone surrogates: a 400, not a crash
        except HttpError as exc:
            raise ProtocolError(f"text messages must be JSON objects: {exc}") from None
        if not isinstance(body, dict):
            raise ProtocolError("text messages must be JSON objects")
        return body

    def start(self, msg: Any) -> AssistantOptions:
        if msg.type == WSMsgType.BINARY:
            raise ProtocolError('send {"type": "start", "sample_rate": ...} before any audio')
        if msg.type != WSMsgType.TEXT:
            raise ProtocolError('expected a {"type": "start"} message')
        body = self._json(msg.data)
        if body.get("type") != "start":
            raise ProtocolError('the first message must be {"type": "start", "sample_rate": ...}')
        rate = body.get("sample_rate")
        if isinstance(rate, bool) or rate not in SAMPLE_RATES:
            raise ProtocolError(f'"sample_rate" must be one of {list(SAMPLE_RATES)}, got {rate!r}')
        size = body.get("size", 256)
        if isinstance(size, bool) or size not in SIZES:
            raise ProtocolError(f'"size" must be one of {list(SIZES)}')
        fps = body.get("fps", 25)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 1 <= fps <= MAX_FPS:
            raise ProtocolError(f'"fps" must be a number in 1..{MAX_FPS:g}')
        fmt = body.get("format", "jpeg")
        if fmt not in FORMATS:
            raise ProtocolError(f'"format" must be one of {list(FORMATS)}')
        frame_events = body.get("frame_events", False)
        if not isinstance(frame_events, bool):
            raise ProtocolError('"frame_events" must be true or false')
        face = seed = None
        try:
            if body.get("face") is not None:
                face = face_params(body["face"])
            if body.get("seed") is not None:
                seed = body["seed"]
                face_from_seed(seed)  # validates
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        return AssistantOptions(int(rate), int(size), float(fps), fmt, face, seed, frame_events)

    def control(self, data: str) -> str | None:
        """A text message after start: "end", "clear" or "close"; None (after an error reply) for others."""
        kind = self._json(data).get("type")
        if kind in ("end", "clear", "close"):
            if kind == "close":
                self.closing = True
            return kind
        if kind == "start":
            raise ProtocolError("the session has already started")
        return None

    def pcm(self, data: bytes) -> np.ndarray:
        if self.closing:
            raise ProtocolError("PCM after close: the session is closing", 409)
        if len(data) > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"message over {MAX_MESSAGE_BYTES} bytes: send audio in smaller pieces", 413, CLOSE_TOO_BIG)
        if len(data) % 2:
            raise ProtocolError("PCM16LE needs an even number of bytes")
        return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


def _error(exc: HttpError) -> dict:
    body: dict[str, Any] = {"type": "error", "status": exc.status, "error": str(exc)}
    if exc.headers and "Retry-After" in exc.headers:
        body["retry_after"] = int(exc.headers["Retry-After"])
    return body


class AssistantSession:
    """One assistant socket: an admission slot, an avatar, a reader and a writer task."""

    def __init__(self, state: ServerState, ws: web.WebSocketResponse, options: AssistantOptions, protocol: AssistantProtocol):
        self.id = "assistant-" + uuid.uuid4().hex[:12]
        self.state = state
        self.ws = ws
        self.options = options
        self.protocol = protocol
        self.created_at = time.monotonic()
        self.close_reason: str | None = None
        self.frame_events = options.frame_events and state.config.frame_events
        fixed = options.face is not None or options.seed is not None
        if not fixed and not state.ready:
            raise ProtocolError("engine is still loading", 503, CLOSE_TRY_AGAIN, headers=state.retry_headers())
        self.avatar = AssistantAvatar(
            sample_rate=options.sample_rate,
            size=options.size,
            fps=options.fps,
            face=options.face,
            seed=options.seed,
            engine=None if fixed else state.engine,
            image_format="jpeg" if options.format == "jpeg" else "rgb24",
            model_executor=state.model_executor,
            render_executor=state.render_executor,
            push_model=None if fixed or state.batcher is None else state.batcher.push,
            layer_factory=state.layer_factory,
        )
        self._tasks: list[asyncio.Task] = []
        try:
            state.admission.acquire(self.id)
        except Full as exc:
            state.metrics.rejected_sessions.inc()
            raise ProtocolError(str(exc), 503, CLOSE_TRY_AGAIN, headers=state.retry_headers()) from exc
        state.assistants[self.id] = self
        state.metrics.assistant_sessions.set(len(state.assistants))
        state.metrics.assistant_sessions_total.inc()

    async def run(self) -> None:
        await self.avatar.prepare()
        reader = asyncio.ensure_future(self._read())
        writer = asyncio.ensure_future(self._write())
        self._tasks = [reader, writer]
        try:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()

    async def _read(self) -> None:
        ws, avatar = self.ws, self.avatar
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                avatar.push_audio(self.protocol.pcm(msg.data))
                while avatar.queued_seconds > MAX_AHEAD_S and not ws.closed:
                    await asyncio.sleep(0.1)  # far ahead of playback: let TCP hold the rest
            elif msg.type == WSMsgType.TEXT:
                try:
                    kind = self.protocol.control(msg.data)
                except ProtocolError as exc:
                    if exc.close_code is not None:
                        raise
                    await ws.send_json(_error(exc))
                    continue
                if kind == "end":
                    avatar.end_segment()
                elif kind == "clear":
                    avatar.clear_buffer()
                elif kind == "close":
                    avatar.end_segment()
                else:
                    await ws.send_json(
                        {"type": "error", "status": 400, "error": 'expected {"type": "end"|"clear"|"close"} or binary PCM'}
                    )
            else:
                break  # close or error frame
        self.close_reason = self.close_reason or "client_closed"

    async def _write(self) -> None:
        ws, metrics = self.ws, self.state.metrics
        limit = self.created_at + self.state.config.max_call_seconds
        async for item in self.avatar:
            if isinstance(item, VideoOut):
                await ws.send_bytes(item.jpeg if item.jpeg is not None else item.rgb.tobytes())
                metrics.assistant_frames_sent.inc()
                if self.frame_events:
                    t = None if item.audio_pos is None else round(item.audio_pos, 4)
                    await ws.send_json({"type": "frame", "index": item.index, "mouth": round(item.mouth, 4), "t": t})
                if self.protocol.closing and not self.avatar.playing:
                    self.close_reason = "client_close"
                    await ws.close(code=CLOSE_NORMAL)
                    return
                if time.monotonic() > limit:
                    self.close_reason = "max_duration"
                    await ws.send_json(_error(HttpError("the session reached its maximum duration", 408)))
                    await ws.close(code=CLOSE_NORMAL)
                    return
            elif isinstance(item, AudioOut):
                if item.segment_start:
                    await ws.send_json({"type": "playback_started"})
            elif isinstance(item, SegmentEnd):
                await ws.send_json(
                    {"type": "playback_finished", "position": round(item.position, 4), "interrupted": item.interrupted}
                )
            elif isinstance(item, FaceEvent):
                await ws.send_json({**item.update, "type": "face"})

    async def close(self, reason: str | None = None) -> None:
        """Idempotent: stop the tasks, close the avatar and the socket, free the slot."""
        if reason is not None and self.close_reason is None:
            self.close_reason = reason
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.avatar.aclose()
        if not self.ws.closed:
            await self.ws.close(code=CLOSE_GOING_AWAY if reason == "shutdown" else CLOSE_NORMAL)
        state = self.state
        if state.assistants.pop(self.id, None) is not None:
            state.admission.release(self.id)
            state.metrics.assistant_sessions.set(len(state.assistants))
            state.metrics.closed_sessions.labels(reason=f"assistant_{self.close_reason or 'closed'}").inc()


async def _fail(ws: web.WebSocketResponse, body: dict, code: int) -> None:
    if ws.closed:
        return
    try:
        await ws.send_json(body)
        await ws.close(code=code)
    except ConnectionResetError:
        pass


async def assistant(request: web.Request) -> web.WebSocketResponse:
    state = request.app[STATE]
    ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=HARD_MESSAGE_BYTES, compress=False)
    await ws.prepare(request)
    protocol = AssistantProtocol()
    session: AssistantSession | None = None
    try:
        try:
            first = await ws.receive(timeout=START_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ProtocolError(f"no start message within {START_TIMEOUT_S:g} s", 408) from None
        if first.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return ws
        session = AssistantSession(state, ws, protocol.start(first), protocol)
        await session.run()
    except ProtocolError as exc:
        if session is not None:
            session.close_reason = f"error_{exc.status}"
        await _fail(ws, _error(exc), exc.close_code or CLOSE_POLICY)
    except ConnectionResetError:  # the client vanished mid-send
        if session is not None:
            session.close_reason = "client_gone"
    except Exception:
        log.exception("assistant session failed")
        if session is not None:
            session.close_reason = "error_500"
        await _fail(ws, {"type": "error", "status": 500, "error": "internal error; the session ended"}, CLOSE_INTERNAL)
    finally:
        if session is not None:
            await session.close()
    return ws
