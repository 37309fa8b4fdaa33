"""FaceAnimator: the one moving face, used by the live call, the room worker and assistants.

Everything that makes a face move lives here, with the clock injected (no event loop, no
sockets): the mouth envelope, blinks, a slight idle sway, the morph between refinements,
one quantisation of the expression and one cache of finished frames.

Why it is built this way:
- *Preparing a face is slow, showing one is cheap.* ``set_face`` rasterises the new
  layers (tens of ms) in whatever thread calls it — an executor, never the event loop —
  and only then stages them under a tiny lock; ``frame`` picks the staged face up by
  swapping a reference. Nothing the frame path reads is ever half-built.
- *A morph never jumps.* A staged face waits until the running 300 ms morph ends (the
  newest staged face wins), so the morph source is always a settled picture.
- *One quantisation, one cache.* Mouth and blink are quantised to the renderer's
  pre-drawn levels (``MOUTH_LEVELS``/``BLINK_LEVELS``) and the idle sway to whole pixels,
  so a settled face has a few dozen distinct pictures; each is kept, already converted to
  the format the consumer asked for (yuv420p for VP8, rgb24 or JPEG for assistants), in
  one byte-bounded LRU. A listening face costs a dict lookup per frame.
- *Idle motion is cheap by construction*: a slow breathing sway of a pixel (two at
  512 px), two or three states, all cache hits after the first breath, and rare steps so a
  video encoder sees a whole-picture change only every few seconds.
- The mouth state is (openness, shape): visemes fill in ``MouthState.shape`` and the key
  already carries it.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

import numpy as np

from .blink import Blinker
from .face import PARAM_SPECS, FaceParams
from .mouth import MouthEnvelope, MouthReading, MouthState
from .render import BLINK_LEVELS, MOUTH_LEVELS, FaceLayers, crossfade

MORPH_S = 0.3  # a refinement cross-fades in over this long (smoothstep)
SWAY_PERIOD_S = 8.0  # one slow breath: at 256 px the picture moves one pixel down, then back, each 4 s
SWAY_PX_PER_256 = 1.0  # sway amplitude: a pixel at 256 px, two at 512
CACHE_BYTES = 8 * 1024 * 1024
FORMATS = ("rgb24", "yuv420p", "jpeg")
JPEG_QUALITY = 85
VISIBLE_DELTA = 0.01


class Layers(Protocol):
    """What the animator needs from the renderer: one face's rasters, composed per frame."""

    def compose(self, mouth: MouthState, blink: float) -> np.ndarray: ...


LayerFactory = Callable[[FaceParams, int], Layers]


def build_layers(factory: LayerFactory, params: FaceParams, size: int, previous: Layers | None = None) -> Layers:
    """``factory(params, size)``, passing the face on screen when the factory can reuse it
    (``accepts_previous``: the renderer then redraws only the parts that changed visibly)."""
    if previous is not None and getattr(factory, "accepts_previous", False):
        return factory(params, size, previous=previous)  # type: ignore[call-arg]
    return factory(params, size)


class LayerCache:
    """A small process-wide LRU of built layers, keyed by (face, size): a thread-safe ``LayerFactory``.

    Layers are read-only once built, so animators can share them: every call starts at the
    neutral face and an assistant usually has one fixed face, and neither then waits for a
    rasterisation to show its first frame.
    """

    def __init__(self, factory: LayerFactory = FaceLayers.build, entries: int = 16) -> None:
        self._factory = factory
        self._entries = entries
        self._items: OrderedDict[tuple[bytes, int], Layers] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def accepts_previous(self) -> bool:
        return bool(getattr(self._factory, "accepts_previous", False))

    def __call__(self, params: FaceParams, size: int, previous: Layers | None = None) -> Layers:
        key = (params.vector.tobytes(), int(size))
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        layers = build_layers(self._factory, params, size, previous)  # outside the lock: two misses may both build
        with self._lock:
            self._items[key] = layers
            while len(self._items) > self._entries:
                self._items.popitem(last=False)
        return layers


