"""The art: FaceParams -> a vector Scene (head-and-shoulders, flat shaded, 2-3 tones per surface).

Why it is built this way:
- Geometry is computed once per face (``FaceModel``); parts are then laid out in paint
  order (``PARTS``). Each part reads only the params listed in ``PART_INPUTS`` (a test
  perturbs every other param and checks the part's shapes stay identical), which is what
  lets the live renderer cache a raster per part and redraw only what a refinement moved.
- The animated parts (mouth, eyes) are drawn in their own local frame and placed by an
  affine map, so a refinement that only moves the face keeps every pre-drawn mouth shape.
- Trait params (femininity, age) are blended into the shape params here rather than
  trusted to the decoder alone, so a face read only from traits (all shape params at 0.5)
  still reads as masculine/feminine, child/senior, and the androgynous middle is a true
  interpolation, never a switch. Shape params span a wide geometric range on purpose:
  two voices should get visibly different heads, not the same head a pixel apart.
- Shading is drawn, not blurred: every shadow and highlight is a hard-edged shape in a
  second or third flat tone (a crescent cut from the head outline, a cast shadow under
  the hair, a band under the jaw), the way the flat avatar styles people pick do it.
- One line weight scale (``LINE``, ``LINE_FINE``) for every feature line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .face import HAIR_STYLES, FaceParams
from .render_palette import Palette, mix, palette_for, shade
from .render_scene import Path, Pt, Scene, Shape, circle, ellipse, rect, round_rect, sample_spline, spline

CX = 256.0
LINE = 3.6  # main feature line (lids, mouth parting) in design units: ~1.8 px at 256 px
LINE_FINE = 2.2  # secondary lines (creases, ear, nostrils, strands)

#: paint order; the live renderer caches one raster per part
PARTS = (
    "background",
    "hair_back",
    "body",
    "ears",
    "head",
    "details",
    "facial_hair",
    "mouth",
    "moustache",
    "eyes",
    "brows",
    "hair_front",
    "glasses",
)
ANIMATED = ("mouth", "eyes")


# what every head-related part depends on: the head outline and its placement
_GEOM = ("femininity", "age", "size", "head_width", "face_length", "jaw_width", "chin_shape", "cheek_fullness")
_EYE = ("eye_size", "eye_spacing", "eye_tilt", "eye_shape")
# the beard and the moustache sit on the same face and take their colour from the hair
_FACIAL_HAIR_INPUTS = (
    _GEOM
    + _EYE
    + (
        "facial_hair",
        "facial_hair_style",
        "hair_colour",
        "greying",
        "skin_tone",
        "nose_width",
        "nose_length",
        "mouth_width",
        "lip_fullness",
    )
)
_HAIR = (
    "hair_style",
    "hair_length",
    "hair_volume",
    "hair_colour",
    "greying",
    "baldness",
    "identity_jitter",
    "brow_arch",
    "neck_width",
)
#: the params each part reads (FaceModel geometry included); enforced by tests/test_render.py
PART_INPUTS: dict[str, tuple[str, ...]] = {
    "background": ("background_hue",),
    "hair_back": _GEOM + _HAIR + _EYE + ("nose_length",),
    "body": _GEOM + ("neck_width", "shirt_hue", "background_hue", "skin_tone"),
    "ears": _GEOM + _EYE + ("ear_size", "nose_length", "skin_tone"),
    "head": _GEOM + _EYE + ("skin_tone", "nose_length"),
    "details": _GEOM
    + _EYE
    + ("nose_width", "nose_length", "mouth_width", "lip_fullness", "age_lines", "freckles", "skin_tone", "brow_arch"),
    "facial_hair": _FACIAL_HAIR_INPUTS,
    "mouth": ("femininity", "age", "mouth_width", "lip_fullness", "skin_tone"),
    "moustache": _FACIAL_HAIR_INPUTS,
    "eyes": ("femininity", "age", "head_width") + _EYE + ("eye_colour", "eyelashes", "skin_tone"),
    "brows": _GEOM + _EYE + ("brow_thickness", "brow_arch", "hair_colour", "greying", "skin_tone"),
    "hair_front": _GEOM + _HAIR + _EYE + ("nose_length", "skin_tone"),
    "glasses": _GEOM + _EYE + ("glasses", "identity_jitter", "nose_length"),
}


GRID = 0.5  # design units (0.25 px at 256 px)


def _snap(v: float) -> float:
    return round(v / GRID) * GRID


def clip01(v: float) -> float:
    return max(0.0, min(1.0, v))


def smooth(e0: float, e1: float, x: float) -> float:
    t = clip01((x - e0) / (e1 - e0))
    return t * t * (3 - 2 * t)


def lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


# Which hair_length values each style is drawn at; outside its range the nearest allowed
# style (by position in HAIR_STYLES, which groups styles by texture, so the identity's
# "taste" — straight, wavy, curly, coily — is kept) is used instead. Receding and bald are
# drawn only when the baldness trait asks for them; baldness turns short styles into them.
HAIR_LENGTH_RANGE: dict[str, tuple[float, float]] = {
    "buzz": (0.0, 0.3),
    "crew": (0.0, 0.42),
    "side_part": (0.1, 0.55),
    "quiff": (0.1, 0.5),
    "undercut": (0.15, 0.6),
    "bob": (0.4, 0.78),
    "long_straight": (0.6, 1.0),
    "ponytail": (0.48, 1.0),
    "bun": (0.42, 1.0),
    "long_wavy": (0.6, 1.0),
    "wavy_short": (0.12, 0.55),
    "curly_short": (0.0, 0.55),
    "long_curly": (0.55, 1.0),
    "afro": (0.3, 1.0),
    "coily_short": (0.0, 0.45),
    "braids": (0.5, 1.0),
    "receding": (0.0, 0.5),
    "bald": (0.0, 0.5),
}
BALD_STYLES = ("receding", "bald")
RECEDING_FROM, BALD_FROM = 0.42, 0.72  # effective baldness thresholds


def resolve_hair_style(style: str, hair_length: float, baldness: float = 0.0) -> str:
    """The style actually drawn for an identity's style choice, the hair length and baldness."""
    if baldness >= BALD_FROM:
        return "bald"
    if baldness >= RECEDING_FROM and hair_length <= HAIR_LENGTH_RANGE["receding"][1]:
        return "receding"
    candidates = [s for s in HAIR_STYLES if s not in BALD_STYLES]
    if style in BALD_STYLES:
        style = "crew" if style == "receding" else "buzz"
    lo, hi = HAIR_LENGTH_RANGE[style]
    if lo <= hair_length <= hi:
        return style
    i = HAIR_STYLES.index(style)
    allowed = [HAIR_STYLES.index(s) for s in candidates if HAIR_LENGTH_RANGE[s][0] <= hair_length <= HAIR_LENGTH_RANGE[s][1]]
    best = min(allowed, key=lambda j: (abs(j - i), j))
    return HAIR_STYLES[best]


