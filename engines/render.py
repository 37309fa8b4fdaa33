"""Avatar renderer: FaceParams + expression (mouth, viseme, blink) -> RGB frame, PNG or SVG.

Why it is built this way:
- The face is one vector scene (``render_face``); SVG is printed from it and rasters are
  drawn from the same shapes with Skia, so downloads and the live video look the same.
- A refinement arrives every 0.5 s per caller, so a redraw must be cheap. Three things make
  it so (``FaceLayers.build``):
  1. *Invisible changes are not drawn.* Params are snapped to a grid (``QUANTA``) with
     hysteresis: one step of any param moves no drawn point by more than
     ``VISIBLE_UNITS`` (0.75 px at 256 px), so a refinement that moves params less than
     that changes nothing on screen and costs nothing.
  2. *Per-part cache.* Each part (``render_face.PARTS``) is recorded once as a Skia picture
     (a native display list) keyed by the quantised params it reads (``PART_INPUTS``); a
     refinement rebuilds only the parts whose key changed and replays the rest natively,
     which costs a fraction of building their paths again in Python.
  3. *Dirty bands.* Only the horizontal bands (``BANDS``) that the changed parts' old and
     new bounds touch are re-rasterised onto the previous frame; the mouth and eye crops are
     recomposited only when something under or over them changed.
  An incremental redraw is pixel-identical to a full one (tests/test_render.py).
- Per frame only the mouth (openness and viseme) and the eyelids move: the frame is a
  buffer copy plus small blends of pre-drawn crops. The crops are composited from the same
  pictures as the frame (parts under the mouth, the mouth shape, parts over it), so a
  moustache or a fringe over the mouth stays correct.
- Morphing between refinements is a pixel cross-fade of the previous and current faces'
  frames: cheap and flicker-free.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Mapping, Sequence, TypeVar

import numpy as np

from .choices import SIZES
from .face import PARAM_NAMES, PARAM_SPECS, FaceParams
from .render_face import ANIMATED, PART_INPUTS, PARTS, Affine, FaceModel
from .render_scene import DESIGN, Scene, draw_shapes, to_svg
from .viseme import VISEMES

if TYPE_CHECKING:
    from .mouth import MouthState

BANDS = 4
#: the frame is rasterised in this many fixed horizontal bands: a refinement redraws only the
#: bands its changed parts touch, and a band is always drawn under the same clip, so an
#: incremental redraw is pixel-identical to a full one (Skia's anti-aliasing of a path that
#: crosses a clip depends on the clip, so clips must not depend on what changed)
#: openness levels pre-drawn per open viseme (A, E, O), closed included: the animator
#: quantises openness to exactly these (a live frame is pasted crops); stills blend the nearest
MOUTH_LEVELS = 4
#: eyelid levels, open to shut (the animator quantises blinks to these)
BLINK_LEVELS = 3
#: a change is drawn once it would move some drawn point this far (design units; 0.75 px at
#: 256 px) or shift a colour by about one just-noticeable difference
VISIBLE_UNITS = 1.5
#: the largest displacement of any drawn point per unit change of each geometric param
#: (design units; measured over random faces, re-measured by tests/test_render.py)
SENSITIVITY = {
    "face_length": 68.0,
    "size": 44.0,
    "jaw_width": 39.0,
    "head_width": 35.0,
    "femininity": 30.0,
    "nose_length": 26.0,
    "neck_width": 26.0,
    "ear_size": 24.0,
    "chin_shape": 23.0,
    "hair_volume": 21.0,
    "eye_spacing": 19.0,
    "mouth_width": 18.0,
    "eye_tilt": 17.0,
    "eye_size": 14.0,
    "eye_shape": 14.0,
    "nose_width": 13.0,
    "cheek_fullness": 12.0,
    "age": 12.0,
    "brow_arch": 10.0,
    "facial_hair": 9.0,
    "eyelashes": 6.0,
    "lip_fullness": 5.0,
    "brow_thickness": 2.0,
}
#: params that only move colours, opacities or thresholds: a step of about one JND
COLOUR_QUANTUM = {
    "greying": 1 / 32,
    "background_hue": 1 / 48,
    "shirt_hue": 1 / 48,
    "age_lines": 1 / 16,
    "freckles": 1 / 32,
    "glasses": 1 / 32,
    "baldness": 1 / 32,
    "hair_length": 1 / 32,
    "identity_jitter": 1 / 32,
}


def _quantum(name: str) -> float:
    if name in COLOUR_QUANTUM:
        return COLOUR_QUANTUM[name]
    return 1.0 / max(16.0, math.ceil(SENSITIVITY.get(name, 64.0) / VISIBLE_UNITS))


#: a categorical param leaves its shown bucket only this far (in buckets) past the edge
CATEGORY_MARGIN = 0.25
#: an F/V shows fully once the envelope opens this much (fricatives are quiet)
F_FULL_AT = 0.15

__all__ = [
    "AvatarRenderer",
    "FaceLayers",
    "crossfade",
    "MOUTH_LEVELS",
    "BLINK_LEVELS",
    "render_png",
    "render_svg",
    "SIZES",
    "build_scene",
    "quantize",
    "VISEMES",
    "mouth_variants",
    "part_alpha",
    "render_rgb",
]

_CATEGORICAL = np.array([bool(s.categories) for s in PARAM_SPECS])
_N_CATS = np.array([max(1, len(s.categories)) for s in PARAM_SPECS], dtype=np.float64)
_INDEX = {n: i for i, n in enumerate(PARAM_NAMES)}
QUANTA = np.array([_quantum(n) for n in PARAM_NAMES])


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) not in SIZES:
        raise ValueError(f"avatar size must be one of {SIZES} px, got {size!r}")
    return int(size)


def quantize(params: FaceParams, shown: FaceParams | None = None) -> FaceParams:
    """Snap params to what is drawn: categorical params to their bucket centre, the rest to
    a grid of ``QUANTA`` (a step moves nothing by more than ``VISIBLE_UNITS``). With
    ``shown`` (the face on screen), a continuous param keeps its shown value until the new
    one is more than one step away (hysteresis), so a slow drift is drawn when it has added
    up to something visible, not each time it crosses a grid line."""
    v = params.vector.astype(np.float64)
    n = _N_CATS
    cats = (np.minimum(n - 1, np.floor(v * n)) + 0.5) / n
    grid = np.clip(np.round(v / QUANTA) * QUANTA, 0.0, 1.0)
    out = np.where(_CATEGORICAL, cats, grid)
    if shown is not None:
        prev = shown.vector.astype(np.float64)
        keep = (~_CATEGORICAL) & (np.abs(v - prev) <= QUANTA)
        # a category (hair style, colours) changes only once the value is well inside the new
        # bucket: an identity code sitting on a bucket edge must not flip the hair back and forth
        lo, hi = (prev * n - 0.5) / n, (prev * n + 0.5) / n  # the shown bucket's edges
        margin = CATEGORY_MARGIN / n
        keep |= _CATEGORICAL & (v > lo - margin) & (v < hi + margin)
        out = np.where(keep, prev, out)
    return FaceParams(out.astype(np.float32))


def build_scene(params: FaceParams, mouth: float = 0.0, blink: float = 0.0, viseme: str = "A") -> Scene:
    """The vector scene for one face and expression (shared by PNG, SVG and frames)."""
    return FaceModel(quantize(params)).scene(mouth, blink, viseme)


def mouth_variants() -> list[tuple[str, float]]:
    """The pre-drawn mouth crops: rest, each open viseme at each openness level, and F."""
    out: list[tuple[str, float]] = [("rest", 0.0)]
    for v in ("A", "E", "O"):
        out += [(v, i / (MOUTH_LEVELS - 1)) for i in range(1, MOUTH_LEVELS)]
    out.append(("F", 1.0))
    return out


_MOUTH_VARIANTS = mouth_variants()
_BLINKS = [i / (BLINK_LEVELS - 1) for i in range(BLINK_LEVELS)]


# -- Skia helpers ------------------------------------------------------------------------
def _skia():
    import skia

    return skia


def _info(w: int, h: int):
    """Every raster here is Skia's native pixel format, premultiplied BGRA: Skia's fast blitters
    (image blits, path fills) exist only for it; RGBA or unpremultiplied pixels go through its
    general pipeline, 2.5-4x slower per pixel."""
    skia = _skia()
    return skia.ImageInfo.Make(w, h, skia.kBGRA_8888_ColorType, skia.kPremul_AlphaType)


def _surface(array: np.ndarray):
    """A Skia surface drawing into an (h, w, 4) uint8 array (``_info``'s format)."""
    skia = _skia()
    return skia.Surface(array, skia.kBGRA_8888_ColorType, skia.kPremul_AlphaType)


def _map_box(b: tuple[float, float, float, float] | None, a: Affine | None):
    if b is None or a is None:
        return b
    pts = [a(x, y) for x in (b[0], b[2]) for y in (b[1], b[3])]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return (min(xs), min(ys), max(xs), max(ys))


def _px_box(box, size: int, limit: int | None = None) -> tuple[int, int, int, int] | None:
    """Design-space bounds -> the pixel box that holds them at ``size`` (1 px of margin for
    anti-aliasing), clipped to a ``limit``-px square (the frame unless given)."""
    if box is None:
        return None
    s = size / DESIGN
    limit = size if limit is None else limit
    x0 = max(0, int(math.floor(box[0] * s)) - 1)
    y0 = max(0, int(math.floor(box[1] * s)) - 1)
    x1 = min(limit, int(math.ceil(box[2] * s)) + 1)
    y1 = min(limit, int(math.ceil(box[3] * s)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _union(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _overlap(a, b) -> bool:
    return a is not None and b is not None and a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


T = TypeVar("T")


def _present(x: T | None) -> T:
    """``x``, which the caller knows is set (layers built with ``animated`` have crops)."""
    if x is None:
        raise ValueError("these layers were built without animated parts")
    return x


def _shift(b, dx: int, dy: int):
    return None if b is None else (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy)


class _Image:
    """A part (or one variant of an animated part) rasterised alone: a premultiplied image
    and its pixel box (in the frame for static parts, around the part's origin for variants)."""

    __slots__ = ("image", "box", "pixels")

    def __init__(self, image, box: tuple[int, int, int, int], pixels: np.ndarray) -> None:
        self.image, self.box = image, box
        self.pixels = pixels  # the image's pixels (it reads them without a copy)


def _raster(shapes: list, size: int, linear: Affine | None = None) -> _Image | None:
    """The shapes drawn alone, anti-aliased, as an image; None when nothing shows.

    Static parts (``linear`` None) are drawn onto a full-frame device in design coordinates.
    An animated part's variant is drawn in its own frame (mapped by ``linear``, the rotation
    or mirror of its placement) around the centre of a device half the frame's size, and its
    box is relative to that origin: the frame places it at whole pixels, so one image serves
    every face whose part sits anywhere. Every image of one kind is drawn onto the same
    device, so its pixels depend only on its shapes (Skia's anti-aliasing depends on the
    device clip a path is drawn under): an incremental redraw is exact by construction."""
    if not shapes:
        return None
    skia = _skia()
    s = size / DESIGN
    extent = size if linear is None else size // 2
    scratch = _scratch(extent)
    surf = _surface(scratch)
    c = surf.getCanvas()
    c.clear(skia.Color4f(0, 0, 0, 0))
    o = extent // 2
    if linear is None:
        c.scale(s, s)
    else:
        c.concat(skia.Matrix.MakeAll(linear.a * s, linear.b * s, o, linear.d * s, linear.e * s, o, 0, 0, 1))
    box = draw_shapes(c, shapes, alone=True)
    del c, surf
    if linear is not None:
        box = _map_box(box, Affine(linear.a, linear.b, o / s, linear.d, linear.e, o / s))
    px = _px_box(box, size, extent)
    if px is None:
        return None
    x0, y0, x1, y1 = px
    pixels = np.ascontiguousarray(scratch[y0:y1, x0:x1])
    image = skia.Image.fromarray(pixels, skia.kBGRA_8888_ColorType, skia.kPremul_AlphaType, copy=False)
    return _Image(image, px if linear is None else _shift(px, -o, -o), pixels)


_SCRATCH = threading.local()


def _scratch(extent: int) -> np.ndarray:
    """This thread's drawing buffer of one extent: a part is drawn there, then its box copied
    out (a fresh Skia surface per part cost more than drawing a small part)."""
    bufs = getattr(_SCRATCH, "bufs", None)
    if bufs is None:
        bufs = _SCRATCH.bufs = {}
    buf = bufs.get(extent)
    if buf is None:
        buf = bufs[extent] = np.empty((extent, extent, 4), np.uint8)
    return buf


class _Variants:
    """The images of one animated part's variants (mouth shapes; eyelid levels per eye) at one
    size, each rasterised the first time it is drawn.

    A refining face is redrawn every 0.5 s and shows only a few of its 11 mouth shapes in
    that time, so drawing them all up front paid for shapes nobody saw. The set is keyed by
    everything the shapes read (``FaceModel.mouth_key``/``eye_key``, the eyes' tilt) and
    the size, and placed at whole pixels, so one set serves every face with an equal key —
    a refinement that moves the head keeps every mouth shape and eyelid level it had."""

    def __init__(self, model: FaceModel, name: str, size: int, linear: tuple[Affine, ...]) -> None:
        self._draw = model.mouth_shapes if name == "mouth" else model.eye_shapes
        self._size = size
        self._linear = linear  # the mouth's, or each eye's (side -1, 1)
        self._items: dict = {}
        self.cpu_s = 0.0  # thread CPU time the rasters took (read by speech2face bench)
        self.cpu_at_build: float | None = None  # ... of which while the first face using them was built

    def get(self, variant) -> _Image | None:
        """The image of ``(viseme, openness)`` or ``(blink, side)``."""
        if variant in self._items:
            return self._items[variant]
        t = time.thread_time()
        linear = self._linear[0] if len(self._linear) == 1 else self._linear[(variant[1] + 1) // 2]
        # two threads may draw one variant at once: both make the same pixels
        hit = self._items[variant] = _raster(self._draw(*variant), self._size, linear)
        self.cpu_s += time.thread_time() - t
        return hit


_VARIANT_SETS: OrderedDict[tuple, _Variants] = OrderedDict()
_VARIANT_SETS_MAX = 64
_VARIANT_SETS_LOCK = threading.Lock()


def _variants(model: FaceModel, name: str, key: tuple, size: int, linear: tuple[Affine, ...]) -> _Variants:
    """The process-wide variant set of an animated part with this key at this size (an LRU)."""
    k = (name, key, size, linear)
    with _VARIANT_SETS_LOCK:
        hit = _VARIANT_SETS.get(k)
        if hit is not None:
            _VARIANT_SETS.move_to_end(k)
            return hit
        hit = _VARIANT_SETS[k] = _Variants(model, name, size, linear)
        while len(_VARIANT_SETS) > _VARIANT_SETS_MAX:
            _VARIANT_SETS.popitem(last=False)
        return hit


@dataclass
class _Part:
    key: tuple  # what the part's shapes read (static parts: their quantised params)
    px: tuple[int, int, int, int] | None  # where its pixels may be in the frame (animated: the rest variant)
    image: _Image | None = None  # static parts: the part alone
    sig: tuple | None = None  # static parts: the shapes drawn (equal signatures draw equal pixels)
    variants: _Variants | None = None  # animated parts
    origins: tuple[tuple[int, int], ...] = ()  # animated parts: where each copy sits (the mouth; each eye)


def _signature(shapes: list) -> tuple:
    """Everything a list of shapes draws, as one comparable tuple."""
    return tuple(
        (tuple(s.path.ops), s.fill, s.opacity, s.stroke, s.stroke_width, None if s.clip is None else tuple(s.clip.ops), s.evenodd)
        for s in shapes
    )


def _variant_copies(part: _Part, name: str, variant=None):
    """(image, frame x, frame y) of each copy of an animated part's variant (the rest by default)."""
    if name == "mouth":
        keys = [variant if variant is not None else ("rest", 0.0)]
    else:
        b = variant if variant is not None else 0.0
        keys = [(b, -1), (b, 1)]
    assert part.variants is not None
    for key, (ox, oy) in zip(keys, part.origins):
        img = part.variants.get(key)
        if img is not None:
            yield img, ox + img.box[0], oy + img.box[1]


def _draw_part(canvas, part: _Part, name: str, variant=None) -> None:
    """Blit a part (an animated part: one variant of it) at its place in the frame."""
    if part.variants is not None:
        for img, x, y in _variant_copies(part, name, variant):
            canvas.drawImage(img.image, x, y)
    elif part.image is not None:
        canvas.drawImage(part.image.image, part.image.box[0], part.image.box[1])


class _Animated:
    """The crops of one animated part (the mouth shapes or the eyelid levels) in its pixel box.

    A crop is the parts under the part, one variant of it, then the parts over it, all blits of
    images already drawn. ``under`` and ``over`` are made once per face; each variant's crop
    is composited the first time a frame shows it, so a redraw pays only for the rest crops.
    """

    def __init__(self, box: tuple[int, int, int, int], crops: dict | None = None, source: tuple | None = None) -> None:
        self.box = box
        self.crops: dict = dict(crops or {})  # variant -> (h, w, 3) uint8, filled as they are used
        self._source = source  # (under BGRA array, over image or None, part, name)
        self.composited = 0  # crops composited so far
        self.cpu_s = 0.0  # thread CPU time they took (read by speech2face bench)
        self.cpu_at_build: float | None = None  # ... of which while the face was built (the rest crop)

    def get(self, variant) -> np.ndarray:
        hit = self.crops.get(variant)
        if hit is None:
            # two threads may composite one variant at once: both make the same pixels
            hit = self.crops[variant] = self._composite(variant)
        return hit

    def _composite(self, variant) -> np.ndarray:
        if self._source is None:
            raise KeyError(variant)
        under, over, part, name = self._source
        t = time.thread_time()
        nested = part.variants.cpu_s  # variant rasters are counted by their set
        out = under.copy()
        surf = _surface(out)
        c = surf.getCanvas()
        c.translate(-self.box[0], -self.box[1])
        _draw_part(c, part, name, variant)
        c.resetMatrix()
        if over is not None:
            c.drawImage(over, 0, 0)
        del c, surf
        crop = _rgb(out)
        self.composited += 1
        self.cpu_s += time.thread_time() - t - (part.variants.cpu_s - nested)
        return crop


@dataclass
class FaceLayers:
    """One face's cached rasters at one size: the rest frame, the mouth and eye crops, and the
    per-part images a later refinement reuses (``build(..., previous=self)``)."""

    size: int
    shown: FaceParams  # the quantised face actually drawn
    background: tuple[int, int, int]
    parts: dict[str, _Part]
    rgba: np.ndarray  # (S, S, 4) the static parts composited (opaque BGRA, ``_info``)
    base: np.ndarray  # (S, S, 3) uint8 rest frame (mouth closed, eyes open)
    mouth: _Animated | None = None
    eyes: _Animated | None = None
    stats: dict = field(default_factory=dict)
    look: object = field(default_factory=object)  # shared by layers that show the very same pixels

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(cls, params: FaceParams, size: int, previous: "FaceLayers | None" = None, animated: bool = True) -> "FaceLayers":
        """Draw a face, reusing whatever ``previous`` (the face on screen) already drew.

        Returns ``previous`` itself when nothing visible changed; layers that draw the same
        pixels as ``previous`` from other params share its ``look`` (and its rasters). Never
        modifies ``previous``.
        """
        size = _check_size(size)
        if previous is not None and (previous.size != size or (animated and previous.mouth is None)):
            previous = None
        shown = quantize(params, previous.shown if previous is not None else None)
        if previous is not None and np.array_equal(shown.vector, previous.shown.vector):
            return previous  # nothing visible changed (layers are read-only: sharing is safe)
        model = FaceModel(shown)
        r, g, b = (int(round(c * 255)) for c in model.pal.bg)
        bg = (r, g, b)
        s = size / DESIGN
        parts: dict[str, _Part] = {}
        changed: list[str] = []  # parts whose pixels changed
        rebuilt = 0  # static parts whose shapes were built again
        vec = shown.vector
        for name in PARTS:
            old = previous.parts.get(name) if previous is not None else None
            if name in ANIMATED:
                placed: tuple[Affine, ...]
                if name == "mouth":
                    key, placed = model.mouth_key(), (model.mouth_affine(),)
                else:
                    key, placed = model.eye_key(), (model.eye_affine(-1), model.eye_affine(1))
                linear = tuple(Affine(a.a, a.b, 0.0, a.d, a.e, 0.0) for a in placed)
                origins = tuple((int(round(a.c * s)), int(round(a.f * s))) for a in placed)
                if old is not None and old.key == (key, linear) and old.origins == origins:
                    parts[name] = old
                    continue
                variants = (
                    old.variants if old is not None and old.key == (key, linear) else _variants(model, name, key, size, linear)
                )
                part = _Part((key, linear), None, variants=variants, origins=origins)
                for img, x, y in _variant_copies(part, name):
                    part.px = _union(part.px, (x, y, x + img.box[2] - img.box[0], y + img.box[3] - img.box[1]))
                parts[name] = part
                changed.append(name)
                continue
            key = tuple(float(vec[_INDEX[n]]) for n in PART_INPUTS[name])
            if old is not None and old.key == key:
                parts[name] = old
                continue
            shapes = model.part_shapes(name)
            rebuilt += 1
            sig = _signature(shapes)
            if old is not None and old.sig == sig:
                parts[name] = replace(old, key=key)  # new inputs, the same drawing (e.g. a threshold not crossed)
                continue
            image = _raster(shapes, size)
            parts[name] = _Part(key, None if image is None else image.box, image=image, sig=sig)
            changed.append(name)

        # the static parts composited: only where a changed part was or is (blits are exact per pixel)
        skia = _skia()
        if previous is None or bg != previous.background:
            dirty = (0, 0, size, size)
            rgba = np.empty((size, size, 4), np.uint8)
        else:
            dirty = None
            for name in changed:
                if name not in ANIMATED:
                    dirty = _union(dirty, _union(parts[name].px, previous.parts[name].px))
            rgba = previous.rgba
        if dirty is not None:
            rgba = rgba.copy()
            surf = _surface(rgba)
            canvas = surf.getCanvas()
            canvas.clipRect(skia.Rect.MakeLTRB(*dirty))
            canvas.clear(skia.Color(*bg))
            for name in PARTS:
                part = parts[name]
                if name not in ANIMATED and _overlap(part.px, dirty):
                    _draw_part(canvas, part, name)
            del canvas, surf
        same = previous is not None and not changed
        layers = cls(size, shown, bg, parts, rgba, previous.base if previous is not None and same else _rgb(rgba))
        crops = 0
        if previous is not None and same:
            layers.mouth, layers.eyes, layers.look = previous.mouth, previous.eyes, previous.look
        elif animated:
            for name in ANIMATED:
                # the crop box holds every variant, and the whole rest variant (the frame shows only crops of it)
                box = _union(_px_box(model.mouth_box() if name == "mouth" else model.eye_box(), size), parts[name].px)
                old_anim = None if previous is None else (previous.mouth if name == "mouth" else previous.eyes)
                touched = previous is None or any(
                    _overlap(box, parts[c].px) or _overlap(box, previous.parts[c].px) for c in changed
                )
                if (
                    previous is not None
                    and old_anim is not None
                    and old_anim.box == box
                    and not touched
                    and bg == previous.background
                ):
                    anim = old_anim
                else:
                    anim = layers._animated(name, box)
                    crops += 1
                setattr(layers, name, anim)
            # the rest crops are the frame's own pixels
            for made, rest in ((layers.mouth, ("rest", 0.0)), (layers.eyes, 0.0)):
                anim = _present(made)
                x0, y0, x1, y1 = anim.box
                layers.base[y0:y1, x0:x1] = anim.get(rest)
                if anim.cpu_at_build is None:
                    anim.cpu_at_build = anim.cpu_s
            for name in ANIMATED:
                variants = _present(parts[name].variants)
                if variants.cpu_at_build is None:
                    variants.cpu_at_build = variants.cpu_s
        layers.stats = {
            "parts_rebuilt": rebuilt,
            "parts_redrawn": len(changed),
            "pixels_composited": 0 if dirty is None else (dirty[2] - dirty[0]) * (dirty[3] - dirty[1]),
            "crops_redrawn": crops,
        }
        return layers

    def _animated(self, name: str, box: tuple[int, int, int, int]) -> _Animated:
        """An animated part's crop source: the parts under it and over it, composited in its box."""
        skia = _skia()
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        i = PARTS.index(name)
        under = np.empty((h, w, 4), np.uint8)
        surf = _surface(under)
        c = surf.getCanvas()
        c.clear(skia.Color(*self.background))
        c.translate(-x0, -y0)
        for p in PARTS[:i]:
            if _overlap(self.parts[p].px, box):
                _draw_part(c, self.parts[p], p)
        del c, surf
        over = None
        above = [p for p in PARTS[i + 1 :] if _overlap(self.parts[p].px, box)]
        if above:
            over_s = skia.Surface.MakeRaster(_info(w, h))
            c = over_s.getCanvas()
            c.clear(skia.Color4f(0, 0, 0, 0))
            c.translate(-x0, -y0)
            for p in above:
                _draw_part(c, self.parts[p], p)
            over = over_s.makeImageSnapshot()
            del c
        return _Animated(box, source=(under, over, self.parts[name], name))

    # -- reading ----------------------------------------------------------------------
    def crop(self, kind: str, variant, box: tuple[int, int, int, int]) -> np.ndarray:
        """A variant of one animated part, seen through an arbitrary (larger) box."""
        anim = _present(self.mouth if kind == "mouth" else self.eyes)
        full = self.base.copy()
        x0, y0, x1, y1 = anim.box
        full[y0:y1, x0:x1] = anim.get(variant)
        return full[box[1] : box[3], box[0] : box[2]]

    @classmethod
    def blend(cls, a: "FaceLayers", b: "FaceLayers", t: float) -> "FaceLayers":
        """The cross-fade of two faces frozen at ``t``, as a layer set of its own."""
        w = int(round(t * 256))
        base = _mix(a.base, b.base, w)
        mb = _union(_present(a.mouth).box, _present(b.mouth).box)
        eb = _union(_present(a.eyes).box, _present(b.eyes).box)
        if _overlap(mb, eb):
            return b
        mouth = _Animated(mb, {v: _mix(a.crop("mouth", v, mb), b.crop("mouth", v, mb), w) for v in _MOUTH_VARIANTS})
        eyes = _Animated(eb, {v: _mix(a.crop("eyes", v, eb), b.crop("eyes", v, eb), w) for v in _BLINKS})
        return cls(b.size, b.shown, b.background, b.parts, b.rgba, base, mouth, eyes)

    def frame(self, mouth: float, blink: float, viseme: "str | Mapping[str, float] | None" = None) -> np.ndarray:
        out = self.base.copy()
        m = self._mouth_crop(mouth, viseme)
        if m is not None:
            x0, y0, x1, y1 = _present(self.mouth).box
            out[y0:y1, x0:x1] = m
        e = _level(_present(self.eyes).get, _BLINKS, blink)
        if e is not None:
            x0, y0, x1, y1 = _present(self.eyes).box
            out[y0:y1, x0:x1] = e
        return out

    def compose(self, mouth: "MouthState", blink: float) -> np.ndarray:
        """The frame for one expression (the animator's renderer interface): a fresh array.

        ``mouth.shape`` is a viseme name (``NEUTRAL_SHAPE`` draws the generic open mouth);
        ``mouth.toward``/``mouth.mix`` name the second shape and its share (a closed shape's
        share closes the lips part way; see ``_mouth_crop``).
        """
        shape = "A" if mouth.shape not in VISEMES else mouth.shape
        if mouth.toward in VISEMES and mouth.mix > 0:
            viseme: str | dict[str, float] = {shape: 1.0 - mouth.mix, mouth.toward: mouth.mix}
        else:
            viseme = shape
        return self.frame(mouth.open, blink, viseme)

    def _mouth_crop(self, openness: float, viseme) -> np.ndarray | None:
        """The mouth for an openness and a viseme weight map.

        The heaviest open shape is drawn; the closed shape's weight closes the lips (openness
        scales by 1 - w_rest). Two different mouths are never cross-faded: a dissolve between
        an A and an O shows both at once, a ghost no cartoon mouth has. Transitions are
        smooth because the weights are (the estimator smooths them over ~35 ms).
        """
        weights = _viseme_weights(viseme)
        total = sum(weights.values())
        w_rest = weights.pop("rest", 0.0) / total
        openness = max(0.0, openness) * (1.0 - w_rest)
        if not weights or openness <= 0.0:
            return None
        shape = max(weights.items(), key=lambda kv: kv[1])[0]
        return self._viseme_crop(shape, openness)

    def _viseme_crop(self, v: str, openness: float) -> np.ndarray | None:
        if v == "rest":
            return None
        if v == "F":
            f = min(1.0, max(0.0, openness) / F_FULL_AT)
            return _level(_present(self.mouth).get, [("rest", 0.0), ("F", 1.0)], f)
        levels = [("rest", 0.0)] + [(v, i / (MOUTH_LEVELS - 1)) for i in range(1, MOUTH_LEVELS)]
        return _level(_present(self.mouth).get, levels, openness)


def crossfade(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Two frames mixed, ``t`` = 0 is ``a``, 1 is ``b`` (exact at both ends)."""
    return _mix(a, b, int(round(min(max(t, 0.0), 1.0) * 256)))


# ``build`` takes ``previous=``: the animator passes the face it shows (engines/animator.py)
FaceLayers.build.__func__.accepts_previous = True  # type: ignore[attr-defined]


def _viseme_weights(viseme) -> dict[str, float]:
    if viseme is None:
        return {"A": 1.0}
    if isinstance(viseme, str):
        if viseme not in VISEMES:
            raise ValueError(f"viseme must be one of {VISEMES}, got {viseme!r}")
        return {viseme: 1.0}
    out = {}
    for k, w in viseme.items():
        if k not in VISEMES:
            raise ValueError(f"viseme must be one of {VISEMES}, got {k!r}")
        w = float(w)
        if not math.isfinite(w):
            raise ValueError("viseme weights must be finite")
        if w > 0:
            out[k] = w
    return out or {"rest": 1.0}


def _mix(a: np.ndarray, b: np.ndarray, w: int, scratch: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Integer lerp with weight w/256; exact at both ends so morph 0/1 reproduce a face.

    ``scratch`` (two uint16 arrays shaped like a) saves the allocations on the frame path,
    where fresh multi-megabyte temporaries cost more than the arithmetic.
    """
    if w <= 0:
        return a.copy()
    if w >= 256:
        return b.copy()
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


def _rgb(bgra: np.ndarray) -> np.ndarray:
    """The colour channels of an opaque BGRA raster as a fresh C-contiguous RGB array. One
    plane at a time: numpy copies a 3-of-4-bytes slice element by element (7x slower)."""
    out = np.empty(bgra.shape[:2] + (3,), np.uint8)
    for c in range(3):
        out[:, :, c] = bgra[:, :, 2 - c]
    return out


def _level(get: Callable[[object], np.ndarray], levels: Sequence, x: float) -> np.ndarray | None:
    """Blend of the two pre-drawn levels around x in [0, 1] (``get(levels[i])`` is level i);
    None means 'at rest' (level 0). Only the levels used are asked for."""
    n = len(levels)
    f = min(max(x, 0.0), 1.0) * (n - 1)
    i = int(f)
    w = int(round((f - i) * 256))
    if i >= n - 1:
        return get(levels[n - 1])
    if i == 0 and w == 0:
        return None
    if w == 0:
        return get(levels[i])
    if w == 256:
        return get(levels[i + 1])
    return _mix(get(levels[i]), get(levels[i + 1]), w)


class AvatarRenderer:
    """Live renderer with per-face caches; one instance per call/video track.

    Before the first ``set_params`` it shows ``FaceParams.neutral()`` (the pre-speech face).
    ``set_params`` keeps the face that was on screen as the morph source: if a morph was
    in progress (last frame had 0 < morph < 1), the frozen mid-morph picture becomes the
    source, so a refinement arriving mid-morph never makes the picture jump. The new face
    is drawn incrementally from the current one (only the parts that changed visibly).
    """

    def __init__(self, size: int = 256) -> None:
        self.size = _check_size(size)
        self.params = FaceParams.neutral()
        self._cur = FaceLayers.build(self.params, self.size)
        self._prev = self._cur
        self._last_morph = 1.0
        shape = (self.size, self.size, 3)
        self._scratch = (np.empty(shape, np.uint16), np.empty(shape, np.uint16))

    @property
    def layers(self) -> FaceLayers:
        return self._cur

    def set_params(self, params: FaceParams) -> None:
        if not isinstance(params, FaceParams):
            raise TypeError(f"set_params expects FaceParams, got {type(params).__name__}")
        m = self._last_morph
        new = FaceLayers.build(params, self.size, previous=self._cur)
        self.params = params
        if new is self._cur:
            return  # nothing visible changed: no redraw, no morph
        if 0.0 < m < 1.0:
            src = FaceLayers.blend(self._prev, self._cur, m)
        elif m <= 0.0:
            src = self._prev
        else:
            src = self._cur
        self._prev = src
        self._cur = new
        self._last_morph = 1.0

    def frame(
        self, mouth: float, blink: float, morph: float = 1.0, viseme: "str | Mapping[str, float] | None" = None
    ) -> np.ndarray:
        """(size, size, 3) uint8 RGB, C-contiguous; a fresh array the caller may keep.

        ``viseme``: a mouth shape name from ``VISEMES`` or a weight map over them (the two
        heaviest are blended); None draws the generic open mouth ("A").
        """
        mouth, blink, morph = float(mouth), float(blink), float(morph)
        if not (math.isfinite(mouth) and math.isfinite(blink) and math.isfinite(morph)):
            raise ValueError("mouth, blink and morph must be finite")
        morph = min(max(morph, 0.0), 1.0)
        self._last_morph = morph
        w = int(round(morph * 256))
        if w >= 256 or self._prev is self._cur:
            return self._cur.frame(mouth, blink, viseme)
        if w <= 0:
            return self._prev.frame(mouth, blink, viseme)
        a = self._prev.frame(mouth, blink, viseme)
        b = self._cur.frame(mouth, blink, viseme)
        return _mix(a, b, w, self._scratch)


def part_alpha(params: FaceParams, names: tuple[str, ...], size: int = 256) -> np.ndarray:
    """(size, size) uint8 coverage of the named parts drawn alone (masks for tests and docs)."""
    size = _check_size(size)
    layers = FaceLayers.build(params, size, animated=False)
    out = np.zeros((size, size, 4), np.uint8)
    surf = _surface(out)
    c = surf.getCanvas()
    for n in names:
        _draw_part(c, layers.parts[n], n)
    del c, surf
    return out[:, :, 3].copy()


def render_rgb(params: FaceParams, size: int = 256, mouth: float = 0.0, blink: float = 0.0, viseme: str = "A") -> np.ndarray:
    """One picture drawn from the same part pictures the live frames use."""
    size = _check_size(size)
    return FaceLayers.build(params, size).frame(mouth, blink, viseme)


def render_png(params: FaceParams, size: int = 256, mouth: float = 0.0, blink: float = 0.0, viseme: str = "A") -> bytes:
    """A PNG of the face (the same pixels as a live frame of that face)."""
    from PIL import Image

    arr = render_rgb(params, size, mouth, blink, viseme)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def render_svg(params: FaceParams, size: int = 256, mouth: float = 0.0, blink: float = 0.0, viseme: str = "A") -> str:
    """A standalone SVG of the same scene the PNG is drawn from."""
    size = _check_size(size)
    return to_svg(build_scene(params, mouth, blink, viseme), size)