def visibly_different(a: FaceParams, b: FaceParams) -> bool:
    """Whether two faces differ by more than a viewer could see at avatar size.

    Continuous params under 1 % of their range are invisible; a categorical param that
    changes bucket (hair style, colours) always is.
    """
    va, vb = np.asarray(a.vector), np.asarray(b.vector)
    if float(np.abs(va - vb).max()) >= VISIBLE_DELTA:
        return True
    for i, spec in enumerate(PARAM_SPECS):
        if spec.categories:
            n = len(spec.categories)
            if min(n - 1, int(va[i] * n)) != min(n - 1, int(vb[i] * n)):
                return True
    return False


def same_look(a: Layers, b: Layers) -> bool:
    """Whether two layer sets show the same pixels (the renderer shares a ``look`` token
    between layers redrawn from other params that changed nothing on screen)."""
    look = getattr(a, "look", None)
    return a is b or (look is not None and look is getattr(b, "look", None))


def smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def quantise_mouth(reading: MouthReading) -> MouthState:
    """Openness to the pre-drawn levels; a closing share (toward or from "rest") to quarters.

    Only a closing share changes the picture (the renderer draws the heaviest open shape),
    so other second shapes are dropped and the frame cache keeps few keys."""
    steps = MOUTH_LEVELS - 1
    closing = "rest" in (reading.toward, reading.shape)
    mix = round(reading.mix * 4) / 4 if reading.toward and closing else 0.0
    return MouthState(round(reading.value * steps) / steps, reading.shape, reading.toward if mix > 0 else "", mix)


def quantise_blink(blink: float) -> float:
    steps = BLINK_LEVELS - 1
    return round(blink * steps) / steps


@dataclass(frozen=True)
class AnimatedFrame:
    """One picture and what it shows."""

    image: np.ndarray | bytes  # in ``format``; arrays are read-only (they may be cached)
    format: str
    t: float  # the clock time it was made for
    mouth: MouthState  # quantised, as drawn
    blink: float  # quantised eyelid closure, as drawn
    morph: float  # 0 previous face … 1 current face
    sway: int  # idle offset in pixels (positive: down)
    version: int  # the face version on screen
    cached: bool
    audio_t: float  # media time of the newest audio behind the mouth (s since the first sample)
    mouth_age: float  # seconds between that audio's arrival and ``t``


@dataclass(frozen=True)
class _Face:
    layers: Layers
    params: FaceParams
    version: int
    size: int
    serial: int  # identifies the layers in cache keys
    resize: bool = False  # staged by set_size: swap at once, no morph