@dataclass
class EyeGeom:
    ew: float  # half width
    eh: float  # half height of the upper arc
    ex: float  # centre offset from the midline
    tilt: float  # radians, outer corner up when positive


@dataclass(frozen=True)
class Affine:
    """x' = a x + b y + c, y' = d x + e y + f (the map from a part's local frame to the design square)."""

    a: float
    b: float
    c: float
    d: float
    e: float
    f: float

    def __call__(self, x: float, y: float) -> tuple[float, float]:
        return (self.a * x + self.b * y + self.c, self.d * x + self.e * y + self.f)


class FaceModel:
    """Derived geometry + palette for one FaceParams; cheap to query many scenes from."""

    def __init__(self, p: FaceParams) -> None:
        self.p = p
        fem, age = p.femininity, p.age
        self.fem, self.age = fem, age
        masc = 1.0 - fem
        self.masc = masc
        child = 1.0 - smooth(0.04, 0.3, age)
        senior = smooth(0.55, 1.0, age)
        self.child, self.senior = child, senior
        self.grey = clip01(p.greying * smooth(0.18, 0.45, age))
        self.lines = clip01(p.age_lines * smooth(0.2, 0.5, age) + 0.35 * senior * smooth(0.3, 0.6, p.age_lines))
        self.bald = clip01(p.baldness * smooth(0.25, 0.5, age))
        self.pal: Palette = palette_for(
            p.skin_tone, p.hair_colour, self.grey, p.eye_colour, p.background_hue, p.shirt_hue, fem, smooth(0.7, 1.0, age)
        )
        self.jit = p.identity_jitter - 0.5

        # --- head: wide ranges so shape params are visible --------------------------------
        self.y_chin = 382.0 + 10.0 * (p.size - 0.5)
        hh = 270.0 * (0.88 + 0.24 * p.face_length) * (1.0 - 0.09 * child) * (1.0 + 0.03 * masc)
        hw = 101.0 * (0.84 + 0.32 * p.head_width) * (1.0 + 0.05 * child) * (1.0 + 0.03 * (masc - 0.5))
        self.hh, self.hw = hh, hw
        self.y_top = self.y_chin - hh
        self.cy_cran = self.y_top + hh * 0.40
        self.ry_cran = hh * 0.40
        self.y_eye = self.y_top + hh * (0.50 + 0.06 * child)
        jaw = clip01(0.6 * p.jaw_width + 0.4 * masc)
        chin = clip01((0.62 * p.chin_shape + 0.38 * masc) * (1 - 0.6 * child))
        cheek = clip01(p.cheek_fullness + 0.3 * child)
        self.jaw, self.chin, self.cheek = jaw, chin, cheek
        jw = hw * (0.52 + 0.42 * jaw + (0.14 + 0.1 * cheek) * child)  # a child's face is round
        chw = hw * (0.10 + 0.32 * chin + 0.1 * child)
        y_jaw = self.y_chin - hh * (0.22 - 0.07 * jaw + 0.04 * child)
        cw = hw * (0.94 + 0.10 * cheek)
        y_cheek = self.y_eye + hh * 0.11
        a50 = math.radians(50)
        right: list[Pt] = [
            (hw * math.sin(a50), self.cy_cran - self.ry_cran * math.cos(a50)),
            (hw * 0.995, self.cy_cran - self.ry_cran * 0.10),
            (cw, y_cheek),
            (jw, y_jaw),
            (chw, self.y_chin - hh * (0.02 + 0.014 * chin)),
        ]
        pts: list[Pt] = [(CX, self.y_top)] + [(CX + x, y) for x, y in right] + [(CX, self.y_chin)]
        pts += [(CX - x, y) for x, y in reversed(right)]
        self.head_pts = pts
        self.head = spline(pts, closed=True, tension=1.0)
        samp = sample_spline(pts, closed=True, per_seg=10)
        rs = samp[samp[:, 0] >= CX - 0.01]
        order = np.argsort(rs[:, 1])
        self._edge_y = rs[order, 1]
        self._edge_x = rs[order, 0] - CX

        # --- features -----------------------------------------------------------------
        ew = (14.5 + 8.5 * p.eye_size) * (1.0 + 0.22 * child)
        eh = ew * (0.80 - 0.32 * p.eye_shape + 0.08 * child)
        ex = hw * (0.34 + 0.16 * p.eye_spacing) + 0.22 * ew
        ex = min(ex, self.half_width(self.y_eye) - ew * 1.22 - 6.0)
        ex = max(ex, ew + 9.0)
        # the animated parts' own shapes depend only on a few sizes, snapped to GRID so their
        # pre-drawn pictures survive refinements that move them less than that
        ew, eh = _snap(ew), _snap(eh)
        self.eye = EyeGeom(ew, eh, ex, (p.eye_tilt - 0.5) * 0.36)
        self.y_nose = self.y_eye + (self.y_chin - self.y_eye) * (0.36 + 0.16 * p.nose_length - 0.05 * child)
        self.y_mouth = self.y_nose + (self.y_chin - self.y_nose) * (0.37 + 0.04 * child)
        self.nose_w = (7.0 + 12.0 * p.nose_width) * (1.0 - 0.25 * child) * (1.0 + 0.08 * masc)
        # mouth geometry comes only from mouth params and traits (the mouth part is placed, not rebuilt)
        self.mw = _snap((18.0 + 16.0 * p.mouth_width) * (1.0 - 0.12 * child))
        lip = clip01(0.55 * p.lip_fullness + 0.45 * fem)
        self.ul = _snap(3.0 + 6.0 * lip)
        self.ll = _snap(4.5 + 8.0 * lip)
        self.brow_t = (3.0 + 7.0 * clip01(0.55 * p.brow_thickness + 0.45 * masc)) * (1 - 0.2 * child)
        self.brow_arch = 11.0 * clip01(0.55 * p.brow_arch + 0.45 * fem)
        self.lash = round(smooth(0.3, 0.85, 0.35 * p.eyelashes + 0.65 * fem) * 16) / 16
        self.ear = 0.72 + 0.5 * p.ear_size + 0.1 * senior

        # --- body ---------------------------------------------------------------------
        self.neck_w = hw * (0.38 + 0.22 * p.neck_width + 0.08 * masc) * (1 - 0.18 * child)
        self.sh_w = 200.0 * (0.74 + 0.22 * p.size + 0.1 * p.neck_width + 0.08 * masc) * (1 - 0.22 * child)
        self.y_sh = self.y_chin + 48.0 - 10.0 * child

        # --- hair and extras ----------------------------------------------------------
        self.style = resolve_hair_style(p.category("hair_style"), p.hair_length, self.bald)
        self.vol = 4.0 + 20.0 * p.hair_volume
        fh = p.facial_hair if p.facial_hair >= 0.15 else 0.0
        self.beard_amt = fh * (1 - smooth(0.25, 0.5, fem)) * smooth(0.12, 0.22, age)
        self.beard_style = p.category("facial_hair_style")

    # -- geometry helpers -------------------------------------------------------------
    def half_width(self, y: float) -> float:
        """Half width of the face outline at height y (for attaching ears, hair, beard)."""
        return float(np.interp(y, self._edge_y, self._edge_x))

    def eye_affine(self, side: int) -> Affine:
        """Local eye coords (x outward from the nose, y down) -> design coords."""
        g = self.eye
        c, s = math.cos(g.tilt), math.sin(g.tilt)
        return Affine(side * c, side * s, CX + side * g.ex, -s, c, self.y_eye)

    def eye_map(self, side: int):
        return self.eye_affine(side)

    def mouth_key(self) -> tuple:
        """Everything ``mouth_shapes`` reads: equal keys draw identical mouths."""
        pal = self.pal
        return (self.mw, self.ul, self.ll, pal.lip, pal.lip_dark, pal.lip_light, pal.lip_line, pal.mouth_in, pal.skin_line)

    def eye_key(self) -> tuple:
        """Everything ``eye_shapes`` reads: equal keys draw identical eyes."""
        pal, g = self.pal, self.eye
        return (g.ew, g.eh, self.lash, pal.iris, pal.iris_dark, pal.iris_light, pal.ink, pal.skin, pal.skin_shadow, pal.skin_line)

    def mouth_affine(self) -> Affine:
        return Affine(1.0, 0.0, CX, 0.0, 1.0, self.y_mouth)

    def cran(self, ang: float, extra: float, extra_top: float | None = None) -> Pt:
        """A point on the cranium ellipse (ang 0 = top, +90 = right side), pushed out."""
        et = extra if extra_top is None else extra_top
        a = math.radians(ang)
        ex = extra + (et - extra) * max(0.0, math.cos(a))
        return (CX + (self.hw + ex) * math.sin(a), self.cy_cran - (self.ry_cran + ex) * math.cos(a))

    def mouth_box(self) -> tuple[float, float, float, float]:
        return (CX - self.mw * 1.2 - 10, self.y_mouth - self.ul - 12, CX + self.mw * 1.2 + 10, self.y_mouth + 30 + self.ll + 8)

    def eye_box(self) -> tuple[float, float, float, float]:
        g = self.eye
        rx = g.ex + g.ew * 1.6 + 4
        return (CX - rx, self.y_eye - g.eh * 1.7 - 10, CX + rx, self.y_eye + g.eh * 1.6 + 10)

    # -- scene ------------------------------------------------------------------------
    def scene(self, mouth: float = 0.0, blink: float = 0.0, viseme: str = "A") -> Scene:
        """The whole face as one scene (SVG, one-shot PNG); parts in paint order."""
        mouth, blink = clip01(mouth), clip01(blink)
        sc = Scene(background=self.pal.bg)
        for name in PARTS:
            sc.part = name
            if name == "mouth":
                fn = self.mouth_affine()
                for s in self.mouth_shapes(viseme if mouth > 0 else "rest", mouth):
                    sc.shapes.append(_mapped(s, fn, name))
            elif name == "eyes":
                for side in (-1, 1):
                    fn = self.eye_affine(side)
                    for s in self.eye_shapes(blink, side):
                        sc.shapes.append(_mapped(s, fn, name))
            else:
                self.draw_part(name, sc)
        sc.mouth_box = self.mouth_box()
        sc.eye_box = self.eye_box()
        sc.part = ""
        return sc

    def draw_part(self, name: str, sc: Scene) -> None:
        from . import render_hair

        sc.part = name
        fn = {
            "background": self._background,
            "hair_back": lambda s: render_hair.hair_back(self, s),
            "body": self._body,
            "ears": self._ears,
            "head": self._head,
            "details": self._details,
            "facial_hair": lambda s: render_hair.beard(self, s),
            "moustache": lambda s: render_hair.moustache(self, s),
            "brows": self._brows,
            "hair_front": lambda s: render_hair.hair_front(self, s),
            "glasses": self._glasses,
        }[name]
        fn(sc)

    def part_shapes(self, name: str) -> list[Shape]:
        sc = Scene(background=self.pal.bg)
        self.draw_part(name, sc)
        return sc.shapes

    # -- layers -----------------------------------------------------------------------
    def _background(self, sc: Scene) -> None:
        sc.add(circle(CX, 248, 222), self.pal.bg_light)

    def _body(self, sc: Scene) -> None:
        pal, nw, sw, ys = self.pal, self.neck_w, self.sh_w, self.y_sh
        torso = (
            Path()
            .M(CX - sw - 34, 540)
            .L(CX - sw - 8, ys + 84)
            .C(CX - sw + 2, ys + 22, CX - sw * 0.6, ys + 2, CX - nw - 16, ys)
            .L(CX + nw + 16, ys)
            .C(CX + sw * 0.6, ys + 2, CX + sw - 2, ys + 22, CX + sw + 8, ys + 84)
            .L(CX + sw + 34, 540)
            .Z()
        )
        sc.add(torso, pal.shirt)
        # light from the upper left: the right shoulder and the arm's turn are in shadow
        sc.add(torso.translated(-16, 5), pal.shirt_shadow, clip=torso)
        sc.add(torso.translated(-28, 12), pal.shirt, clip=torso)
        sc.add(ellipse(CX - sw * 0.62, ys + 40, sw * 0.22, 14), pal.shirt_light, opacity=0.9, clip=torso)
        for side in (-1, 1):
            sc.add(
                Path().M(CX + side * sw * 0.6, 530).Q(CX + side * sw * 0.64, ys + 98, CX + side * sw * 0.72, ys + 72),
                stroke=pal.shirt_shadow,
                width=LINE,
                opacity=0.8,
            )
        y_top = self.y_chin - 64
        neckline = int(self.p.shirt_hue * 5.0 * 3.0) % 3  # crew / v-neck / collar, an identity detail
        y_col = ys + 28 - 4 * self.child
        neck = (
            Path()
            .M(CX - nw, y_top)
            .L(CX + nw, y_top)
            .C(CX + nw - 1, ys - 30, CX + nw + 2, ys - 8, CX + nw + 18, ys + 2)
            .L(CX - nw - 18, ys + 2)
            .C(CX - nw - 2, ys - 8, CX - nw + 1, ys - 30, CX - nw, y_top)
            .Z()
        )
        if neckline == 1:
            opening = Path().M(CX - nw - 18, ys + 1).L(CX, ys + 46 - 8 * self.child).L(CX + nw + 18, ys + 1).Z()
        else:
            opening = (
                Path().M(CX - nw - 18, ys + 1).C(CX - nw * 0.6, y_col + 6, CX + nw * 0.6, y_col + 6, CX + nw + 18, ys + 1).Z()
            )
        sc.add(opening, pal.shirt_shadow, stroke=pal.shirt_shadow, width=15.0)
        sc.add(neck, pal.skin_shadow)
        sc.add(opening, pal.skin_shadow)
        # the jaw's cast shadow on the neck: a hard-edged darker tone
        sc.add(self.head.translated(4, 18), pal.skin_deep, clip=neck)
        if neckline == 2:
            for side in (-1, 1):
                collar = (
                    Path()
                    .M(CX + side * (nw + 20), ys - 6)
                    .L(CX + side * 4, ys + 34)
                    .L(CX + side * (nw + 4), ys + 44)
                    .L(CX + side * (nw + 34), ys + 8)
                    .Z()
                )
                sc.add(collar, pal.shirt_light, stroke=pal.shirt_shadow, width=LINE_FINE)

    def _ears(self, sc: Scene) -> None:
        pal = self.pal
        y0 = self.y_eye - 8
        y1 = self.y_nose + 4 * self.ear
        eh = (y1 - y0) / 2 * self.ear
        ecy = (y0 + y1) / 2
        ew = 13.0 * self.ear
        for side in (-1, 1):
            x = CX + side * (self.half_width(ecy) - 5)
            outer = (
                Path()
                .M(x, ecy - eh * 0.95)
                .C(
                    x + side * ew * 1.25,
                    ecy - eh * 1.05,
                    x + side * ew * 1.45,
                    ecy + eh * 0.05,
                    x + side * ew * 0.95,
                    ecy + eh * 0.62,
                )
                .C(x + side * ew * 0.6, ecy + eh * 1.02, x + side * ew * 0.05, ecy + eh * 1.04, x - side * 2, ecy + eh * 0.72)
                .Z()
            )
            sc.add(outer, pal.skin)
            inner = (
                Path()
                .M(x + side * ew * 0.2, ecy - eh * 0.62)
                .C(
                    x + side * ew * 0.95,
                    ecy - eh * 0.7,
                    x + side * ew * 1.02,
                    ecy + eh * 0.02,
                    x + side * ew * 0.62,
                    ecy + eh * 0.42,
                )
                .C(
                    x + side * ew * 0.42,
                    ecy + eh * 0.18,
                    x + side * ew * 0.5,
                    ecy - eh * 0.32,
                    x + side * ew * 0.2,
                    ecy - eh * 0.62,
                )
                .Z()
            )
            sc.add(inner, pal.skin_shadow)
            sc.add(outer.translated(side * 3, 0), pal.skin_shadow, opacity=0.6, clip=outer)

    def _head(self, sc: Scene) -> None:
        pal, head = self.pal, self.head
        sc.add(head, pal.skin_shadow)
        # the lit area: the head outline shifted toward the light, cut by the outline, leaves a
        # crisp crescent of shadow down the far side and under the jaw
        sc.add(head.scaled(0.985, 0.985, CX, self.y_top).translated(-10, -8), pal.skin, clip=head)
        # a lit band down the near cheek: the outline XOR itself shifted away from the light
        band = Path(list(head.ops)).extend(head.translated(7, 2))
        zone = ellipse(CX - self.hw * 0.8, (self.y_eye + self.y_mouth) / 2, self.hw * 0.5, (self.y_mouth - self.y_eye) * 0.75)
        sc.add(band, pal.skin_light, clip=zone, evenodd=True)

    def _details(self, sc: Scene) -> None:
        self._age_lines(sc)
        self._nose(sc)
        self._cheeks(sc)

    def _age_lines(self, sc: Scene) -> None:
        a = self.lines
        pal, g = self.pal, self.eye
        if a > 0.02:
            yb = self.y_eye - g.eh - 26 - self.brow_arch
            for i, (dy, wf) in enumerate(((0, 0.42), (-11, 0.48), (-22, 0.36))):
                if i == 2 and a < 0.5:
                    continue
                w = self.hw * wf
                sc.add(
                    Path().M(CX - w, yb + dy + 2).Q(CX, yb + dy - 5, CX + w, yb + dy + 2),
                    stroke=pal.skin_line,
                    width=LINE_FINE,
                    opacity=0.75 * a,
                )
            for side in (-1, 1):
                fn = self.eye_affine(side)
                for ang in (-0.45, 0.0, 0.45):
                    x0, y0 = g.ew + 8, 0.0
                    p = Path().M(x0, y0 + ang * 4).L(x0 + 9 * math.cos(ang), y0 + ang * 4 + 9 * math.sin(ang))
                    sc.add(p.map(fn), stroke=pal.skin_line, width=LINE_FINE, opacity=0.8 * a)
                bag = Path().M(-g.ew * 0.6, g.eh * 1.05 + 6).Q(0, g.eh * 1.05 + 12, g.ew * 0.7, g.eh * 1.05 + 5)
                sc.add(bag.map(fn), stroke=pal.skin_line, width=LINE_FINE, opacity=0.65 * a)
        # nasolabial folds: faint on every adult, stronger with age
        k = (0.25 + 0.75 * a) * (1 - self.child)
        if k > 0.02:
            for side in (-1, 1):
                x0 = CX + side * (self.nose_w + 7)
                x1 = CX + side * (self.mw + 10)
                p = (
                    Path()
                    .M(x0, self.y_nose - 6)
                    .C(x0 + side * 10, self.y_nose + 2, x1 + side * 4, self.y_mouth - 10, x1, self.y_mouth + 6)
                )
                sc.add(p, stroke=pal.skin_line, width=LINE_FINE, opacity=0.6 * k)

    def _nose(self, sc: Scene) -> None:
        pal = self.pal
        nw, yn = self.nose_w, self.y_nose
        top = self.y_eye + (yn - self.y_eye) * 0.35
        # shadow on the right flank of the bridge and under the tip: drawn shapes
        flank = (
            Path()
            .M(CX + 4, top)
            .C(CX + 7, top + 22, CX + nw * 0.8, yn - 20, CX + nw * 1.0, yn - 6)
            .C(CX + nw * 0.5, yn - 10, CX + 2, yn - 28, CX - 1, top + 6)
            .Z()
        )
        sc.add(flank, pal.skin_shadow)
        under = Path().M(CX - nw * 0.9, yn - 1).C(CX - nw * 0.4, yn + 7, CX + nw * 0.4, yn + 7, CX + nw * 0.9, yn - 1).Z()
        sc.add(under, pal.skin_shadow)
        sc.add(ellipse(CX - 2, yn - 8, nw * 0.45, 4.5), pal.skin_light)
        base = (
            Path()
            .M(CX - nw, yn - 8)
            .C(CX - nw - 4, yn - 1, CX - nw * 0.6, yn + 2, CX - nw * 0.3, yn)
            .M(CX + nw * 0.3, yn)
            .C(CX + nw * 0.6, yn + 2, CX + nw + 4, yn - 1, CX + nw, yn - 8)
        )
        sc.add(base, stroke=pal.skin_line, width=LINE_FINE + 0.6)

    def _cheeks(self, sc: Scene) -> None:
        pal, g = self.pal, self.eye
        a = (0.2 + 0.16 * self.fem + 0.18 * self.child) * (0.6 if pal.tone >= 4 else 1.0)
        for side in (-1, 1):
            sc.add(ellipse(CX + side * (g.ex + 6), self.y_nose + 4, 16, 9), pal.blush, opacity=a)
        if self.p.freckles > 0.7:
            n = int(5 + 9 * (self.p.freckles - 0.7) / 0.3)
            col = shade(pal.skin_shadow, -0.1, 0.12)
            for side in (-1, 1):
                for i in range(n):
                    r = 5.2 * math.sqrt(i + 0.6)
                    th = i * 2.39996 + 0.7 * side
                    x = CX + side * (g.ex - 6) + r * math.cos(th) * 1.5
                    y = self.y_eye + g.eh + 17 + r * math.sin(th) * 0.75
                    sc.add(circle(x, y, 1.6 + 0.3 * (i % 3)), col, opacity=0.75)

    # -- mouth (local frame: origin at the mouth's centre, y down) ---------------------
    def mouth_shapes(self, viseme: str, openness: float) -> list[Shape]:
        """The lips, teeth and tongue for one mouth shape at one openness (0..1)."""
        pal = self.pal
        sc = Scene()
        sc.part = "mouth"
        o = clip01(openness)
        if viseme == "rest" or (o <= 0.0 and viseme != "F"):
            viseme, o = "rest", 0.0
        mw, ul, ll = self.mw, self.ul, self.ll
        size_k = 0.8 + 0.4 * mw / 32.0
        # per viseme: width factor, opening height, corner height, roundness, teeth
        if viseme == "A":
            wf, h, cy, rnd = 0.9 - 0.06 * o, (2.0 + 26.0 * o) * size_k, -1.0, 0.25
        elif viseme == "E":
            wf, h, cy, rnd = 1.1 + 0.04 * o, (3.0 + 10.0 * o) * size_k, -2.0, 0.0
        elif viseme == "O":
            wf, h, cy, rnd = 0.56 - 0.08 * o, (6.0 + 17.0 * o) * size_k, 0.5, 1.0
        elif viseme == "F":
            wf, h, cy, rnd = 0.96, 0.0, -1.0, 0.0
        else:
            wf, h, cy, rnd = 1.0, 0.0, -2.2, 0.0
        w = mw * wf
        u = h * (0.22 if viseme != "O" else 0.38)  # the upper lip rises less than the jaw drops
        d = h - u
        ulw = ul * (1.0 if viseme != "O" else 1.35)
        llw = ll * (1.0 if viseme != "O" else 1.2) * (0.8 if viseme == "F" else 1.0)
        kx = w * (0.5 + 0.42 * rnd)
        L, R = (-w, cy), (w, cy)
        up_edge = Path().M(*L).C(-kx, -u * 1.33 + 0.6, kx, -u * 1.33 + 0.6, *R)
        low_back = Path().C(kx, d * 1.33 + 0.6, -kx, d * 1.33 + 0.6, *L)
        if viseme == "O":  # pursed: a rounded upper lip, no cupid's bow peaks
            ul_top = Path().M(*L).C(-w * 0.9, -u - ulw * 1.2, w * 0.9, -u - ulw * 1.2, *R)
        else:
            ul_top = spline(
                [L, (-w * 0.34, -u - ulw - 0.8), (0, -u - ulw + 1.8), (w * 0.34, -u - ulw - 0.8), R],
                closed=False,
                tension=0.9,
            )
        upper_lip = Path(list(ul_top.ops)).C(kx, -u * 1.33 + 0.6, -kx, -u * 1.33 + 0.6, *L).Z()
        lift = 3.0 if viseme == "F" else 0.0  # F/V: the lower lip rolls up under the teeth
        yb = d + llw - lift
        lower_lip = (
            Path()
            .M(*L)
            .C(-kx, d * 1.33 + 0.6 - lift, kx, d * 1.33 + 0.6 - lift, *R)
            .C(w * 0.78, yb + 2.5, -w * 0.78, yb + 2.5, *L)
            .Z()
        )
        if h > 0.6:
            inside = Path(list(up_edge.ops)).extend(low_back).Z()
            sc.add(inside, pal.mouth_in)
            if viseme in ("A", "O") and h > 8:
                sc.add(ellipse(0, d * 0.95, w * (0.62 if viseme == "A" else 0.5), max(2.5, d * 0.42)), pal.tongue, clip=inside)
                sc.add(ellipse(0, d * 1.05 + 2, w * 0.4, max(1.5, d * 0.22)), pal.tongue_shadow, clip=inside)
            teeth_h = {"A": min(6.0, 1.5 + h * 0.25), "E": min(5.5, 1.5 + h * 0.4), "O": min(3.5, h * 0.2)}[viseme]
            sc.add(rect(-w * 0.78, -u - 8, w * 0.78, -u + teeth_h), pal.teeth, clip=inside)
            sc.add(rect(-w * 0.78, -u + teeth_h - 1.2, w * 0.78, -u + teeth_h), pal.teeth_shadow, clip=inside)
            if viseme == "E":
                lt = min(4.5, 1.0 + h * 0.3)
                sc.add(rect(-w * 0.7, d - lt, w * 0.7, d + 8), pal.teeth, clip=inside)
        sc.add(lower_lip, pal.lip)
        if viseme == "F":  # the upper incisors rest on the lower lip, under the upper lip
            sc.add(round_rect(-w * 0.44, -u - 4, w * 0.44, 4.6, 2.0), pal.teeth)
            sc.add(Path().M(0, -1).L(0, 4.2), stroke=pal.teeth_shadow, width=1.2)
        sc.add(upper_lip, pal.lip_dark)
        # lower-lip highlight: a small crisp crescent, not a blur
        hl = ellipse(-w * 0.16, d + llw * 0.42 - lift, w * 0.3, max(1.2, llw * 0.2))
        sc.add(hl, pal.lip_light, clip=lower_lip)
        if h > 0.6:
            sc.add(Path(list(up_edge.ops)).extend(low_back).Z(), stroke=pal.lip_line, width=LINE_FINE)
        else:
            parting = Path().M(*L).C(-w * 0.45, 2.0, w * 0.45, 2.0, *R)
            if viseme != "F":
                sc.add(parting, stroke=pal.lip_line, width=LINE * 0.75)
        for side in (-1, 1):
            x = side * (w + 1.5)
            sc.add(
                Path().M(x, cy - 2.5).Q(x + side * 2.5, cy, x + side * 1.0, cy + 2.8),
                stroke=pal.skin_line,
                width=LINE_FINE,
                opacity=0.8,
            )
        return sc.shapes

    # -- eyes (local frame: x outward from the nose, y down) ---------------------------
    def _eye_paths(self, b: float):
        g = self.eye
        ew, eh = g.ew, g.eh
        lo = eh * 0.82
        up = ((-ew * 0.5, -eh * 1.33), (ew * 0.55, -eh * 1.28))
        low = ((ew * 0.5, lo * 1.25), (-ew * 0.5, lo * 1.3))
        inner, outer = (-ew, 0.0), (ew, -0.5)
        eye = Path().M(*inner).C(*up[0], *up[1], *outer).C(*low[0], *low[1], *inner).Z()
        # the lid edge slides from the upper arc to the lower one (I->O order)
        lr = (low[1], low[0])
        t = b * b * (3 - 2 * b)
        e1 = (lerp(up[0][0], lr[0][0], t), lerp(up[0][1], lr[0][1], t) + 2.5 * math.sin(math.pi * t))
        e2 = (lerp(up[1][0], lr[1][0], t), lerp(up[1][1], lr[1][1], t) + 2.5 * math.sin(math.pi * t))
        edge = Path().M(*inner).C(*e1, *e2, *outer)
        lid = Path().M(*inner).C(*up[0], *up[1], *outer).C(*e2, *e1, *inner).Z()
        return eye, edge, lid, (inner, e1, e2, outer)

    def eye_shapes(self, blink: float, side: int) -> list[Shape]:
        """One eye in its local frame; ``side`` only moves the catch-lights (the light is fixed)."""
        pal, g = self.pal, self.eye
        sc = Scene()
        sc.part = "eyes"
        blink = clip01(blink)
        eye, edge, lid, ctrl = self._eye_paths(blink)
        eye0 = self._eye_paths(0.0)[0]
        ir = g.ew * 0.56 + g.eh * 0.26
        crease = Path().M(-g.ew * 0.75, -g.eh * 1.05 - 5).Q(0, -g.eh * 1.6 - 7, g.ew * 0.85, -g.eh * 1.1 - 5)
        sc.add(crease, stroke=pal.skin_line, width=LINE_FINE, opacity=0.7)
        sc.add(eye, pal.sclera)
        icx, icy = -0.04 * g.ew, g.eh * 0.1
        sc.add(circle(icx, icy, ir), pal.iris_dark, clip=eye)
        sc.add(circle(icx, icy, ir * 0.8), pal.iris, clip=eye)
        sc.add(
            Path()
            .M(icx - ir * 0.62, icy + ir * 0.3)
            .Q(icx, icy + ir * 0.95, icx + ir * 0.62, icy + ir * 0.3)
            .Q(icx, icy + ir * 0.55, icx - ir * 0.62, icy + ir * 0.3)
            .Z(),
            pal.iris_light,
            clip=eye,
        )
        sc.add(circle(icx, icy, ir * 0.46), pal.ink, clip=eye)
        # catch-lights stay on the light's side (upper left of the picture) for both eyes
        lx = -side * ir * 0.34
        sc.add(circle(icx + lx, icy - ir * 0.36, ir * 0.27), (1, 1, 1), clip=eye)
        sc.add(circle(icx - lx * 0.9, icy + ir * 0.3, ir * 0.1), (1, 1, 1), opacity=0.85, clip=eye)
        # the upper lid's shadow on the eyeball: a flat band
        sc.add(eye0.translated(0, -g.eh * 0.72), mix(pal.sclera, pal.skin_shadow, 0.5), opacity=0.45, clip=eye)
        if blink > 0.01:
            sc.add(lid, pal.skin)
            sc.add(lid.translated(0, -3), pal.skin_shadow, clip=lid)
        sc.add(edge, stroke=pal.ink, width=LINE + 0.4 + 0.8 * self.lash)
        low = Path().M(g.ew * 0.85, 1.5).Q(0, g.eh * 1.05 + 1.5, -g.ew * 0.7, g.eh * 0.3)
        sc.add(low, stroke=pal.skin_line, width=LINE_FINE, opacity=0.8 * (1 - blink))
        inner, e1, e2, outer = ctrl
        fl = 3.0 + 6.0 * self.lash
        flick = Path().M(outer[0] - 3, outer[1]).L(outer[0] + fl * 0.9, outer[1] - fl * (0.55 - blink * 0.7))
        sc.add(flick, stroke=pal.ink, width=LINE)
        if self.lash > 0.05:
            for t in (0.5, 0.66, 0.8):
                mt = 1 - t
                px = mt**3 * inner[0] + 3 * mt**2 * t * e1[0] + 3 * mt * t**2 * e2[0] + t**3 * outer[0]
                py = mt**3 * inner[1] + 3 * mt**2 * t * e1[1] + 3 * mt * t**2 * e2[1] + t**3 * outer[1]
                ln = 6.0 * self.lash
                dy = -1.0 + 1.6 * blink
                sc.add(
                    Path().M(px, py).L(px + ln * (0.2 + t * 0.55), py + ln * dy),
                    stroke=pal.ink,
                    width=LINE_FINE,
                    opacity=min(1.0, 0.4 + self.lash),
                )
        return sc.shapes

    def _brows(self, sc: Scene) -> None:
        pal, g = self.pal, self.eye
        t, ah = self.brow_t, self.brow_arch
        y0 = -(g.eh * 1.25 + 11 + 0.6 * ah)
        c = [(-g.ew * 1.05, y0 + 1.5), (-g.ew * 0.25, y0 - ah * 0.75), (g.ew * 0.55, y0 - ah), (g.ew * 1.3, y0 - ah * 0.25 + 4)]
        th = [t, t * 0.95, t * 0.72, t * 0.3]
        upper = [(x, y - w / 2) for (x, y), w in zip(c, th)]
        lower = [(x, y + w / 2) for (x, y), w in zip(reversed(c), reversed(th))]
        brow = spline(upper, closed=False)
        spline(lower, closed=False, path=brow, move=False)
        brow.Z()
        for side in (-1, 1):
            sc.add(brow.map(self.eye_affine(side)), pal.brow)

    def _glasses(self, sc: Scene) -> None:
        gv = self.p.glasses
        if gv <= 0.5:
            return
        k = (gv - 0.5) / 0.5
        shape = min(2, int(k * 3))
        g = self.eye
        frame = self.pal.frame_colours[min(2, int(self.p.identity_jitter * 3))]
        lw = 3.8 if shape != 2 else 3.2
        lens_w = max(g.ew * 1.45, 22)
        lens_h = max(g.eh * 1.55 + 8, 20)
        yc = self.y_eye + 2
        lenses = []
        for side in (-1, 1):
            xc = CX + side * g.ex
            if shape == 0:
                r = max(lens_w, lens_h) * 0.86
                p = circle(xc, yc, r)
            elif shape == 1:
                p = round_rect(xc - lens_w, yc - lens_h * 0.85, xc + lens_w, yc + lens_h * 0.85, 8)
            else:
                p = round_rect(xc - lens_w, yc - lens_h * 0.8, xc + lens_w, yc + lens_h * 0.9, 12)
            lenses.append(p)
        for p in lenses:
            sc.add(p, (1, 1, 1), opacity=0.16)
            b = p.bounds()
            glint = Path().M(b[0] + 6, b[1] + 10).L(b[0] + 14, b[1] + 4).L(b[0] + 18, b[1] + 4).L(b[0] + 8, b[1] + 14).Z()
            sc.add(glint, (1, 1, 1), opacity=0.45, clip=p)
        for p in lenses:
            sc.add(p, stroke=frame, width=lw)
        xl = lenses[0].bounds()[2]
        xr = lenses[1].bounds()[0]
        sc.add(Path().M(xl, yc - 4).Q(CX, yc - 10, xr, yc - 4), stroke=frame, width=lw)
        for side, p in zip((-1, 1), lenses):
            b = p.bounds()
            xe = b[2] if side == 1 else b[0]
            xf = CX + side * (self.half_width(yc) + 2)
            if abs(xf - CX) > abs(xe - CX):
                sc.add(Path().M(xe, yc - 6).L(xf, yc - 9), stroke=frame, width=lw)
        if shape == 2:
            for p in lenses:
                b = p.bounds()
                sc.add(Path().M(b[0] + 4, b[1] + 1).L(b[2] - 4, b[1] + 1), stroke=frame, width=6.0)


def _mapped(s: Shape, fn: Affine, part: str) -> Shape:
    return Shape(
        s.path.map(fn),
        s.fill,
        s.opacity,
        s.stroke,
        s.stroke_width,
        s.clip.map(fn) if s.clip is not None else None,
        s.evenodd,
        part,
    )
