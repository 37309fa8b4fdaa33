"""AssistantAvatar: a voice agent's TTS in, a lip-synced face out — the shape of LiveKit's VideoGenerator.

Why it is built this way:
- *It is the clock.* Audio pushed in comes back out in frame-period slices, each slice
  beside the video frame whose mouth was read from it (``AudioOut.t == VideoOut.t``), so a
  transport that plays them by timestamp is in sync by construction. While nothing plays,
  idle frames keep coming (blinks, a slight sway).
- *Pull-driven, drops rather than bursts.* The iterator makes a frame when the consumer
  asks for the next item and its slot is due; a consumer that falls behind skips video
  slots. Audio is never skipped: the audio of skipped slots still comes out (a transport
  buffers audio), so the audio position keeps pace with the wall clock and lip-sync holds.
- *Segments and interruptions are exact.* ``end_segment`` puts a marker in the queue; the
  ``SegmentEnd`` comes when the last sample before it has been played, with the seconds of
  that segment played. ``clear_buffer`` drops the queue at once, wakes the iterator and
  reports every dropped segment as interrupted; the next frame's mouth is closed.
- *One face per assistant.* Given up front (face JSON or a look seed) it shows from the
  first frame; otherwise the face is refined from the TTS voice itself through an
  ``AvatarEngine`` pipeline (model work in an executor, never on the event loop) and frozen
  after ``freeze_after_s`` seconds of speech.

All methods are called from the event loop thread that iterates the avatar.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import numpy as np

from engines.animator import FaceAnimator, LayerCache, LayerFactory
from engines.face import FaceParams
from engines.mouth import NEUTRAL_SHAPE
from engines.pipeline import PUSH_SECONDS
from engines.pipeline import SAMPLE_RATE as MODEL_RATE
from engines.render import SIZES

from .face import face_from_seed, face_params

log = logging.getLogger("speech2face.assistant")

SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
IMAGE_FORMATS = ("rgb24", "jpeg")

_shared_layers = LayerCache()  # assistants in one process share the rasters of their faces


@dataclass(frozen=True)
class VideoOut:
    rgb: np.ndarray  # (H, W, 3) uint8, read-only
    index: int  # frame slot number since the first frame (t = index / fps)
    t: float  # stream seconds
    mouth: float  # openness drawn, 0 … 1
    audio_pos: float | None  # position (s) in the audio pushed since start that this frame shows; None while idle
    jpeg: bytes | None = None  # the same picture as JPEG when the avatar was made with image_format="jpeg"
    mouth_shape: str = NEUTRAL_SHAPE
    version: int = 0  # face version on screen


@dataclass(frozen=True)
class AudioOut:
    pcm: np.ndarray  # int16 mono, one frame period (the slot's audio, zero-padded on underrun)
    sample_rate: int
    t: float  # stream seconds; the VideoOut with the same t shows this audio
    segment_start: bool = False  # the first audio of a segment: playback started


@dataclass(frozen=True)
class SegmentEnd:
    position: float  # seconds of that segment played
    interrupted: bool


@dataclass(frozen=True)
class FaceEvent:
    update: dict  # the engine's Update JSON for a refinement


Item = VideoOut | AudioOut | SegmentEnd | FaceEvent


class _End:
    """Queue marker: the segment before it is complete."""

    __slots__ = ("segment",)

    def __init__(self, segment: int) -> None:
        self.segment = segment


class AssistantAvatar:
    def __init__(
        self,
        *,
        sample_rate: int,
        size: int = 256,
        fps: float = 25.0,
        face: FaceParams | Mapping | None = None,
        seed: str | None = None,
        engine: Any = None,
        freeze_after_s: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
        image_format: str = "rgb24",
        sleep: Callable[[float], Awaitable[None]] | None = None,
        model_executor: Executor | None = None,
        render_executor: Executor | None = None,
        push_model: Callable[[Any, np.ndarray], Awaitable[Any]] | None = None,
        layer_factory: LayerFactory | None = None,
        blink_seed: int | None = None,
    ) -> None:
        """``sleep`` (with ``clock``) lets a test drive time; ``push_model(pipeline, pcm16k)`` lets a
        server batch the model across sessions (default: ``pipeline.push`` in ``model_executor``)."""
        if isinstance(sample_rate, bool) or sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, got {sample_rate!r}")
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not 1.0 <= fps <= 60.0:
            raise ValueError(f"fps must be within 1..60, got {fps!r}")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}")
        if freeze_after_s <= 0:
            raise ValueError("freeze_after_s must be positive")
        self.sample_rate = int(sample_rate)
        self.size = int(size)
        self.fps = float(fps)
        self.period = 1.0 / self.fps
        self.image_format = image_format
        given = face_params(face) if face is not None else face_from_seed(seed) if seed is not None else None
        self._initial = given or FaceParams.neutral()
        self._clock = clock
        self._sleep = sleep
        self._model_executor = model_executor
        self._render_executor = render_executor
        self._layers = layer_factory or _shared_layers
        self._blink_seed = blink_seed
        self._animator: FaceAnimator | None = None
        # the model: only when no face was given
        self._freeze_after_s = float(freeze_after_s)
        self._pipeline = engine.pipeline(max_speech_seconds=freeze_after_s) if engine is not None and given is None else None
        self._push_model = push_model
        self._model_pcm: list[np.ndarray] = []
        self._model_samples = 0
        self._model_ready = asyncio.Event()
        self._to_model = None  # av resampler, sample_rate → 16 kHz mono float
        self._resamplers: dict[int, Any] = {}  # other input rates → sample_rate
        self._tasks: set[asyncio.Task] = set()
        self.current = self._pipeline.current if self._pipeline is not None else None
        # playout
        self._queue: deque[tuple[int, np.ndarray] | _End] = deque()
        self._head_offset = 0  # samples of the queue's first array already played
        self._queued = 0  # samples queued
        self._segment = 0  # the segment pushes go to
        self._segment_has_audio = False
        self._after_clear = False
        self._playing: int | None = None  # segment being played
        self._played: dict[int, int] = {}  # samples played per segment not yet finished
        self._played_total = 0  # samples played since start (real audio only)
        self._pending: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._start: float | None = None
        self._index = -1
        self._slot_samples_end = 0  # cumulative sample count at the end of the last slot
        self._closed = False
        self._iterator: AsyncIterator[Item] | None = None
        self.frames_out = 0

    # ------------------------------------------------------------------ input
    @property
    def frozen(self) -> bool:
        """The face no longer changes (given up front, or enough speech heard)."""
        return self._pipeline is None or self._pipeline.seconds_heard >= self._freeze_after_s

    @property
    def queued_seconds(self) -> float:
        return self._queued / self.sample_rate

    @property
    def playing(self) -> bool:
        """Audio is being played or waits to be."""
        return self._playing is not None or bool(self._queue)

    def push_audio(self, pcm: np.ndarray, sample_rate: int | None = None) -> None:
        """Queue TTS audio (int16 or float32 mono, at ``sample_rate`` or the avatar's rate)."""
        if self._closed:
            raise RuntimeError("push_audio after aclose()")
        x = np.asarray(pcm)
        if x.ndim == 2 and 1 in x.shape:
            x = x.reshape(-1)
        if x.ndim != 1:
            raise ValueError(f"pcm must be mono (1-D), got shape {x.shape}")
        if x.dtype == np.int16:
            pcm16 = x
        elif x.dtype in (np.float32, np.float64):
            pcm16 = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
        else:
            raise ValueError(f"pcm must be int16 or float32, got {x.dtype}")
        rate = self.sample_rate if sample_rate is None else sample_rate
        if rate != self.sample_rate:
            if isinstance(rate, bool) or not isinstance(rate, int) or not 4000 <= rate <= 192_000:
                raise ValueError(f"sample_rate must be an integer rate in Hz, got {rate!r}")
            pcm16 = self._resample(pcm16, rate)
        if pcm16.size == 0:
            return
        pcm16 = pcm16.copy()  # the caller may reuse its buffer
        self._queue.append((self._segment, pcm16))
        self._queued += pcm16.size
        self._segment_has_audio = True
        self._after_clear = False
        if self._pipeline is not None and not self.frozen:
            self._feed_model(pcm16)

    def end_segment(self) -> None:
        """The audio pushed since the last end is one utterance; report it when played out."""
        if self._closed:
            return
        if not self._segment_has_audio and self._after_clear:
            return  # the segment was already reported as interrupted
        self._queue.append(_End(self._segment))
        self._segment += 1
        self._segment_has_audio = False

    def clear_buffer(self) -> None:
        """Drop queued audio now (an interruption); the mouth closes at the next frame."""
        dropped: list[int] = []
        if self._playing is not None:
            dropped.append(self._playing)
        for entry in self._queue:
            seg = entry.segment if isinstance(entry, _End) else entry[0]
            if seg not in dropped:
                dropped.append(seg)
        if self._segment_has_audio and self._segment not in dropped:
            dropped.append(self._segment)
        self._queue.clear()
        self._queued = self._head_offset = 0
        self._playing = None
        for seg in dropped:
            self._pending.append(SegmentEnd(self._played.pop(seg, 0) / self.sample_rate, True))
        self._played.clear()
        if self._segment_has_audio or dropped:
            self._segment += 1
        self._segment_has_audio = False
        self._after_clear = True
        self._wake.set()

    def _resample(self, pcm16: np.ndarray, rate: int) -> np.ndarray:
        import av

        r = self._resamplers.get(rate)
        if r is None:
            r = self._resamplers[rate] = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
        frame = av.AudioFrame.from_ndarray(pcm16.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        out = [f.to_ndarray().reshape(-1) for f in r.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    # ------------------------------------------------------------------ the face from the voice
    def _feed_model(self, pcm16: np.ndarray) -> None:
        import av

        if self._to_model is None:
            self._to_model = av.AudioResampler(format="flt", layout="mono", rate=MODEL_RATE)
        frame = av.AudioFrame.from_ndarray(pcm16.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        for out in self._to_model.resample(frame):
            x = out.to_ndarray().reshape(-1)
            self._model_pcm.append(x)
            self._model_samples += x.size
        if self._model_samples >= PUSH_SECONDS * MODEL_RATE:
            self._model_ready.set()

    async def _refine(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.frozen:
            await self._model_ready.wait()
            self._model_ready.clear()
            if not self._model_pcm:
                continue
            chunk = np.concatenate(self._model_pcm)
            self._model_pcm.clear()
            self._model_samples = 0
            if self._push_model is not None:
                update = await self._push_model(self._pipeline, chunk)
            else:
                update = await loop.run_in_executor(self._model_executor, self._pipeline.push, chunk)
            if update is None:
                continue
            self.current = update
            self._pending.append(FaceEvent(update.to_json()))
            anim = self._animator
            if anim is not None and anim.differs(update.params):
                await loop.run_in_executor(self._render_executor, anim.set_face, update.params, update.version)
            elif anim is not None:
                anim.set_face(update.params, update.version)  # invisible change: only the version moves
        self._model_pcm.clear()

    # ------------------------------------------------------------------ output
    async def prepare(self) -> None:
        """Rasterise the face (off the loop) so the first frame is immediate; iteration does it if needed."""
        if self._animator is None:
            loop = asyncio.get_running_loop()
            anim = await loop.run_in_executor(
                self._render_executor,
                lambda: FaceAnimator(
                    self.size,
                    self._initial,
                    blink_seed=self._blink_seed,
                    mouth_window_s=0.5 * self.period,  # the mouth is read from this slot's audio only
                    layer_factory=self._layers,
                ),
            )
            if self._animator is None:
                self._animator = anim

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"assistant-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the face stays as it is; frames go on
            log.error("assistant avatar: %s failed", task.get_name(), exc_info=task.exception())

    def __aiter__(self) -> AsyncIterator[Item]:
        """One stream per avatar: iterating again (after a ``break``) resumes it."""
        if self._iterator is None:
            self._iterator = self._items()
        return self._iterator

    async def _items(self) -> AsyncIterator[Item]:
        await self.prepare()
        if self._pipeline is not None and not self.frozen:
            self._spawn(self._refine(), "refine")
        while not self._closed:
            if self._pending:
                yield self._pending.popleft()
                continue
            await self._next_slot()
            if self._closed:
                break
            self._pending.extend(self._slot_items())
        while self._pending:  # what aclose() reported
            yield self._pending.popleft()

    async def _next_slot(self) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now
            return
        due = self._start + (self._index + 1) * self.period
        wait = due - now
        if wait <= 0:
            return
        if self._sleep is not None:
            await self._sleep(wait)
            return
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), wait)
        except asyncio.TimeoutError:
            return
        # woken early (clear, end, close): deliver what it reported, then come back for the slot
        if self._pending or self._closed:
            return
        await self._next_slot()

    def _slot_items(self) -> list[Item]:
        """Advance to the slot that is due now; audio of skipped slots still comes out."""
        if self._pending:
            return []  # woken early: _items yields these first and comes back
        now = self._clock()
        due_index = max(self._index + 1, int((now - self._start) / self.period + 1e-9))
        items: list[Item] = []
        while self._index < due_index - 1:  # the consumer fell behind: skip these frames, keep their audio
            self._index += 1
            items.extend(self._audio_slot(self._index, mouth=False)[0])
        self._index = due_index
        audio, pos = self._audio_slot(self._index, mouth=True)
        anim = self._animator
        t = self._index * self.period
        shown = anim.frame(t, "rgb24")
        jpeg = anim.image("jpeg") if self.image_format == "jpeg" else None
        video = VideoOut(shown.image, self._index, t, shown.mouth.open, pos, jpeg, shown.mouth.shape, shown.version)
        self.frames_out += 1
        ends = [x for x in audio if isinstance(x, SegmentEnd)]
        return items + [x for x in audio if not isinstance(x, SegmentEnd)] + [video] + ends

    def _audio_slot(self, index: int, mouth: bool) -> tuple[list[Item], float | None]:
        """Play one slot's audio: (AudioOut and SegmentEnds, position of its first sample or None)."""
        end = int(round((index + 1) * self.sample_rate / self.fps))
        n = max(1, end - self._slot_samples_end)
        self._slot_samples_end = end
        chunk = np.zeros(n, np.int16)
        filled, starts, items = 0, False, []
        pos = self._played_total / self.sample_rate
        while filled < n and self._queue:
            head = self._queue[0]
            if isinstance(head, _End):
                self._queue.popleft()
                played = self._played.pop(head.segment, 0)
                if self._playing == head.segment:
                    self._playing = None
                items.append(SegmentEnd(played / self.sample_rate, False))
                if filled:
                    break  # a slot never mixes two segments
                continue
            seg, arr = head
            if self._playing != seg:
                if filled:
                    break
                self._playing, starts = seg, True
            take = min(n - filled, arr.size - self._head_offset)
            chunk[filled : filled + take] = arr[self._head_offset : self._head_offset + take]
            filled += take
            self._head_offset += take
            self._queued -= take
            self._played[seg] = self._played.get(seg, 0) + take
            if self._head_offset == arr.size:
                self._queue.popleft()
                self._head_offset = 0
        # a segment whose audio is all played and whose end is already queued finishes with this slot
        if self._queue and isinstance(self._queue[0], _End) and self._queue[0].segment == self._playing:
            head = self._queue.popleft()
            items.append(SegmentEnd(self._played.pop(head.segment, 0) / self.sample_rate, False))
            self._playing = None
        self._played_total += filled
        t = index * self.period
        if mouth:
            self._animator.push_audio(chunk, self.sample_rate, arrival=t)
        out: list[Item] = []
        if filled or self._playing is not None:
            out.append(AudioOut(chunk, self.sample_rate, t, starts))
        return out + items, (pos if filled else None)

    async def aclose(self) -> None:
        """Stop: the iterator ends after what was already reported; tasks are cancelled and awaited."""
        if self._closed:
            return
        self.clear_buffer()  # what was playing is reported as interrupted
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._animator is not None:
            self._animator.close()
