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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import numpy as np

from .choices import SIZES
from .face import PARAM_NAMES, PARAM_SPECS, FaceParams
from .render_face import ANIMATED, PART_INPUTS, PARTS, Affine, FaceModel
from .render_scene import DESIGN, Scene, record, to_svg
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


def _matrix(a: Affine | None, scale: float):
    skia = _skia()
    if a is None:
        return skia.Matrix.Scale(scale, scale)
    return skia.Matrix.MakeAll(a.a * scale, a.b * scale, a.c * scale, a.d * scale, a.e * scale, a.f * scale, 0, 0, 1)


def _map_box(b: tuple[float, float, float, float] | None, a: Affine | None):
    if b is None or a is None:
        return b
    pts = [a(x, y) for x in (b[0], b[2]) for y in (b[1], b[3])]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return (min(xs), min(ys), max(xs), max(ys))


def _px_box(box, size: int) -> tuple[int, int, int, int] | None:
    if box is None:
        return None
    s = size / DESIGN
    x0 = max(0, int(math.floor(box[0] * s)) - 1)
    y0 = max(0, int(math.floor(box[1] * s)) - 1)
    x1 = min(size, int(math.ceil(box[2] * s)) + 1)
    y1 = min(size, int(math.ceil(box[3] * s)) + 1)
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


@dataclass
class _Part:
    key: tuple
    picture: object  # skia.Picture in the part's own frame
    affine: Affine | None  # where the picture is placed (animated parts); None = design frame
    box: tuple[float, float, float, float] | None  # design-space bounds once placed


@dataclass
class _Animated:
    """Pre-drawn crops of one animated part: the mouth shapes or the eyelid levels."""

    box: tuple[int, int, int, int]
    crops: dict  # variant -> (h, w, 3) uint8


