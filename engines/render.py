"""Avatar renderer: FaceParams + expression (mouth, blink) -> RGB frame, PNG or SVG.

Why it is built this way:
- The face is one vector scene (``render_face``); SVG is printed from it and rasters are
  drawn from it with Skia, so downloads and the live video look the same.
- The live path must cost ~1 ms per frame, far less than a vector draw. So each
  ``set_params`` rasterises the face once with mouth and eyes at rest, plus a small stack
  of pre-drawn crops: mouth openness levels (mouth box only) and eyelid levels (eye box
  only). A frame is then a buffer copy plus two small blends of neighbouring levels. The
  crops are cut from renders of the full scene, so anything drawn over the mouth or eyes
  (moustache, glasses, fringe) stays correct.
- Morphing between refinements is a pixel cross-fade of the previous and current faces'
  frames: cheap and flicker-free (geometry morphing would need a vector draw per frame).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from .choices import SIZES
from .face import FaceParams
from .render_face import FaceModel
from .render_scene import DESIGN, Scene, rasterize, to_svg

MOUTH_LEVELS = 7  # pre-drawn openness steps; frames blend the two nearest
BLINK_LEVELS = 4

__all__ = ["AvatarRenderer", "render_png", "render_svg", "SIZES", "build_scene"]


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) not in SIZES:
        raise ValueError(f"avatar size must be one of {SIZES} px, got {size!r}")
    return int(size)


def build_scene(params: FaceParams, mouth: float = 0.0, blink: float = 0.0) -> Scene:
    """The vector scene for one face and expression (shared by PNG, SVG and frames)."""
    return FaceModel(params).scene(mouth, blink)


def _px_box(box: tuple[float, float, float, float], size: int) -> tuple[int, int, int, int]:
    s = size / DESIGN
    x0 = max(0, int(math.floor(box[0] * s)) - 1)
    y0 = max(0, int(math.floor(box[1] * s)) - 1)
    x1 = min(size, int(math.ceil(box[2] * s)) + 1)
    y1 = min(size, int(math.ceil(box[3] * s)) + 1)
    return x0, y0, x1, y1


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass
class _Layers:
    """One face's cached rasters: the rest frame and the animated crops."""

    base: np.ndarray  # (S, S, 3) uint8, mouth closed and eyes open
    mouth_box: tuple[int, int, int, int]
    mouth: np.ndarray  # (MOUTH_LEVELS, h, w, 3) uint8; level 0 == base crop
    eye_box: tuple[int, int, int, int]
    eyes: np.ndarray  # (BLINK_LEVELS, h, w, 3) uint8; level 0 == base crop

    @classmethod
    def build(cls, params: FaceParams, size: int) -> "_Layers":
        model = FaceModel(params)
        rest = model.scene(0.0, 0.0)
        base = rasterize(rest, size)
        mb = _px_box(rest.mouth_box, size)
        eb = _px_box(rest.eye_box, size)
        if _overlap(mb, eb):  # cannot happen with sane geometry; keep the mouth animating
            eb = (eb[0], eb[1], eb[2], min(eb[3], mb[1]))
        mouth = np.stack(
            [base[mb[1] : mb[3], mb[0] : mb[2]]]
            + [rasterize(model.scene(i / (MOUTH_LEVELS - 1), 0.0), size, mb) for i in range(1, MOUTH_LEVELS)]
        )
        eyes = np.stack(
            [base[eb[1] : eb[3], eb[0] : eb[2]]]
            + [rasterize(model.scene(0.0, i / (BLINK_LEVELS - 1)), size, eb) for i in range(1, BLINK_LEVELS)]
        )
        return cls(base, mb, mouth, eb, eyes)

    def crop(self, kind: str, level: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """A level of one animated part, seen through an arbitrary (larger) box."""
        own = self.mouth_box if kind == "mouth" else self.eye_box
        stack = self.mouth if kind == "mouth" else self.eyes
        full = self.base.copy()
        full[own[1] : own[3], own[0] : own[2]] = stack[level]
        return full[box[1] : box[3], box[0] : box[2]]

    @classmethod
    def blend(cls, a: "_Layers", b: "_Layers", t: float) -> "_Layers":
        """The cross-fade of two faces frozen at ``t``, as a layer set of its own."""
        w = int(round(t * 256))
        base = _mix(a.base, b.base, w)
        mb = _union(a.mouth_box, b.mouth_box)
        eb = _union(a.eye_box, b.eye_box)
        if _overlap(mb, eb):
            return b
        mouth = np.stack([_mix(a.crop("mouth", i, mb), b.crop("mouth", i, mb), w) for i in range(MOUTH_LEVELS)])
        eyes = np.stack([_mix(a.crop("eyes", i, eb), b.crop("eyes", i, eb), w) for i in range(BLINK_LEVELS)])
        return cls(base, mb, mouth, eb, eyes)


def _mix(a: np.ndarray, b: np.ndarray, w: int, scratch: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Integer lerp with weight w/256; exact at both ends so morph 0/1 reproduce a face.

    ``scratch`` (two uint16 arrays shaped like a) saves the allocations on the frame path,
    where fresh multi-megabyte temporaries cost more than the arithmetic.
    """
    if w <= 0:
        return a.copy()
    if w >= 256:
        return b.copy()
    # fused uint8->uint16 multiplies avoid the astype temporaries (~5x faster at 512 px)
    if scratch is not None:
        acc, tmp = scratch
        np.multiply(a, 256 - w, out=acc, dtype=np.uint16)
        np.multiply(b, w, out=tmp, dtype=np.uint16)
    else:
        acc = np.multiply(a, 256 - w, dtype=np.uint16)
        tmp = np.multiply(b, w, dtype=np.uint16)
    np.add(acc, tmp, out=acc)
    np.add(acc, 128, out=acc, dtype=np.uint16)
    np.right_shift(acc, 8, out=acc)
    return acc.astype(np.uint8)


def _level(stack: np.ndarray, x: float) -> np.ndarray | None:
    """Blend of the two pre-drawn levels around x in [0, 1]; None means 'at rest'."""
    n = stack.shape[0]
    f = min(max(x, 0.0), 1.0) * (n - 1)
    i = int(f)
    w = int(round((f - i) * 256))
    if i >= n - 1:
        return stack[n - 1]
    if i == 0 and w == 0:
        return None
    if w == 0:
        return stack[i]
    if w == 256:
        return stack[i + 1]
    return _mix(stack[i], stack[i + 1], w)


class AvatarRenderer:
    """Live renderer with per-face caches; one instance per call/video track.

    Before the first ``set_params`` it shows ``FaceParams.neutral()`` (the pre-speech face).
    ``set_params`` keeps the face that was on screen as the morph source: if a morph was
    in progress (last frame had 0 < morph < 1), the frozen mid-morph picture becomes the
    source, so a refinement arriving mid-morph never makes the picture jump.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = _check_size(size)
        self.params = FaceParams.neutral()
        self._cur = _Layers.build(self.params, self.size)
        self._prev = self._cur
        self._last_morph = 1.0
        shape = (self.size, self.size, 3)
        self._scratch = (np.empty(shape, np.uint16), np.empty(shape, np.uint16))

    def set_params(self, params: FaceParams) -> None:
        if not isinstance(params, FaceParams):
            raise TypeError(f"set_params expects FaceParams, got {type(params).__name__}")
        m = self._last_morph
        if 0.0 < m < 1.0:
            src = _Layers.blend(self._prev, self._cur, m)
        elif m <= 0.0:
            src = self._prev
        else:
            src = self._cur
        self._prev = src
        self._cur = _Layers.build(params, self.size)
        self.params = params
        self._last_morph = 1.0

    def _face_frame(self, L: _Layers, mouth: float, blink: float) -> np.ndarray:
        out = L.base.copy()
        m = _level(L.mouth, mouth)
        if m is not None:
            x0, y0, x1, y1 = L.mouth_box
            out[y0:y1, x0:x1] = m
        e = _level(L.eyes, blink)
        if e is not None:
            x0, y0, x1, y1 = L.eye_box
            out[y0:y1, x0:x1] = e
        return out

    def frame(self, mouth: float, blink: float, morph: float = 1.0) -> np.ndarray:
        """(size, size, 3) uint8 RGB, C-contiguous; a fresh array the caller may keep."""
        mouth, blink, morph = float(mouth), float(blink), float(morph)
        if not (math.isfinite(mouth) and math.isfinite(blink) and math.isfinite(morph)):
            raise ValueError("mouth, blink and morph must be finite")
        morph = min(max(morph, 0.0), 1.0)
        self._last_morph = morph
        w = int(round(morph * 256))
        if w >= 256 or self._prev is self._cur:
            return self._face_frame(self._cur, mouth, blink)
        if w <= 0:
            return self._face_frame(self._prev, mouth, blink)
        a = self._face_frame(self._prev, mouth, blink)
        b = self._face_frame(self._cur, mouth, blink)
        return _mix(a, b, w, self._scratch)


def render_png(params: FaceParams, size: int = 256, mouth: float = 0.0, blink: float = 0.0) -> bytes:
    """A PNG of the face drawn directly from the vector scene (no cache needed)."""
    from PIL import Image

    size = _check_size(size)
    arr = rasterize(build_scene(params, mouth, blink), size)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def render_svg(params: FaceParams, size: int = 256, mouth: float = 0.0, blink: float = 0.0) -> str:
    """A standalone SVG of the same scene the PNG is drawn from."""
    size = _check_size(size)
    return to_svg(build_scene(params, mouth, blink), size)
