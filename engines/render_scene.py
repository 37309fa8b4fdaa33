"""A tiny vector scene: the single source both the SVG and the raster are made from.

The avatar is described once as an ordered list of filled/stroked paths in a fixed
512-unit design space. The SVG writer prints that list; the rasteriser replays the same
list through Skia (good analytic antialiasing). Keeping one description is what makes the
PNG and the SVG look the same, so the path model is deliberately small: move/line/cubic/
quadratic/close, solid colours with opacity, round caps, an optional clip path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence
from xml.sax.saxutils import escape

import numpy as np

DESIGN = 512.0  # every coordinate lives in a 512 x 512 design square

RGB = tuple[float, float, float]  # components in [0, 1]
Pt = tuple[float, float]


class Path:
    """An immutable-by-convention list of path commands with cheap geometric transforms."""

    __slots__ = ("ops",)

    def __init__(self, ops: list[tuple] | None = None) -> None:
        self.ops: list[tuple] = ops if ops is not None else []

    def __repr__(self) -> str:
        return f"Path({self.ops!r})"

    # -- building ---------------------------------------------------------------------
    def M(self, x: float, y: float) -> "Path":
        self.ops.append(("M", x, y))
        return self

    def L(self, x: float, y: float) -> "Path":
        self.ops.append(("L", x, y))
        return self

    def C(self, x1: float, y1: float, x2: float, y2: float, x: float, y: float) -> "Path":
        self.ops.append(("C", x1, y1, x2, y2, x, y))
        return self

    def Q(self, x1: float, y1: float, x: float, y: float) -> "Path":
        self.ops.append(("Q", x1, y1, x, y))
        return self

    def Z(self) -> "Path":
        self.ops.append(("Z",))
        return self

    def extend(self, other: "Path") -> "Path":
        self.ops.extend(other.ops)
        return self

    # -- transforms -------------------------------------------------------------------
    # Each transform is its own loop over the coordinates (no function call per point): the
    # art builds hundreds of transformed paths per face, and a refinement rebuilds them.
    def map(self, fn) -> "Path":
        """Apply ``fn(x, y) -> (x, y)`` to every coordinate (affine fns keep curves exact).

        An ``Affine`` (anything with ``a``..``f``) is applied as ``a x + b y + c, d x + e y + f``."""
        if all(hasattr(fn, k) for k in "abcdef"):
            return self._affine(fn.a, fn.b, fn.c, fn.d, fn.e, fn.f)
        out: list[tuple] = []
        for op in self.ops:
            if op[0] == "Z":
                out.append(op)
                continue
            vals = list(op[1:])
            for i in range(0, len(vals), 2):
                vals[i], vals[i + 1] = fn(vals[i], vals[i + 1])
            out.append((op[0], *vals))
        return Path(out)

    def _affine(self, a: float, b: float, c: float, d: float, e: float, f: float) -> "Path":
        out: list[tuple] = []
        for op in self.ops:
            if len(op) == 1:
                out.append(op)
                continue
            v = op[1:]
            out.append(
                (op[0], *[x for i in range(0, len(v), 2) for x in (a * v[i] + b * v[i + 1] + c, d * v[i] + e * v[i + 1] + f)])
            )
        return Path(out)

    def translated(self, dx: float, dy: float) -> "Path":
        out: list[tuple] = []
        for op in self.ops:
            n = len(op)
            if n == 3:
                out.append((op[0], op[1] + dx, op[2] + dy))
            elif n == 7:
                out.append((op[0], op[1] + dx, op[2] + dy, op[3] + dx, op[4] + dy, op[5] + dx, op[6] + dy))
            elif n == 5:
                out.append((op[0], op[1] + dx, op[2] + dy, op[3] + dx, op[4] + dy))
            else:
                out.append(op)
        return Path(out)

    def scaled(self, sx: float, sy: float, cx: float, cy: float) -> "Path":
        out: list[tuple] = []
        for op in self.ops:
            if len(op) == 1:
                out.append(op)
                continue
            v = op[1:]
            out.append((op[0], *[x for i in range(0, len(v), 2) for x in (cx + (v[i] - cx) * sx, cy + (v[i + 1] - cy) * sy)]))
        return Path(out)

    def mirrored(self, cx: float) -> "Path":
        out: list[tuple] = []
        for op in self.ops:
            if len(op) == 1:
                out.append(op)
                continue
            v = op[1:]
            out.append((op[0], *[x for i in range(0, len(v), 2) for x in (2 * cx - v[i], v[i + 1])]))
        return Path(out)

    # -- output -----------------------------------------------------------------------
    def svg(self) -> str:
        parts = []
        for op in self.ops:
            if op[0] == "Z":
                parts.append("Z")
            else:
                parts.append(op[0] + " ".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in op[1:]))
        return "".join(parts)

    def bounds(self) -> tuple[float, float, float, float]:
        xs = [v for op in self.ops if op[0] != "Z" for v in op[1::2]]
        ys = [v for op in self.ops if op[0] != "Z" for v in op[2::2]]
        return (min(xs), min(ys), max(xs), max(ys))


# -- shape constructors ---------------------------------------------------------------

_K = 0.5522847498  # cubic Bezier circle constant


def ellipse(cx: float, cy: float, rx: float, ry: float) -> Path:
    kx, ky = rx * _K, ry * _K
    return (
        Path()
        .M(cx + rx, cy)
        .C(cx + rx, cy + ky, cx + kx, cy + ry, cx, cy + ry)
        .C(cx - kx, cy + ry, cx - rx, cy + ky, cx - rx, cy)
        .C(cx - rx, cy - ky, cx - kx, cy - ry, cx, cy - ry)
        .C(cx + kx, cy - ry, cx + rx, cy - ky, cx + rx, cy)
        .Z()
    )


def circle(cx: float, cy: float, r: float) -> Path:
    return ellipse(cx, cy, r, r)


def rect(x0: float, y0: float, x1: float, y1: float) -> Path:
    return Path().M(x0, y0).L(x1, y0).L(x1, y1).L(x0, y1).Z()


def round_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> Path:
    r = min(r, (x1 - x0) / 2, (y1 - y0) / 2)
    k = r * (1 - _K)
    return (
        Path()
        .M(x0 + r, y0)
        .L(x1 - r, y0)
        .C(x1 - k, y0, x1, y0 + k, x1, y0 + r)
        .L(x1, y1 - r)
        .C(x1, y1 - k, x1 - k, y1, x1 - r, y1)
        .L(x0 + r, y1)
        .C(x0 + k, y1, x0, y1 - k, x0, y1 - r)
        .L(x0, y0 + r)
        .C(x0, y0 + k, x0 + k, y0, x0 + r, y0)
        .Z()
    )


def _cr_segments(pts: Sequence[Pt], closed: bool, tension: float) -> list[tuple[Pt, Pt, Pt]]:
    """Catmull-Rom through ``pts`` as cubic Bezier segments (c1, c2, end)."""
    n = len(pts)
    segs = []
    rng = range(n) if closed else range(n - 1)
    for i in rng:
        p0 = pts[(i - 1) % n] if closed or i > 0 else pts[i]
        p1 = pts[i]
        p2 = pts[(i + 1) % n]
        p3 = pts[(i + 2) % n] if closed or i + 2 < n else pts[(i + 1) % n]
        t = tension / 6.0
        c1 = (p1[0] + (p2[0] - p0[0]) * t, p1[1] + (p2[1] - p0[1]) * t)
        c2 = (p2[0] - (p3[0] - p1[0]) * t, p2[1] - (p3[1] - p1[1]) * t)
        segs.append((c1, c2, p2))
    return segs


def spline(pts: Sequence[Pt], closed: bool = True, tension: float = 1.0, path: Path | None = None, move: bool = True) -> Path:
    """A smooth curve through the points; the workhorse for organic outlines."""
    p = path if path is not None else Path()
    if move:
        p.M(*pts[0])
    else:
        p.L(*pts[0])
    for c1, c2, e in _cr_segments(pts, closed, tension):
        p.C(c1[0], c1[1], c2[0], c2[1], e[0], e[1])
    if closed:
        p.Z()
    return p


def sample_spline(pts: Sequence[Pt], closed: bool = True, tension: float = 1.0, per_seg: int = 16) -> np.ndarray:
    """Points along the same curve ``spline`` draws, for geometric queries (widths, offsets)."""
    segs = _cr_segments(pts, closed, tension)
    ctrl = np.array([(c1, c2, e) for c1, c2, e in segs], dtype=np.float64)  # (n, 3, 2)
    a = np.concatenate([np.array([pts[0]], dtype=np.float64), ctrl[:-1, 2]])[:, None, :]
    b, c, d = ctrl[:, None, 0], ctrl[:, None, 1], ctrl[:, None, 2]
    t = np.linspace(0.0, 1.0, per_seg, endpoint=False)[None, :, None]
    mt = 1 - t
    out = mt**3 * a + 3 * mt**2 * t * b + 3 * mt * t**2 * c + t**3 * d  # (n, per_seg, 2)
    return np.concatenate([out.reshape(-1, 2), ctrl[-1:, 2]], axis=0)


# -- scene ----------------------------------------------------------------------------


@dataclass
class Shape:
    path: Path
    fill: RGB | None = None
    opacity: float = 1.0
    stroke: RGB | None = None
    stroke_width: float = 0.0
    clip: Path | None = None
    evenodd: bool = False
    part: str = ""  # the layer this shape belongs to (the renderer caches rasters per part)


@dataclass
class Scene:
    """Ordered shapes plus the design-space boxes the animated parts may touch.

    ``part`` names the layer that ``add`` files shapes under; the painter's order of the
    parts is the order of ``shapes``, so a scene can be drawn whole (SVG, one-shot PNG) or
    part by part (the live renderer's per-part cache) with the same result.
    """

    shapes: list[Shape] = field(default_factory=list)
    background: RGB = (1.0, 1.0, 1.0)
    mouth_box: tuple[float, float, float, float] = (0, 0, 0, 0)
    eye_box: tuple[float, float, float, float] = (0, 0, 0, 0)
    part: str = ""

    def add(
        self,
        path: Path,
        fill: RGB | None = None,
        opacity: float = 1.0,
        stroke: RGB | None = None,
        width: float = 0.0,
        clip: Path | None = None,
        evenodd: bool = False,
    ) -> None:
        if opacity <= 0.004:
            return
        self.shapes.append(Shape(path, fill, float(min(1.0, opacity)), stroke, width, clip, evenodd, self.part))

    def extend(self, shapes: Iterable[Shape]) -> None:
        self.shapes.extend(shapes)


def _hex(c: RGB) -> str:
    r, g, b = (int(round(max(0.0, min(1.0, v)) * 255)) for v in c)
    return f"#{r:02x}{g:02x}{b:02x}"


def to_svg(scene: Scene, size: int) -> str:
    """A standalone SVG document; the viewBox keeps the design space so it scales cleanly."""
    defs: list[str] = []
    body: list[str] = []
    clip_ids: dict[str, str] = {}
    for s in scene.shapes:
        attrs = [f'd="{s.path.svg()}"']
        if s.fill is not None:
            attrs.append(f'fill="{_hex(s.fill)}"')
            if s.evenodd:
                attrs.append('fill-rule="evenodd"')
        else:
            attrs.append('fill="none"')
        if s.stroke is not None and s.stroke_width > 0:
            attrs.append(
                f'stroke="{_hex(s.stroke)}" stroke-width="{s.stroke_width:.2f}" stroke-linecap="round" stroke-linejoin="round"'
            )
        if s.opacity < 1.0:
            # per-paint opacity (not group opacity) to match the rasteriser's separate draws
            if s.fill is not None:
                attrs.append(f'fill-opacity="{s.opacity:.3f}"')
            if s.stroke is not None:
                attrs.append(f'stroke-opacity="{s.opacity:.3f}"')
        if s.clip is not None:
            key = s.clip.svg()
            cid = clip_ids.get(key)
            if cid is None:
                cid = f"c{len(clip_ids)}"
                clip_ids[key] = cid
                defs.append(f'<clipPath id="{cid}"><path d="{key}"/></clipPath>')
            attrs.append(f'clip-path="url(#{cid})"')
        body.append("<path " + " ".join(attrs) + "/>")
    d = int(DESIGN)
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {d} {d}">\n'
        f"<title>{escape('Speech2Face avatar')}</title>\n"
    )
    defs_s = "<defs>" + "".join(defs) + "</defs>\n" if defs else ""
    bg = f'<rect width="{d}" height="{d}" fill="{_hex(scene.background)}"/>\n'
    return head + defs_s + bg + "\n".join(body) + "\n</svg>\n"


# -- raster ---------------------------------------------------------------------------


def _skia():
    import skia  # imported lazily: only the raster path needs the native wheel

    return skia


def _skia_path(p: Path, evenodd: bool = False):
    skia = _skia()
    sp = skia.Path()
    for op in p.ops:
        k = op[0]
        if k == "M":
            sp.moveTo(op[1], op[2])
        elif k == "L":
            sp.lineTo(op[1], op[2])
        elif k == "C":
            sp.cubicTo(*op[1:])
        elif k == "Q":
            sp.quadTo(*op[1:])
        else:
            sp.close()
    if evenodd:
        sp.setFillType(skia.PathFillType.kEvenOdd)
    return sp


_PAINTS: dict[tuple, object] = {}


def _paint(colour: RGB, opacity: float, width: float = 0.0, atop: bool = False):
    """A shared anti-aliased fill (``width`` 0) or round stroke paint (``atop``: painting only
    where the canvas already is, in proportion to its coverage); paints are never mutated
    once made (a canvas copies the paint it draws with), so one per colour serves every caller."""
    key = (colour, opacity, width, atop)
    p = _PAINTS.get(key)
    if p is None:
        skia = _skia()
        p = skia.Paint(AntiAlias=True)
        if atop:
            p.setBlendMode(skia.BlendMode.kSrcATop)
        if width > 0:
            p.setStyle(skia.Paint.kStroke_Style)
            p.setStrokeWidth(width)
            p.setStrokeCap(skia.Paint.kRound_Cap)
            p.setStrokeJoin(skia.Paint.kRound_Join)
        p.setColor4f(skia.Color4f(*colour, opacity))
        if len(_PAINTS) > 4096:
            _PAINTS.clear()
        _PAINTS[key] = p
    return p


def draw_shapes(canvas, shapes: Iterable[Shape], alone: bool = False) -> tuple[float, float, float, float] | None:
    """Paint shapes in design units onto a Skia canvas (the caller sets the transform).

    Clips are anti-aliased clip paths; shapes in a row under the same clip share one clip, so
    Skia builds its coverage mask once for all of them (a hair mass and its strands). Where the
    canvas holds nothing but the clip's own shape (``alone``: it started transparent, as for a
    part drawn alone, and the first shape is an opaque fill of the clip path, followed only by
    shapes clipped to it: a mouth's inside and its teeth, a head and its shading), those shapes
    are painted "atop" what is there instead: inside the shape the pixels are the same, its
    anti-aliased edge keeps the shape's own coverage, and no clip mask is built (measured: a
    seventh less CPU per face built). Returns the design-space bounds of what was painted
    (conservative), for dirty-rectangle bookkeeping.
    """
    skia = _skia()
    box = skia.Rect.MakeEmpty()
    pad = 1.0
    made: dict[int, object] = {}  # a Path used twice (a shape and another's clip) is converted once

    def conv(p: Path, evenodd: bool = False):
        key = id(p) * 2 + evenodd
        sp = made.get(key)
        if sp is None:
            sp = made[key] = _skia_path(p, evenodd)
        return sp

    open_clip = None  # the clip path in force (shapes in a row with the same clip share it)
    base: Path | None = None  # the only shape on the canvas so far, when the canvas was empty
    for i, s in enumerate(shapes):
        if i == 0:
            opaque_fill = s.fill is not None and s.stroke is None and s.opacity >= 1.0
            base = s.path if alone and opaque_fill and s.clip is None and not s.evenodd else None
        elif s.clip is not None and s.clip is base:
            sp = conv(s.path, s.evenodd)
            if s.fill is not None:
                canvas.drawPath(sp, _paint(s.fill, s.opacity, atop=True))
            if s.stroke is not None and s.stroke_width > 0:
                canvas.drawPath(sp, _paint(s.stroke, s.opacity, s.stroke_width, atop=True))
            continue  # inside the base shape's bounds, already counted
        else:
            base = None
        sp = conv(s.path, s.evenodd)
        clip = conv(s.clip) if s.clip is not None else None
        stroke = s.stroke is not None and s.stroke_width > 0
        if open_clip is not None and open_clip is not clip:
            canvas.restore()
            open_clip = None
        bounds = sp.getBounds()
        if stroke:
            bounds.outset(s.stroke_width / 2 + 1.0, s.stroke_width / 2 + 1.0)
        if clip is not None:
            if not bounds.intersect(clip.getBounds()):
                continue
            if open_clip is None:
                canvas.save()
                canvas.clipPath(clip, skia.ClipOp.kIntersect, True)
                open_clip = clip
        if s.fill is not None:
            canvas.drawPath(sp, _paint(s.fill, s.opacity))
        if s.stroke is not None and stroke:
            canvas.drawPath(sp, _paint(s.stroke, s.opacity, s.stroke_width))
        box.join(bounds)
    if open_clip is not None:
        canvas.restore()
    if box.isEmpty():
        return None
    return (box.left() - pad, box.top() - pad, box.right() + pad, box.bottom() + pad)


def record(shapes: Sequence[Shape]):
    """A Skia picture of the shapes in design units, and the bounds of what it paints.

    Replaying a picture draws exactly what drawing the shapes would (same commands), without
    the Python cost of building the paths again; the renderer caches one per mouth shape and
    eyelid level.
    """
    skia = _skia()
    rec = skia.PictureRecorder()
    canvas = rec.beginRecording(skia.Rect.MakeWH(DESIGN, DESIGN))
    box = draw_shapes(canvas, shapes)
    return rec.finishRecordingAsPicture(), box


def rasterize(scene: Scene, size: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Draw the scene at ``size`` px; ``box=(x0, y0, x1, y1)`` in pixels renders only that crop.

    A direct draw of the whole scene (clips as anti-aliased clips, like an SVG viewer); the
    live renderer draws the same shapes part by part (``engines.render``).
    """
    skia = _skia()
    x0, y0, x1, y1 = box if box is not None else (0, 0, size, size)
    out = np.empty((y1 - y0, x1 - x0, 4), np.uint8)
    surf = skia.Surface(out)
    canvas = surf.getCanvas()
    canvas.clear(skia.Color(*(int(round(v * 255)) for v in scene.background)))
    canvas.translate(-x0, -y0)
    canvas.scale(size / DESIGN, size / DESIGN)
    draw_shapes(canvas, scene.shapes)
    del canvas, surf
    return np.ascontiguousarray(out[:, :, :3])