@dataclass
class FaceLayers:
    """One face's cached rasters at one size: the rest frame, the mouth and eye crops, and the
    per-part pictures a later refinement reuses (``build(..., previous=self)``)."""

    size: int
    shown: FaceParams  # the quantised face actually drawn
    background: tuple[int, int, int]
    parts: dict[str, _Part]
    rgba: np.ndarray  # (S, S, 4) working buffer of the rest frame
    base: np.ndarray  # (S, S, 3) uint8 rest frame (mouth closed, eyes open)
    mouth: _Animated | None = None
    eyes: _Animated | None = None
    stats: dict = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(cls, params: FaceParams, size: int, previous: "FaceLayers | None" = None, animated: bool = True) -> "FaceLayers":
        """Draw a face, reusing whatever ``previous`` (the face on screen) already drew.

        Returns ``previous`` itself when nothing visible changed. Never modifies ``previous``.
        """
        size = _check_size(size)
        if previous is not None and previous.size != size:
            previous = None
        shown = quantize(params, previous.shown if previous is not None else None)
        if (
            previous is not None
            and np.array_equal(shown.vector, previous.shown.vector)
            and (previous.mouth is not None or not animated)
        ):
            return previous  # nothing visible changed (layers are read-only: sharing is safe)
        model = FaceModel(shown)
        bg = tuple(int(round(c * 255)) for c in model.pal.bg)
        parts: dict[str, _Part] = {}
        changed: list[str] = []
        for name in PARTS:
            if name == "mouth":
                key = model.mouth_key()
            elif name == "eyes":
                key = model.eye_key()
            else:
                key = tuple(float(shown.vector[_INDEX[n]]) for n in PART_INPUTS[name])
            old = previous.parts.get(name) if previous is not None else None
            if name in ANIMATED:
                affines = [model.mouth_affine()] if name == "mouth" else [model.eye_affine(-1), model.eye_affine(1)]
                if old is not None and old.key == key:
                    pics = old.picture
                else:
                    pics = _animated_pictures(model, name)
                    changed.append(name)
                box = None
                for i, a in enumerate(affines):
                    rest = pics[("rest", 0.0)] if name == "mouth" else pics[(0.0, (-1, 1)[i])]
                    box = _union(box, _map_box(rest[1], a))
                part = _Part(key, pics, affines[0] if name == "mouth" else tuple(affines), box)
                if old is not None and old.key == key and old.affine != part.affine:
                    changed.append(name)
            elif old is not None and old.key == key:
                part = old
            else:
                pic, box = record(model.part_shapes(name))
                part = _Part(key, pic, None, box)
                changed.append(name)
            parts[name] = part

        skia = _skia()
        scale = size / DESIGN
        band = size // BANDS
        if previous is None or bg != previous.background:
            rows = list(range(BANDS))
            rgba = np.empty((size, size, 4), np.uint8)
        else:
            rows = set()
            for name in changed:
                for box in (_px_box(parts[name].box, size), _px_box(previous.parts[name].box, size)):
                    if box is not None:
                        rows.update(range(box[1] // band, min(BANDS, (box[3] - 1) // band + 1)))
            rows = sorted(rows)
            rgba = previous.rgba.copy()
        if rows:
            surf = skia.Surface(rgba)
            canvas = surf.getCanvas()
            boxes = {name: _px_box(parts[name].box, size) for name in PARTS}
            for r in rows:
                # a fixed band grid: a band redrawn later is drawn under the same clip as in a full redraw
                y0, y1 = r * band, (r + 1) * band
                canvas.save()
                canvas.clipRect(skia.Rect.MakeLTRB(0, y0, size, y1))
                canvas.clear(skia.Color(*bg))
                for name in PARTS:
                    b = boxes[name]
                    if b is not None and b[1] < y1 and b[3] > y0:
                        _draw_part(canvas, parts[name], name, scale)
                canvas.restore()
            del canvas, surf
        layers = cls(size, shown, bg, parts, rgba, np.ascontiguousarray(rgba[:, :, :3]))
        crops = 0
        if animated:
            for name in ANIMATED:
                box = _px_box(model.mouth_box() if name == "mouth" else model.eye_box(), size)
                old_anim = None if previous is None else (previous.mouth if name == "mouth" else previous.eyes)
                touched = previous is None or any(
                    _overlap(box, _px_box(parts[c].box, size)) or _overlap(box, _px_box(previous.parts[c].box, size))
                    for c in changed
                )
                if old_anim is not None and old_anim.box == box and not touched and bg == previous.background:
                    anim = old_anim
                else:
                    anim = layers._composite_crops(name, box)
                    crops += len(anim.crops)
                setattr(layers, name, anim)
            # the rest crops are the frame's own pixels: keep the frame and crops one picture
            for anim in (layers.mouth, layers.eyes):
                x0, y0, x1, y1 = anim.box
                rest = anim.crops[("rest", 0.0)] if anim is layers.mouth else anim.crops[0.0]
                layers.base[y0:y1, x0:x1] = rest
        layers.stats = {"parts_redrawn": len(set(changed)), "bands_redrawn": len(rows), "crops_redrawn": crops}
        return layers

    def _composite_crops(self, name: str, box: tuple[int, int, int, int]) -> _Animated:
        """Crops of an animated part: the parts under it, each variant, the parts over it."""
        skia = _skia()
        scale = self.size / DESIGN
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        i = PARTS.index(name)
        under = np.empty((h, w, 4), np.uint8)
        surf = skia.Surface(under)
        c = surf.getCanvas()
        c.clear(skia.Color(*self.background))
        c.translate(-x0, -y0)
        for p in PARTS[:i]:
            _draw_part(c, self.parts[p], p, scale)
        del c, surf
        over_s = skia.Surface.MakeRaster(skia.ImageInfo.Make(w, h, skia.kRGBA_8888_ColorType, skia.kPremul_AlphaType))
        c = over_s.getCanvas()
        c.clear(skia.Color4f(0, 0, 0, 0))
        c.translate(-x0, -y0)
        for p in PARTS[i + 1 :]:
            _draw_part(c, self.parts[p], p, scale)
        over = over_s.makeImageSnapshot()
        del c
        part = self.parts[name]
        variants = _MOUTH_VARIANTS if name == "mouth" else _BLINKS
        crops = {}
        out = np.empty((h, w, 4), np.uint8)
        surf = skia.Surface(out)
        c = surf.getCanvas()
        for var in variants:
            out[:] = under
            c.save()
            c.translate(-x0, -y0)
            _draw_part(c, part, name, scale, var)
            c.restore()
            c.drawImage(over, 0, 0)
            crops[var] = np.ascontiguousarray(out[:, :, :3])
        del c, surf
        return _Animated(box, crops)

    # -- reading ----------------------------------------------------------------------
    def crop(self, kind: str, variant, box: tuple[int, int, int, int]) -> np.ndarray:
        """A variant of one animated part, seen through an arbitrary (larger) box."""
        anim = self.mouth if kind == "mouth" else self.eyes
        full = self.base.copy()
        x0, y0, x1, y1 = anim.box
        full[y0:y1, x0:x1] = anim.crops[variant]
        return full[box[1] : box[3], box[0] : box[2]]

    @classmethod
    def blend(cls, a: "FaceLayers", b: "FaceLayers", t: float) -> "FaceLayers":
        """The cross-fade of two faces frozen at ``t``, as a layer set of its own."""
        w = int(round(t * 256))
        base = _mix(a.base, b.base, w)
        mb = _union(a.mouth.box, b.mouth.box)
        eb = _union(a.eyes.box, b.eyes.box)
        if _overlap(mb, eb):
            return b
        mouth = _Animated(mb, {v: _mix(a.crop("mouth", v, mb), b.crop("mouth", v, mb), w) for v in _MOUTH_VARIANTS})
        eyes = _Animated(eb, {v: _mix(a.crop("eyes", v, eb), b.crop("eyes", v, eb), w) for v in _BLINKS})
        return cls(b.size, b.shown, b.background, b.parts, b.rgba, base, mouth, eyes)

    def frame(self, mouth: float, blink: float, viseme: "str | Mapping[str, float] | None" = None) -> np.ndarray:
        out = self.base.copy()
        m = self._mouth_crop(mouth, viseme)
        if m is not None:
            x0, y0, x1, y1 = self.mouth.box
            out[y0:y1, x0:x1] = m
        e = _level([self.eyes.crops[b] for b in _BLINKS], blink)
        if e is not None:
            x0, y0, x1, y1 = self.eyes.box
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
        c = self.mouth.crops
        rest = c[("rest", 0.0)]
        if v == "rest":
            return None
        if v == "F":
            f = min(1.0, max(0.0, openness) / F_FULL_AT)
            return _level([rest, c[("F", 1.0)]], f)
        stack = [rest] + [c[(v, i / (MOUTH_LEVELS - 1))] for i in range(1, MOUTH_LEVELS)]
        return _level(stack, openness)


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


def _animated_pictures(model: FaceModel, name: str) -> dict:
    """Pictures (with their local bounds) of every variant of the mouth or of each eye.

    These may use anti-aliased clips: their pixels in the frame always come from their crop
    box, composited the same way on every redraw, never from a band redraw."""
    out = {}
    if name == "mouth":
        for v, o in _MOUTH_VARIANTS:
            out[(v, o)] = record(model.mouth_shapes(v, o), exact_clips=False)
    else:
        for b in _BLINKS:
            for side in (-1, 1):
                out[(b, side)] = record(model.eye_shapes(b, side), exact_clips=False)
    return out


def _draw_part(canvas, part: _Part, name: str, scale: float, variant=None) -> None:
    if name == "mouth":
        pic = part.picture[variant if variant is not None else ("rest", 0.0)][0]
        canvas.drawPicture(pic, _matrix(part.affine, scale))
    elif name == "eyes":
        b = variant if variant is not None else 0.0
        for side, a in zip((-1, 1), part.affine):
            canvas.drawPicture(part.picture[(b, side)][0], _matrix(a, scale))
    else:
        canvas.drawPicture(part.picture, _matrix(None, scale))


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


def _level(stack: list[np.ndarray], x: float) -> np.ndarray | None:
    """Blend of the two pre-drawn levels around x in [0, 1]; None means 'at rest' (level 0)."""
    n = len(stack)
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
    skia = _skia()
    out = np.zeros((size, size, 4), np.uint8)
    surf = skia.Surface(out)
    c = surf.getCanvas()
    for n in names:
        _draw_part(c, layers.parts[n], n, size / DESIGN)
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
