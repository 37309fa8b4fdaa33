"""The avatar video track: paced frames from the renderer, mouth and blink read at frame time.

Why it looks like this:
- *Pacing drops, never bursts.* aiortc's ``VideoStreamTrack.next_timestamp`` catches up
  after a stall by sending frames back to back; a talking face would then replay stale
  mouths. Here a late track skips timestamps and renders the present.
- *Mouth and blink are sampled when the frame is made*, from the envelope of the newest
  audio, so lip-sync latency is bounded by the frame period plus one audio packet.
- *Frames come from a cache.* Between refinements the face only varies in mouth openness
  and blink, so the converted YUV frame is cached per (face version, quantised mouth,
  quantised blink): a listening avatar costs a dict lookup and a copy per frame, close
  to a bare aiortc stream. Only morph frames (~300 ms after each refinement) render.
- *Refinements morph, one at a time.* A refinement that arrives mid-morph waits for the
  running morph to finish (the newest one wins), so the face never jumps backwards.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import OrderedDict
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Protocol

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.reformatter import VideoReformatter

from engines.blink import Blinker
from engines.mouth import MouthEnvelope

log = logging.getLogger("speech2face.video")

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
MORPH_S = 0.3
MOUTH_LEVELS = 20  # quantisation of the mouth for the frame cache (1/20 is below what the eye sees at 15 fps)
BLINK_LEVELS = 6
CACHE_BYTES = 8 * 1024 * 1024


class Renderer(Protocol):
    def set_params(self, params) -> None: ...
    def frame(self, mouth: float, blink: float, morph: float = 1.0) -> np.ndarray: ...


@dataclass(frozen=True)
class FrameInfo:
    seq: int
    pts: int
    t: float  # seconds since the track started
    mouth: float
    audio_t: float  # media time of the newest audio behind the mouth
    mouth_age: float  # seconds between that audio's arrival and this frame
    blink: float
    morph: float
    version: int
    cached: bool

    def to_json(self) -> dict:
        return {
            "type": "frame",
            "seq": self.seq,
            "pts": self.pts,
            "t": round(self.t, 4),
            "mouth": round(self.mouth, 4),
            "audio_t": round(self.audio_t, 4),
            "mouth_age_ms": round(self.mouth_age * 1000, 2),
            "blink": round(self.blink, 3),
            "morph": round(self.morph, 3),
            "version": self.version,
        }


def smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def rgb_to_yuv420(rgb: np.ndarray, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """Packed yuv420p as PyAV lays it out: (h * 3 / 2, w) — Y rows, then U, then V.

    Pass a long-lived ``reformatter``: it keeps its swscale context between calls of the
    same size, which is most of the cost at avatar sizes (0.3 ms instead of 0.9 ms).
    """
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    if reformatter is None:
        return frame.reformat(format="yuv420p").to_ndarray()
    return reformatter.reformat(frame, format="yuv420p").to_ndarray()


class IncrementalYuv:
    """RGB → YUV420 converting only the rows that changed since the previous frame.

    Between refinements a frame differs from the last one only around the mouth and eyes,
    so converting that band (rows aligned to 4 so the chroma planes stay whole rows)
    instead of the whole picture cuts the per-frame colour conversion ~5×.
    """

    def __init__(self) -> None:
        self._rgb: np.ndarray | None = None
        self._yuv: np.ndarray | None = None
        self._full = VideoReformatter()
        self._band = VideoReformatter()

    def reset(self) -> None:
        self._rgb = self._yuv = None

    def convert(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        prev = self._rgb
        if prev is None or prev.shape != rgb.shape or h % 4 or w % 2:
            yuv = rgb_to_yuv420(rgb, self._full)
        else:
            rows = np.flatnonzero((rgb != prev).any(axis=(1, 2)))
            if rows.size == 0:
                yuv = self._yuv
            else:
                r0 = int(rows[0]) & ~3
                r1 = min(h, (int(rows[-1]) + 4) & ~3)
                if (r1 - r0) * 2 > h:
                    yuv = rgb_to_yuv420(rgb, self._full)
                else:
                    band = rgb_to_yuv420(rgb[r0:r1], self._band).reshape(-1)
                    yuv = self._yuv.copy()
                    flat = yuv.reshape(-1)
                    bh = r1 - r0
                    ys, cs = h * w, (h // 2) * (w // 2)
                    bys, bcs = bh * w, (bh // 2) * (w // 2)
                    c0, c1 = (r0 // 2) * (w // 2), (r1 // 2) * (w // 2)
                    flat[r0 * w : r1 * w] = band[:bys]
                    flat[ys + c0 : ys + c1] = band[bys : bys + bcs]
                    flat[ys + cs + c0 : ys + cs + c1] = band[bys + bcs : bys + 2 * bcs]
        self._rgb, self._yuv = rgb, yuv
        return yuv


VISIBLE_DELTA = 0.01


def visibly_different(a, b) -> bool:
    """Whether two faces differ by more than a viewer could see at avatar size.

    Continuous params under 1 % of their range are invisible; a categorical param that
    changes bucket (hair style, colours) always is.
    """
    va, vb = np.asarray(a.vector), np.asarray(b.vector)
    if float(np.abs(va - vb).max()) >= VISIBLE_DELTA:
        return True
    from engines.face import PARAM_SPECS

    for i, spec in enumerate(PARAM_SPECS):
        if spec.categories:
            n = len(spec.categories)
            if min(n - 1, int(va[i] * n)) != min(n - 1, int(vb[i] * n)):
                return True
    return False


class AvatarVideoTrack(MediaStreamTrack):
    """Paced avatar frames. Rasterising a new face (~50 ms) runs in ``render_executor``;
    ``frame()`` is never called while that runs, so the renderer needs no lock."""

    kind = "video"

    def __init__(
        self,
        renderer: Renderer,
        renderer_factory: Callable[[int], Renderer],
        size: int,
        fps: float,
        mouth: MouthEnvelope,
        render_executor: Executor | None = None,
        blinker: Blinker | None = None,
        on_frame: Callable[[FrameInfo], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._factory = renderer_factory
        self._executor = render_executor
        self._size = size
        self._renderer = renderer
        self._period = 1.0 / fps
        self._mouth = mouth
        self._blinker = blinker or Blinker()
        self._on_frame = on_frame
        self._clock = clock
        self._start: float | None = None
        self._index = 0  # frame slot number since start (pts = index * period)
        self._seq = 0
        self._params = getattr(renderer, "params", None)
        self._version = 0
        self._pending: tuple[object, int] | None = None
        self._pending_size: int | None = None
        self._applying: asyncio.Future | None = None
        self._applying_what: tuple | None = None
        self._morph_start = -1e9
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self._yuv = IncrementalYuv()
        self._last_apply = -1e9
        #: at least this long between two rasterised faces (the call raises it once the
        #: face is confident: later refinements are small and each costs a rasterisation)
        self.min_face_interval = 0.0
        self.faces_rasterised = 0
        self.frames_sent = 0
        self.first_frame_at: float | None = None

    # --- face updates (event loop) ---
    def set_face(self, params, version: int) -> None:
        """Queue a refinement; it is rasterised off-loop and morphs in when the running morph ends."""
        self._pending = (params, version)
        self._maybe_start_apply(self._clock())

    def set_size(self, size: int) -> None:
        if size != self._size:
            self._pending_size = size
            self._maybe_start_apply(self._clock())

    @property
    def size(self) -> int:
        return self._size

    @property
    def version(self) -> int:
        return self._version

    def _morph_running(self, now: float) -> bool:
        return now - self._morph_start < MORPH_S

    def _maybe_start_apply(self, now: float) -> None:
        if self._applying is not None or self.readyState != "live":
            return
        if self._pending_size is not None:
            size, self._pending_size = self._pending_size, None
            params = self._pending[0] if self._pending else self._params
            version = self._pending[1] if self._pending else self._version
            self._pending = None
            self._applying_what = ("size", size, params, version)
            self._applying = self._run(self._build, size, params)
        elif self._pending is not None and not self._morph_running(now) and now - self._last_apply >= self.min_face_interval:
            params, version = self._pending
            self._pending = None
            if self._params is not None and not visibly_different(self._params, params):
                self._version = version  # nothing a viewer could see: skip the rasterisation
                return
            self._applying_what = ("face", params, version)
            self._applying = self._run(self._renderer.set_params, params)

    def _build(self, size: int, params) -> Renderer:
        r = self._factory(size)
        if params is not None:
            r.set_params(params)
            r.frame(0.0, 0.0, 1.0)  # settle: no morph from the renderer's neutral start
        return r

    def _run(self, fn, *args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, fn, *args)

    async def _finish_apply(self) -> None:
        fut, what = self._applying, self._applying_what
        if fut is None:
            return
        try:
            result = await fut
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("renderer update failed; keeping the current face")
            return
        finally:
            self._applying = self._applying_what = None
        if what[0] == "size":
            _, size, params, version = what
            self._renderer, self._size = result, size
            self._params, self._version = params, version
        else:
            _, params, version = what
            self._params, self._version = params, version
            self._morph_start = self._last_apply = self._clock()
        self.faces_rasterised += 1
        self._clear_cache()

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0
        self._yuv.reset()

    def stop(self) -> None:
        super().stop()
        if self._applying is not None:
            self._applying.cancel()
        self._clear_cache()

    # --- frames (event loop; aiortc's sender awaits recv) ---
    async def _next_slot(self) -> tuple[int, float]:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
            return 0, now
        self._index += 1
        due = self._start + self._index * self._period
        if now - due > self._period:  # fell behind: skip slots, do not burst
            self._index = int((now - self._start) / self._period)
            due = self._start + self._index * self._period
        wait = due - now
        if wait > 0:
            await asyncio.sleep(wait)
        if self.readyState != "live":
            raise MediaStreamError
        return self._index, self._clock()

    def _morph_value(self, now: float) -> float:
        return smoothstep((now - self._morph_start) / MORPH_S)

    def make_frame(self, now: float) -> tuple[np.ndarray, float, float, float, bool, object]:
        """Pick mouth/blink/morph for ``now`` and return the YUV420 frame (cached when static)."""
        reading = self._mouth.reading(now)
        t = now - (self._start if self._start is not None else now)
        blink = self._blinker.value(t)
        morph = self._morph_value(now)
        mouth_q = round(reading.value * MOUTH_LEVELS) / MOUTH_LEVELS
        blink_q = round(blink * BLINK_LEVELS) / BLINK_LEVELS
        key = (self._version, mouth_q, blink_q) if morph >= 1.0 else None
        yuv = self._cache.get(key) if key is not None else None
        cached = yuv is not None
        if yuv is None:
            yuv = self._yuv.convert(self._renderer.frame(mouth_q, blink_q, morph))
            if key is not None:
                self._cache[key] = yuv
                self._cache_bytes += yuv.nbytes
                while self._cache_bytes > CACHE_BYTES and len(self._cache) > 1:
                    _, old = self._cache.popitem(last=False)
                    self._cache_bytes -= old.nbytes
        else:
            self._cache.move_to_end(key)
        return yuv, mouth_q, blink_q, morph, cached, reading

    async def recv(self) -> av.VideoFrame:
        index, now = await self._next_slot()
        if self._applying is not None:
            # A new face is being rasterised off-loop: wait for it rather than touch the
            # renderer mid-update (at most one rasterisation, ~50 ms, once per refinement).
            await self._finish_apply()
            now = self._clock()
        self._maybe_start_apply(now)
        yuv, mouth, blink, morph, cached, reading = self.make_frame(now)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        pts = int(round(index * self._period * VIDEO_CLOCK_RATE))
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        if self._on_frame is not None:
            self._on_frame(
                FrameInfo(
                    self._seq,
                    pts,
                    now - (self._start or now),
                    mouth,
                    reading.audio_t,
                    reading.age,
                    blink,
                    morph,
                    self._version,
                    cached,
                )
            )
        self._seq += 1
        return frame