class FaceAnimator:
    """One visible face. ``frame`` is called by one thread (the event loop); ``set_face``,
    ``set_size`` may run in any other thread at the same time."""

    def __init__(
        self,
        size: int = 256,
        params: FaceParams | None = None,
        *,
        version: int = 0,
        blink_seed: int | None = None,
        mouth_window_s: float | None = None,
        sway: bool = True,
        layer_factory: LayerFactory = FaceLayers.build,
        cache_bytes: int = CACHE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        params = FaceParams.neutral() if params is None else params
        self._factory = layer_factory
        self._clock = clock
        self._serial = 0
        self._cur = self._make(params, version, size)
        self._prev: _Face | None = None
        self._staged: _Face | None = None
        self._wanted = (params, version, size)  # the newest request, for set_size and differs()
        self._lock = threading.Lock()  # guards _staged and _wanted: held for a reference swap
        self._build_lock = threading.Lock()  # one rasterisation at a time per face
        self._morph_start = -math.inf
        self._start: float | None = None
        self._mouth = MouthEnvelope(clock=clock) if mouth_window_s is None else MouthEnvelope(mouth_window_s, clock)
        self._blinker = Blinker(seed=blink_seed)
        self._sway = sway
        self._cache: OrderedDict[tuple, np.ndarray | bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self._yuv: Any = None  # PyAV reformatter, made on first use
        self._last: tuple[tuple | None, np.ndarray | None] | None = None  # (cache key, rgb) of the last frame
        self.faces_rasterised = 1
        self.cache_hits = 0
        self.cache_misses = 0

    # ------------------------------------------------------------- face (any thread)
    def _make(self, params: FaceParams, version: int, size: int, resize: bool = False) -> _Face:
        # the newest face built (staged, else on screen) is what the new one is redrawn from
        cur = getattr(self, "_staged", None) or getattr(self, "_cur", None)
        previous = cur.layers if cur is not None and cur.size == size else None
        layers = build_layers(self._factory, params, size, previous)
        self._serial += 1
        return _Face(layers, params, version, size, self._serial, resize)

    @property
    def size(self) -> int:
        with self._lock:
            return self._wanted[2]

    @property
    def version(self) -> int:
        """The version of the face on screen."""
        return self._cur.version

    @property
    def params(self) -> FaceParams:
        return self._cur.params

    def differs(self, params: FaceParams) -> bool:
        """Whether showing ``params`` needs a rasterisation (it differs visibly from the newest face)."""
        with self._lock:
            return visibly_different(self._wanted[0], params)

    def set_face(self, params: FaceParams, version: int) -> bool:
        """Prepare ``params`` and stage it to morph in; returns whether a new picture was staged.

        Slow when the face visibly changes (call it off the event loop); a face no viewer
        could tell apart only takes the new version number, and one whose layers come out
        pixel for pixel the same (``same_look``) swaps in without a morph.
        """
        if not isinstance(params, FaceParams):
            raise TypeError(f"set_face expects FaceParams, got {type(params).__name__}")
        with self._build_lock:
            with self._lock:
                old, _, size = self._wanted
                self._wanted = (params, version, size)
                if not visibly_different(old, params):
                    if self._staged is not None:
                        self._staged = replace(self._staged, version=version)
                    else:
                        self._cur = replace(self._cur, version=version)
                    return False
            face = self._make(params, version, size)
            with self._lock:
                self.faces_rasterised += 1
                target = self._staged if self._staged is not None else self._cur
                if target.size == size and same_look(face.layers, target.layers):
                    # other params, the very same pixels (a threshold not crossed): no morph, and
                    # keeping the serial keeps the frames already cached for this picture
                    kept = replace(target, layers=face.layers, params=params, version=version)
                    if self._staged is not None:
                        self._staged = kept
                    else:
                        self._cur = kept
                    return False
                resize = self._staged is not None and self._staged.resize
                self._staged = replace(face, resize=resize)
            return True

    def set_size(self, size: int) -> None:
        """Re-rasterise the newest face at another size (slow; any thread); it swaps in without a morph."""
        with self._build_lock:
            with self._lock:
                params, version, old = self._wanted
                if size == old:
                    return
            face = self._make(params, version, size, resize=True)
            with self._lock:
                self._wanted = (self._wanted[0], self._wanted[1], size)
                self._staged = face
                self.faces_rasterised += 1

    # ------------------------------------------------------------- audio (frame thread)
    def push_audio(self, pcm: np.ndarray, sample_rate: int, channels: int = 1, arrival: float | None = None) -> None:
        """Feed the mouth envelope (int16 or float, interleaved when ``channels`` > 1); the next frame reads it."""
        self._mouth.push(pcm, sample_rate, channels=channels, arrival=arrival)

    def mouth_reading(self, t: float | None = None) -> MouthReading:
        return self._mouth.reading(t)

    # ------------------------------------------------------------- frames (one thread)
    def _promote(self, t: float) -> None:
        staged = self._staged
        if staged is None:
            return
        if not staged.resize and t - self._morph_start < MORPH_S:
            return  # the running morph ends first: the source must be a settled picture
        with self._lock:
            staged, self._staged = self._staged, None
        if staged is None:
            return
        if staged.resize:
            self._prev = None
            self._morph_start = -math.inf
        else:
            self._prev = self._cur
            self._morph_start = t
        self._cur = staged
        self._clear_cache()

    def _sway_px(self, t: float, size: int) -> int:
        if not self._sway:
            return 0
        # Few, rare steps: each is a whole-picture change for a video encoder. Measured on a
        # silent face at 15 fps (VP8): three states stepping every 1.4 s cost +15 % encoder CPU;
        # one step every 4 s is within the noise.
        amp = SWAY_PX_PER_256 * size / 256
        return int(round(amp * (0.5 - 0.5 * math.cos(2 * math.pi * t / SWAY_PERIOD_S))))

    def frame(self, t: float, fmt: str = "rgb24") -> AnimatedFrame:
        """The picture for clock time ``t`` (non-decreasing across calls) in ``fmt``."""
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        if self._start is None:
            self._start = t
        self._promote(t)
        cur, prev = self._cur, self._prev
        since = t - self._start
        reading = self._mouth.reading(t)
        mouth = quantise_mouth(reading)
        blink = quantise_blink(self._blinker.value(since))
        sway = self._sway_px(since, cur.size)
        morph = smoothstep((t - self._morph_start) / MORPH_S) if prev is not None else 1.0
        if morph >= 1.0:
            self._prev = None  # the morph is over: let the old layers go
        key: tuple | None = (cur.serial, mouth, blink, sway) if morph >= 1.0 else None
        image = self._cache.get(key + (fmt,)) if key is not None else None
        if image is not None and key is not None:
            cached = True
            self._cache.move_to_end(key + (fmt,))
            self.cache_hits += 1
            self._last = (key, None)
        else:
            cached = False
            self.cache_misses += 1
            rgb = cur.layers.compose(mouth, blink)
            if prev is not None and morph < 1.0:
                rgb = crossfade(prev.layers.compose(mouth, blink), rgb, morph)
            if sway:
                rgb = _shift_rows(rgb, sway)
            rgb.setflags(write=False)
            self._last = (key, rgb)
            image = self._convert(key, rgb, fmt)
        return AnimatedFrame(image, fmt, t, mouth, blink, morph, sway, cur.version, cached, reading.audio_t, reading.age)

    def image(self, fmt: str) -> np.ndarray | bytes:
        """The last frame's picture in another format (cached like frames)."""
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        if self._last is None:
            raise RuntimeError("no frame yet")
        key, rgb = self._last
        if key is not None:
            hit = self._cache.get(key + (fmt,))
            if hit is not None:
                return hit
            if rgb is None:
                stored = self._cache.get(key + ("rgb24",))
                rgb = stored if isinstance(stored, np.ndarray) else None
            if rgb is None:  # only another format was cached: recompose (rare)
                serial, mouth, blink, sway = key
                rgb = self._cur.layers.compose(mouth, blink)
                rgb = _shift_rows(rgb, sway) if sway else rgb
                rgb.setflags(write=False)
        if rgb is None:  # a frame in a morph keeps its rgb (no key)
            raise RuntimeError("the last frame's picture is gone")
        return self._convert(key, rgb, fmt)

    def _convert(self, key: tuple | None, rgb: np.ndarray, fmt: str) -> np.ndarray | bytes:
        if fmt == "rgb24":
            out: np.ndarray | bytes = rgb
        elif fmt == "yuv420p":
            out = self._to_yuv(rgb)
            out.setflags(write=False)
        else:
            out = _to_jpeg(rgb)
        if key is not None:
            self._store(key + (fmt,), out)
        return out

    def _to_yuv(self, rgb: np.ndarray) -> np.ndarray:
        import av
        from av.video.reformatter import VideoReformatter

        if self._yuv is None:
            self._yuv = VideoReformatter()  # keeps its swscale context: 0.3 ms instead of 0.9 at 256 px
        frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format="rgb24")  # read in place
        return self._yuv.reformat(frame, format="yuv420p").to_ndarray()

    def _store(self, key: tuple, value: np.ndarray | bytes) -> None:
        n = value.nbytes if isinstance(value, np.ndarray) else len(value)
        self._cache[key] = value
        self._cache_bytes += n
        while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes if isinstance(old, np.ndarray) else len(old)

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0
        self._last = None

    def close(self) -> None:
        """Free the cached pictures (the layers go with the animator)."""
        self._clear_cache()

    @property
    def cache_bytes(self) -> int:
        return self._cache_bytes


def _shift_rows(rgb: np.ndarray, dy: int) -> np.ndarray:
    """The picture moved down by ``dy`` rows (up when negative), edge rows repeated."""
    out = np.empty_like(rgb)
    if dy > 0:
        out[dy:] = rgb[:-dy]
        out[:dy] = rgb[:1]
    else:
        out[:dy] = rgb[-dy:]
        out[dy:] = rgb[-1:]
    return out


def _to_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
