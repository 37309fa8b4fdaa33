"""The art: FaceParams -> a vector Scene (head-and-shoulders, flat shaded).

Geometry is computed once per face (``FaceModel``); ``scene(mouth, blink)`` then lays the
shapes out in paint order. Trait params (femininity, age) are blended into the shape
params here rather than trusted to the decoder alone, so a face read only from traits
(all shape params at 0.5) still reads as masculine/feminine, child/senior, and the
androgynous middle is a true interpolation, never a switch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .face import HAIR_STYLES, FaceParams
from .render_palette import Palette, hexc, mix, shade
from .render_scene import Path, Pt, Scene, circle, ellipse, round_rect, sample_spline, spline

CX = 256.0


def clip01(v: float) -> float:
    return max(0.0, min(1.0, v))


def smooth(e0: float, e1: float, x: float) -> float:
    t = clip01((x - e0) / (e1 - e0))
    return t * t * (3 - 2 * t)


def lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


# Which hair_length values each style is drawn at; outside its range the nearest allowed
# style (by position in HAIR_STYLES, so the identity's "taste" is kept) is used instead.
HAIR_LENGTH_RANGE: dict[str, tuple[float, float]] = {
    "buzz": (0.0, 0.22),
    "short": (0.0, 0.45),
    "side_part": (0.12, 0.55),
    "curly_short": (0.1, 0.55),
    "quiff": (0.1, 0.5),
    "bob": (0.4, 0.75),
    "long_straight": (0.6, 1.0),
    "long_wavy": (0.6, 1.0),
    "bun": (0.5, 1.0),
    "ponytail": (0.5, 1.0),
}


def resolve_hair_style(style: str, hair_length: float) -> str:
    lo, hi = HAIR_LENGTH_RANGE[style]
    if lo <= hair_length <= hi:
        return style
    i = HAIR_STYLES.index(style)
    allowed = [j for j, s in enumerate(HAIR_STYLES) if HAIR_LENGTH_RANGE[s][0] <= hair_length <= HAIR_LENGTH_RANGE[s][1]]
    best = min(allowed, key=lambda j: (abs(j - i), j))
    return HAIR_STYLES[best]


@dataclass
class EyeGeom:
    ew: float  # half width
    eh: float  # half height of the upper arc
    ex: float  # centre offset from the midline
    tilt: float  # radians, outer corner up when positive


class FaceModel:
    """Derived geometry + palette for one FaceParams; cheap to query many scenes from."""

    def __init__(self, p: FaceParams) -> None:
        self.p = p
        fem, age = p.femininity, p.age
        self.fem, self.age = fem, age
        masc = 1.0 - fem
        child = 1.0 - smooth(0.04, 0.3, age)
        senior = smooth(0.55, 1.0, age)
        self.child, self.senior = child, senior
        self.grey = clip01(p.greying * smooth(0.18, 0.45, age))
        self.lines = clip01(p.age_lines * smooth(0.2, 0.5, age) + 0.35 * senior * smooth(0.3, 0.6, p.age_lines))
        self.bald = clip01(p.baldness * smooth(0.25, 0.5, age))
        self.pal = Palette(p.skin_tone, p.hair_colour, self.grey, p.eye_colour, p.background_hue, p.shirt_hue, fem, age)
        jit = p.identity_jitter - 0.5

        # --- head ---------------------------------------------------------------------
        self.y_chin = 374.0 + 6.0 * (p.size - 0.5)
        hh = 262.0 * (0.93 + 0.14 * p.face_length) * (1.0 - 0.1 * child) * (1.0 + 0.03 * masc)
        hw = 95.0 * (0.92 + 0.16 * p.head_width) * (1.0 + 0.05 * child) * (1.0 + 0.035 * (masc - 0.5))
        self.hh, self.hw = hh, hw
        self.y_top = self.y_chin - hh
        self.cy_cran = self.y_top + hh * 0.40
        self.ry_cran = hh * 0.40
        self.y_eye = self.y_top + hh * (0.515 + 0.06 * child)
        jaw = clip01(0.55 * p.jaw_width + 0.45 * masc)
        chin = clip01((0.6 * p.chin_shape + 0.4 * masc) * (1 - 0.6 * child))
        cheek = clip01(p.cheek_fullness + 0.3 * child)
        self.jaw, self.chin = jaw, chin
        jw = hw * (0.58 + 0.36 * jaw + 0.10 * cheek * child)
        chw = hw * (0.14 + 0.26 * chin)
        y_jaw = self.y_chin - hh * (0.19 - 0.04 * jaw + 0.05 * child)
        cw = hw * (0.97 + 0.05 * cheek)
        y_cheek = self.y_eye + hh * 0.10
        a50 = math.radians(50)
        right: list[Pt] = [
            (hw * math.sin(a50), self.cy_cran - self.ry_cran * math.cos(a50)),
            (hw * 0.995, self.cy_cran - self.ry_cran * 0.10),
            (cw, y_cheek),
            (jw, y_jaw),
            (chw, self.y_chin - hh * (0.02 + 0.012 * chin)),
        ]
        pts: list[Pt] = [(CX, self.y_top)] + [(CX + x, y) for x, y in right] + [(CX, self.y_chin)]
        pts += [(CX - x, y) for x, y in reversed(right)]
        self.head_pts = pts
        self.head = spline(pts, closed=True, tension=1.0)
        samp = sample_spline(pts, closed=True, per_seg=24)
        rs = samp[samp[:, 0] >= CX - 0.01]
        order = np.argsort(rs[:, 1])
        self._edge_y = rs[order, 1]
        self._edge_x = rs[order, 0] - CX

        # --- features -----------------------------------------------------------------
        ew = (15.0 + 5.5 * p.eye_size) * (1.0 + 0.2 * child)
        eh = ew * (0.78 - 0.28 * p.eye_shape + 0.08 * child)
        ex = hw * (0.39 + 0.10 * p.eye_spacing) + 0.15 * ew
        self.eye = EyeGeom(ew, eh, ex, (p.eye_tilt - 0.5) * 0.32)
        self.y_nose = self.y_eye + (self.y_chin - self.y_eye) * (0.40 + 0.10 * p.nose_length - 0.05 * child)
        self.y_mouth = self.y_nose + (self.y_chin - self.y_nose) * (0.37 + 0.03 * child)
        self.nose_w = (9.0 + 7.0 * p.nose_width) * (1.0 - 0.25 * child) * (1.0 + 0.08 * masc)
        self.mw = (17.0 + 12.0 * p.mouth_width) * (1.0 - 0.12 * child)
        lip = clip01(0.5 * p.lip_fullness + 0.5 * fem)
        self.ul = 2.4 + 5.0 * lip
        self.ll = 3.8 + 6.2 * lip
        self.brow_t = (3.2 + 6.0 * clip01(0.5 * p.brow_thickness + 0.5 * masc)) * (1 - 0.2 * child)
        self.brow_arch = 1.0 + 8.0 * clip01(0.5 * p.brow_arch + 0.5 * fem)
        self.lash = smooth(0.3, 0.85, 0.35 * p.eyelashes + 0.65 * fem)
        self.ear = 0.8 + 0.35 * p.ear_size + 0.12 * senior
        self.jit = jit

        # --- body ---------------------------------------------------------------------
        self.neck_w = hw * (0.42 + 0.14 * p.neck_width + 0.08 * masc) * (1 - 0.18 * child)
        self.sh_w = 196.0 * (0.78 + 0.18 * p.size + 0.08 * p.neck_width + 0.07 * masc) * (1 - 0.22 * child)
        self.y_sh = self.y_chin + 50.0 - 10.0 * child

        # --- hair and extras ----------------------------------------------------------
        self.style = resolve_hair_style(p.category("hair_style"), p.hair_length)
        self.vol = 4.0 + 20.0 * p.hair_volume
        fh = p.facial_hair if p.facial_hair >= 0.15 else 0.0
        self.beard_amt = fh * (1 - smooth(0.25, 0.5, fem)) * smooth(0.12, 0.22, age)
        self.beard_style = p.category("facial_hair_style")

    # -- geometry helpers -------------------------------------------------------------
    def half_width(self, y: float) -> float:
        """Half width of the face outline at height y (for attaching ears, hair, beard)."""
        return float(np.interp(y, self._edge_y, self._edge_x))

    def eye_map(self, side: int):
        """Local eye coords (x outward from the nose, y down) -> design coords."""
        g = self.eye
        c, s = math.cos(g.tilt), math.sin(g.tilt)
        ox, oy = CX + side * g.ex, self.y_eye

        def fn(x: float, y: float) -> tuple[float, float]:
            xr = x * c + y * s
            yr = -x * s + y * c
            return (ox + side * xr, oy + yr)

        return fn

    # -- scene ------------------------------------------------------------------------
    def scene(self, mouth: float = 0.0, blink: float = 0.0) -> Scene:
        mouth, blink = clip01(mouth), clip01(blink)
        pal = self.pal
        sc = Scene(background=pal.bg)
        self._background(sc)
        self._hair_back(sc)
        self._body(sc)
        self._ears(sc)
        self._head(sc)
        self._age_lines(sc)
        self._nose(sc)
        self._cheeks(sc)
        self._beard(sc)
        self._mouth(sc, mouth)
        self._moustache(sc)
        self._eyes(sc, blink)
        self._brows(sc)
        self._hair_front(sc)
        self._glasses(sc)
        g = self.eye
        sc.eye_box = (CX - g.ex - g.ew * 1.9, self.y_eye - g.eh * 1.6 - 8, CX + g.ex + g.ew * 1.9, self.y_eye + g.eh * 1.5 + 9)
        sc.mouth_box = (CX - self.mw - 10, self.y_mouth - self.ul - 9, CX + self.mw + 10, self.y_mouth + 24 + self.ll + 8)
        return sc

    # -- layers -----------------------------------------------------------------------
    def _background(self, sc: Scene) -> None:
        sc.add(circle(CX, 250, 214), self.pal.bg_light)

    def _body(self, sc: Scene) -> None:
        pal, nw, sw, ys = self.pal, self.neck_w, self.sh_w, self.y_sh
        torso = (
            Path()
            .M(CX - sw - 30, 530)
            .L(CX - sw - 6, ys + 80)
            .C(CX - sw + 4, ys + 20, CX - sw * 0.6, ys + 2, CX - nw - 14, ys)
            .L(CX + nw + 14, ys)
            .C(CX + sw * 0.6, ys + 2, CX + sw - 4, ys + 20, CX + sw + 6, ys + 80)
            .L(CX + sw + 30, 530)
            .Z()
        )
        sc.add(torso, pal.shirt)
        sc.add(torso.translated(-14, 4), pal.shirt_shadow, clip=torso)
        sc.add(torso.translated(-26, 10), pal.shirt, clip=torso)
        # a fold line where the arm meets the chest reads as a shoulder without outlines
        sc.add(
            Path().M(CX - sw * 0.62, 520).Q(CX - sw * 0.66, ys + 95, CX - sw * 0.72, ys + 70),
            stroke=pal.shirt_shadow,
            width=4.0,
            opacity=0.7,
        )
        sc.add(
            Path().M(CX + sw * 0.62, 520).Q(CX + sw * 0.66, ys + 95, CX + sw * 0.72, ys + 70),
            stroke=pal.shirt_shadow,
            width=4.0,
            opacity=0.7,
        )
        # neck + crew-neck opening
        y_top = self.y_chin - 60
        y_col = ys + 26 - 4 * self.child
        neck = (
            Path()
            .M(CX - nw, y_top)
            .L(CX + nw, y_top)
            .C(CX + nw - 1, ys - 30, CX + nw + 2, ys - 8, CX + nw + 16, ys + 2)
            .C(CX + nw * 0.6, y_col + 2, CX - nw * 0.6, y_col + 2, CX - nw - 16, ys + 2)
            .C(CX - nw - 2, ys - 8, CX - nw + 1, ys - 30, CX - nw, y_top)
            .Z()
        )
        collar = Path().M(CX - nw - 18, ys + 1).C(CX - nw * 0.6, y_col + 6, CX + nw * 0.6, y_col + 6, CX + nw + 18, ys + 1)
        sc.add(collar, stroke=pal.shirt_shadow, width=9.0)
        sc.add(neck, pal.skin_shadow)
        sc.add(self.head.translated(0, 12), pal.skin_deep, opacity=0.35, clip=neck)
        sc.add(collar, stroke=pal.shirt_light, width=3.0, opacity=0.6)

    def _ears(self, sc: Scene) -> None:
        if self.style in ("bob", "long_straight", "long_wavy") and self.bald < 0.62:
            return  # covered by the hair
        pal = self.pal
        y0 = self.y_eye - 6
        y1 = self.y_nose + 6 * self.ear
        eh = (y1 - y0) / 2 * self.ear
        ecy = (y0 + y1) / 2
        ew = 13.0 * self.ear
        for side in (-1, 1):
            x = CX + side * (self.half_width(ecy) - 4)
            ear = ellipse(x + side * ew * 0.55, ecy, ew, eh)
            sc.add(ear, pal.skin)
            inner = (
                Path()
                .M(x + side * ew * 0.9, ecy - eh * 0.55)
                .C(x + side * ew * 0.2, ecy - eh * 0.6, x + side * ew * 0.1, ecy + eh * 0.2, x + side * ew * 0.6, ecy + eh * 0.55)
            )
            sc.add(inner, stroke=pal.skin_deep, width=3.2, opacity=0.75)

    def _head(self, sc: Scene) -> None:
        pal, head = self.pal, self.head
        sc.add(head, pal.skin)
        # light from the upper left: a crescent of shadow along the right and the jaw
        sc.add(head, pal.skin_shadow, clip=head)
        sc.add(head.scaled(0.98, 0.985, CX, self.y_top).translated(-9, -6), pal.skin, clip=head)
        sc.add(
            ellipse(CX - self.hw * 0.5, self.y_eye + self.hh * 0.1, self.hw * 0.16, self.hh * 0.05),
            pal.skin_light,
            opacity=0.5,
            clip=head,
        )

    def _age_lines(self, sc: Scene) -> None:
        a = self.lines
        pal, g = self.pal, self.eye
        if a > 0.02:
            # forehead lines (mostly hidden under fringes, which is right)
            yb = self.y_eye - g.eh - 24 - self.brow_arch
            for i, (dy, wf) in enumerate(((0, 0.42), (-11, 0.48), (-22, 0.36))):
                if i == 2 and a < 0.5:
                    continue
                w = self.hw * wf
                sc.add(
                    Path().M(CX - w, yb + dy + 2).Q(CX, yb + dy - 5, CX + w, yb + dy + 2),
                    stroke=pal.skin_deep,
                    width=2.2,
                    opacity=0.65 * a,
                )
            for side in (-1, 1):
                fn = self.eye_map(side)
                for ang in (-0.45, 0.0, 0.45):
                    x0, y0 = g.ew + 7, 0.0
                    p = Path().M(x0, y0 + ang * 4).L(x0 + 9 * math.cos(ang), y0 + ang * 4 + 9 * math.sin(ang))
                    sc.add(p.map(fn), stroke=pal.skin_deep, width=1.9, opacity=0.7 * a)
                bag = Path().M(-g.ew * 0.6, g.eh * 1.05 + 5).Q(0, g.eh * 1.05 + 11, g.ew * 0.7, g.eh * 1.05 + 4)
                sc.add(bag.map(fn), stroke=pal.skin_deep, width=1.8, opacity=0.55 * a)
        # nasolabial folds: faint on every adult, stronger with age
        k = (0.25 + 0.75 * a) * (1 - self.child)
        if k > 0.02:
            for side in (-1, 1):
                x0 = CX + side * (self.nose_w + 6)
                x1 = CX + side * (self.mw + 9)
                p = (
                    Path()
                    .M(x0, self.y_nose - 6)
                    .C(x0 + side * 10, self.y_nose + 2, x1 + side * 4, self.y_mouth - 10, x1, self.y_mouth + 6)
                )
                sc.add(p, stroke=pal.skin_deep, width=2.2, opacity=0.55 * k)

    def _nose(self, sc: Scene) -> None:
        pal = self.pal
        nw, yn = self.nose_w, self.y_nose
        top = self.y_eye + 4
        # shadow on the right flank of the bridge
        flank = (
            Path()
            .M(CX + 3, top)
            .C(CX + 6, top + 20, CX + nw * 0.7, yn - 18, CX + nw * 0.9, yn - 6)
            .C(CX + nw * 0.5, yn - 10, CX + 2, yn - 26, CX - 1, top + 4)
            .Z()
        )
        sc.add(flank, pal.skin_shadow, opacity=0.7)
        sc.add(ellipse(CX - 2, yn - 7, nw * 0.42, 4.5), pal.skin_light, opacity=0.8)
        base = (
            Path()
            .M(CX - nw, yn - 7)
            .C(CX - nw - 3, yn - 1, CX - nw * 0.6, yn + 2, CX - nw * 0.3, yn)
            .C(CX - 3, yn + 4, CX + 3, yn + 4, CX + nw * 0.3, yn)
            .C(CX + nw * 0.6, yn + 2, CX + nw + 3, yn - 1, CX + nw, yn - 7)
        )
        sc.add(base, stroke=pal.skin_deep, width=3.0)

    def _cheeks(self, sc: Scene) -> None:
        pal, g = self.pal, self.eye
        a = (0.22 + 0.16 * self.fem + 0.18 * self.child) * (0.6 if self.p.skin_tone >= 4 / 6 else 1.0)
        for side in (-1, 1):
            sc.add(ellipse(CX + side * (g.ex + 4), self.y_nose + 2, 17, 10), pal.blush, opacity=a)
        if self.p.freckles > 0.7:
            n = int(5 + 9 * (self.p.freckles - 0.7) / 0.3)
            col = shade(pal.skin_deep, -0.06, 0.12)
            for side in (-1, 1):
                for i in range(n):
                    r = 5.2 * math.sqrt(i + 0.6)
                    th = i * 2.39996 + 0.7 * side
                    x = CX + side * (g.ex - 6) + r * math.cos(th) * 1.5
                    y = self.y_eye + g.eh + 17 + r * math.sin(th) * 0.75
                    sc.add(circle(x, y, 1.5 + 0.3 * (i % 3)), col, opacity=0.6)

    def _mouth_geom(self, o: float):
        mx, my = CX, self.y_mouth
        mw = self.mw * (1 - 0.12 * o)
        s = 3.0 + 2.0 * (1 - o)
        oh = o * (15.0 + 5.0 * self.mw / 29.0)
        L, R = (mx - mw, my - s), (mx + mw, my - s)
        upper = Path().M(*L).C(mx - mw * 0.45, my + 2.5, mx + mw * 0.45, my + 2.5, *R)
        lower_back = Path().C(mx + mw * 0.55, my + 2.5 + oh * 1.33, mx - mw * 0.55, my + 2.5 + oh * 1.33, *L)
        return mx, my, mw, s, oh, L, R, upper, lower_back

    def _mouth(self, sc: Scene, o: float) -> None:
        pal = self.pal
        mx, my, mw, s, oh, L, R, upper, lower_back = self._mouth_geom(o)
        ul, ll = self.ul, self.ll
        if oh > 0.3:
            inside = Path(list(upper.ops)).extend(lower_back).Z()
            sc.add(inside, pal.mouth_in)
            sc.add(ellipse(mx, my + oh * 1.05 + 4, mw * 0.55, max(2.0, oh * 0.45)), pal.tongue, clip=inside)
            sc.add(round_rect(mx - mw * 0.62, my - 6, mx + mw * 0.62, my + 2.5 + min(5.5, oh * 0.4), 3), pal.teeth, clip=inside)
        # upper lip: cupid's bow on top, the opening's edge below
        ul_top = spline(
            [L, (mx - mw * 0.32, my - ul - 0.6), (mx, my - ul + 1.6), (mx + mw * 0.32, my - ul - 0.6), R],
            closed=False,
            tension=0.9,
        )
        upper_lip = Path(list(ul_top.ops)).C(mx + mw * 0.45, my + 2.5, mx - mw * 0.45, my + 2.5, *L).Z()
        sc.add(upper_lip, mix(pal.lip, pal.lip_dark, 0.55))
        yb = my + 2.5 + oh + ll
        lower_lip = (
            Path()
            .M(*L)
            .C(mx - mw * 0.55, my + 2.5 + oh * 1.33, mx + mw * 0.55, my + 2.5 + oh * 1.33, *R)
            .C(mx + mw * 0.75, yb + 1, mx - mw * 0.75, yb + 1, *L)
            .Z()
        )
        sc.add(lower_lip, pal.lip)
        sc.add(ellipse(mx - mw * 0.12, my + 2.5 + oh + ll * 0.45, mw * 0.28, ll * 0.18), pal.lip_light, opacity=0.7)
        sc.add(upper, stroke=shade(pal.lip_dark, -0.12), width=1.6 if oh > 0.3 else 2.2, opacity=0.9)
        for side in (-1, 1):
            cx = mx + side * (mw + 1.5)
            sc.add(
                Path().M(cx, my - s - 2).Q(cx + side * 2.5, my - s, cx + side * 1, my - s + 2.5),
                stroke=pal.skin_deep,
                width=1.8,
                opacity=0.7,
            )

    def _eye_paths(self, b: float):
        g = self.eye
        ew, eh = g.ew, g.eh
        lo = eh * 0.82
        # upper arc I->O and lower arc O->I as cubic controls (local coords)
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

    def _eyes(self, sc: Scene, blink: float) -> None:
        pal, g = self.pal, self.eye
        eye, edge, lid, ctrl = self._eye_paths(blink)
        eye0, _, _, _ = self._eye_paths(0.0)
        ir = g.ew * 0.5 + g.eh * 0.25
        for side in (-1, 1):
            fn = self.eye_map(side)
            ge = eye.map(fn)
            # crease above the eye
            crease = Path().M(-g.ew * 0.75, -g.eh * 1.05 - 4).Q(0, -g.eh * 1.6 - 6, g.ew * 0.85, -g.eh * 1.1 - 4)
            sc.add(crease.map(fn), stroke=pal.skin_deep, width=2.0, opacity=0.45)
            sc.add(ge, pal.sclera)
            icx, icy = fn(0.0, g.eh * 0.1)
            sc.add(circle(icx, icy, ir), pal.iris_dark, clip=ge)
            sc.add(circle(icx, icy, ir * 0.8), pal.iris, clip=ge)
            sc.add(circle(icx, icy, ir * 0.45), pal.ink, clip=ge)
            sc.add(circle(icx - ir * 0.32, icy - ir * 0.34, ir * 0.22), (1, 1, 1), clip=ge)
            sc.add(circle(icx + ir * 0.3, icy + ir * 0.3, ir * 0.1), (1, 1, 1), opacity=0.8, clip=ge)
            # the lid's shadow on the eyeball
            sc.add(eye0.map(fn).translated(0, -g.eh * 0.55), pal.skin_deep, opacity=0.22, clip=ge)
            if blink > 0.01:
                sc.add(lid.map(fn), pal.skin_shadow)
            sc.add(edge.map(fn), stroke=pal.ink, width=3.2)
            # lower lash line, faint
            low = Path().M(g.ew * 0.85, 1.5).Q(0, g.eh * 1.05 + 1.5, -g.ew * 0.7, g.eh * 0.3)
            sc.add(low.map(fn), stroke=pal.skin_deep, width=1.6, opacity=0.6 * (1 - blink))
            # outer flick + lashes
            inner, e1, e2, outer = ctrl
            fl = 3.0 + 5.0 * self.lash
            flick = Path().M(outer[0] - 2, outer[1]).L(outer[0] + fl * 0.9, outer[1] - fl * (0.55 - blink * 0.7))
            sc.add(flick.map(fn), stroke=pal.ink, width=3.0)
            if self.lash > 0.05:
                for t in (0.52, 0.68, 0.82):
                    mt = 1 - t
                    px = mt**3 * inner[0] + 3 * mt**2 * t * e1[0] + 3 * mt * t**2 * e2[0] + t**3 * outer[0]
                    py = mt**3 * inner[1] + 3 * mt**2 * t * e1[1] + 3 * mt * t**2 * e2[1] + t**3 * outer[1]
                    ln = 5.5 * self.lash
                    dy = -1.0 + 1.6 * blink
                    p = Path().M(px, py).L(px + ln * (0.2 + t * 0.55), py + ln * dy)
                    sc.add(p.map(fn), stroke=pal.ink, width=2.0, opacity=min(1.0, 0.4 + self.lash))

    def _brows(self, sc: Scene) -> None:
        pal, g = self.pal, self.eye
        t, ah = self.brow_t, self.brow_arch
        y0 = -(g.eh * 1.25 + 10 + 0.6 * ah)
        c = [(-g.ew * 1.05, y0 + 1.5), (-g.ew * 0.25, y0 - ah * 0.75), (g.ew * 0.55, y0 - ah), (g.ew * 1.3, y0 - ah * 0.25 + 4)]
        th = [t, t * 0.95, t * 0.72, t * 0.3]
        upper = [(x, y - w / 2) for (x, y), w in zip(c, th)]
        lower = [(x, y + w / 2) for (x, y), w in zip(reversed(c), reversed(th))]
        brow = spline(upper, closed=False)
        spline(lower, closed=False, path=brow, move=False)
        brow.Z()
        for side in (-1, 1):
            sc.add(brow.map(self.eye_map(side)), pal.brow)

    def _beard(self, sc: Scene) -> None:
        a, st = self.beard_amt, self.beard_style
        if a <= 0 or st == "moustache":
            return
        pal = self.pal
        if st == "goatee":
            mw, my = self.mw, self.y_mouth
            top = my + self.ll + 5
            gw = mw * (0.45 + 0.2 * a)
            pts = [
                (CX + gw * 0.7, top - 1),
                (CX + gw, (top + self.y_chin) / 2),
                (CX + gw * 0.5, self.y_chin - 2),
                (CX, self.y_chin + 2 + 5 * a),
                (CX - gw * 0.5, self.y_chin - 2),
                (CX - gw, (top + self.y_chin) / 2),
                (CX - gw * 0.7, top - 1),
                (CX, top + 2),
            ]
            g = spline(pts, closed=True, tension=0.9)
            sc.add(g, pal.beard_shadow, opacity=0.6 + 0.4 * a)
            sc.add(g.translated(-3, -3), pal.beard, opacity=0.6 + 0.4 * a, clip=g)
            return
        full = st == "full_beard"
        stub = st == "stubble"
        ya = self.y_eye + 4
        # outer edge: the jaw, pushed out for a full beard (more at the chin)
        ys = np.linspace(ya, self.y_chin, 9)
        out = []
        for y in ys:
            k = (y - ya) / (self.y_chin - ya)
            off = (2 + (6 + 18 * a) * k * k) if full else (1.0 if not stub else 0.0)
            out.append((CX + self.half_width(y) + off * 0.6, y + off * k))
        out[-1] = (CX, self.y_chin + ((4 + 20 * a) if full else 1.0))
        yc = (self.y_nose + self.y_mouth) / 2
        inner = [
            (CX + self.mw + 8, self.y_mouth + 3),
            (CX + self.half_width(yc) * 0.86, yc + 2),
            (CX + self.half_width(ya + 24) - 9, ya + 24),
            (CX + self.half_width(ya) - 5, ya),
        ]
        under = (CX, self.y_mouth + self.ll + 8)
        right = out[:-1]
        pts = (
            [under]
            + [(2 * CX - x, y) for x, y in inner]
            + [(2 * CX - x, y) for x, y in right]
            + [out[-1]]
            + list(reversed(right))
            + list(reversed(inner))
        )
        beard = spline(pts, closed=True, tension=0.85)
        if stub:
            sc.add(beard, pal.beard, opacity=0.16 + 0.2 * a, clip=self.head)
        else:
            op = 0.8 + 0.2 * a if not full else 1.0
            sc.add(beard, pal.beard_shadow, opacity=op)
            sc.add(beard.translated(-6, -5), pal.beard, opacity=op, clip=beard)

    def _moustache(self, sc: Scene) -> None:
        a, st = self.beard_amt, self.beard_style
        if a <= 0:
            return
        pal = self.pal
        mw, my, yn = self.mw, self.y_mouth, self.y_nose
        th = 3.0 + 6.0 * a
        top = yn + 5
        right = [(CX + self.nose_w * 0.9, top + 1), (CX + mw + 3, my - 2), (CX + mw + 5, my + 2 + 2 * a)]
        back = [
            (CX + mw * 0.5, my - self.ul - 0.5 - th * 0.15),
        ]
        pts = (
            [(CX, top)]
            + right
            + back
            + [(CX, my - self.ul + 0.5)]
            + [(2 * CX - x, y) for x, y in reversed(back)]
            + [(2 * CX - x, y) for x, y in reversed(right)]
        )
        m = spline(pts, closed=True, tension=0.8)
        if st == "stubble":
            sc.add(m, pal.beard, opacity=0.14 + 0.18 * a)
        else:
            sc.add(m, pal.beard, opacity=0.6 + 0.4 * a)

    # -- hair -------------------------------------------------------------------------
    def _cran(self, ang: float, extra: float, extra_top: float | None = None) -> Pt:
        """A point on the cranium ellipse (ang 0 = top, +90 = right side), pushed out."""
        et = extra if extra_top is None else extra_top
        a = math.radians(ang)
        ex = extra + (et - extra) * max(0.0, math.cos(a))
        return (CX + (self.hw + ex) * math.sin(a), self.cy_cran - (self.ry_cran + ex) * math.cos(a))

    def _hair_back(self, sc: Scene) -> None:
        st, pal, v = self.style, self.pal, self.vol
        if st in ("long_straight", "long_wavy", "bob"):
            bottom = 480.0 if st != "bob" else self.y_chin + 6
            w = self.hw + v + (26 if st != "bob" else 12)
            pts: list[Pt] = []
            for ang in range(-110, 111, 20):
                pts.append(self._cran(ang, v + 4, v * 1.1 + 4))
            wav = st == "long_wavy"
            if st == "bob":
                rs = [
                    (CX + w, self.y_eye + 16),
                    (CX + w * 0.99, self.y_mouth + 4),
                    (CX + w * 0.84, bottom),
                    (CX + self.hw * 0.62, bottom - 6),
                ]
                mid = [(CX + self.hw * 0.3, bottom - 30), (CX - self.hw * 0.3, bottom - 30)]
            else:
                rs = [
                    (CX + w * 0.98, self.y_eye + 40),
                    (CX + w * 1.04, self.y_chin - 20),
                    (CX + w * 1.02, bottom - 40),
                    (CX + w * 0.9, bottom),
                ]
                mid = [(CX + w * 0.45, bottom - 12), (CX - w * 0.45, bottom - 12)]
            if wav:
                rs = [(x + (8 if i % 2 else -4), y) for i, (x, y) in enumerate(rs)]
            pts = pts + rs + mid + [(2 * CX - x, y) for x, y in reversed(rs)]
            back = spline(pts, closed=True, tension=0.9)
            sc.add(back, mix(pal.hair, pal.hair_shadow, 0.3))
        if st == "ponytail":
            side = 1 if self.jit >= 0 else -1
            x0 = CX + side * (self.hw * 0.7)
            tail = (
                Path()
                .M(x0, self.y_top + 40)
                .C(x0 + side * 70, self.y_top + 40, x0 + side * 60, self.y_chin - 20, x0 + side * 40, self.y_chin + 50)
                .C(x0 + side * 20, self.y_chin, x0 + side * 10, self.y_top + 120, x0 - side * 20, self.y_top + 60)
                .Z()
            )
            sc.add(tail, mix(pal.hair, pal.hair_shadow, 0.55))
        if st == "bun":
            sc.add(circle(CX, self.y_top - 14, 30 + 0.4 * v), pal.hair)
            sc.add(
                Path().M(CX - 18, self.y_top - 24).Q(CX, self.y_top - 40, CX + 16, self.y_top - 26),
                stroke=pal.hair_light,
                width=3.5,
                opacity=0.6,
            )

    def _hairline(self, st: str) -> list[Pt]:
        """Front hairline from the right temple to the left temple (inner edge of the cap)."""
        hw, bald = self.hw, self.bald
        g = self.eye
        y_hl = self.y_top + self.hh * (0.15 + 0.10 * self.child) - 30 * bald
        y_tm = self.y_eye - g.eh - 20 - 34 * bald
        xt = hw * (0.98 - 0.06 * bald)
        rec = 16 * bald  # temple recession
        if st == "side_part":
            return [
                (CX + xt, y_tm),
                (CX + hw * 0.7, y_hl + 22 - rec),
                (CX + hw * 0.15, y_hl + 14),
                (CX - hw * 0.35, y_hl - 4),
                (CX - hw * 0.7, y_hl + 10 - rec),
                (CX - xt, y_tm),
            ]
        if st == "quiff":
            return [
                (CX + xt, y_tm),
                (CX + hw * 0.65, y_hl + 6 - rec),
                (CX, y_hl - 2),
                (CX - hw * 0.65, y_hl + 6 - rec),
                (CX - xt, y_tm),
            ]
        if st == "bob":
            yb = self.y_eye - g.eh - 16 - 1.2 * self.brow_arch
            ye = self.y_eye + 6
            return [
                (CX + self.half_width(ye) + 1, ye),
                (CX + hw * 0.88, yb + 2),
                (CX + hw * 0.5, yb + 1),
                (CX, yb),
                (CX - hw * 0.5, yb + 1),
                (CX - hw * 0.88, yb + 2),
                (CX - self.half_width(ye) - 1, ye),
            ]
        if st in ("long_straight", "long_wavy"):
            ye = self.y_eye + 6
            return [
                (CX + self.half_width(ye) + 1, ye),
                (CX + hw * 0.9, self.y_eye - 22),
                (CX + hw * 0.55, y_hl + 16),
                (CX + hw * 0.04, y_hl - 2),
                (CX - hw * 0.12, y_hl + 2),
                (CX - hw * 0.6, y_hl + 22),
                (CX - hw * 0.92, self.y_eye - 24),
                (CX - self.half_width(ye) - 1, ye),
            ]
        if st == "curly_short":
            pts = []
            for i, t in enumerate(np.linspace(0, 1, 9)):
                x = CX + xt - 2 * xt * t
                y = lerp(y_tm, y_hl, math.sin(math.pi * t) ** 0.6) + (5 if i % 2 else -1)
                pts.append((x, y))
            return pts
        if st in ("bun", "ponytail"):
            return [
                (CX + xt, y_tm),
                (CX + hw * 0.6, y_hl + 12 - rec),
                (CX, y_hl + 2),
                (CX - hw * 0.6, y_hl + 12 - rec),
                (CX - xt, y_tm),
            ]
        return [
            (CX + xt, y_tm),
            (CX + hw * 0.62, y_hl + 10 - rec),
            (CX, y_hl + 4),
            (CX - hw * 0.62, y_hl + 10 - rec),
            (CX - xt, y_tm),
        ]

    def _hair_front(self, sc: Scene) -> None:
        st, pal = self.style, self.pal
        v = (
            self.vol
            * {
                "buzz": 0.0,
                "bun": 0.25,
                "ponytail": 0.25,
                "short": 0.55,
                "side_part": 0.7,
                "curly_short": 1.0,
                "quiff": 0.6,
                "bob": 0.8,
                "long_straight": 0.6,
                "long_wavy": 0.9,
            }[st]
        )
        if st == "buzz":
            v = 1.5
        v_top = v * 1.15 + (22 if st == "quiff" else 0)
        bald = self.bald
        hl = self._hairline(st)
        side_y = self.y_eye - 2 if st not in ("bob", "long_straight", "long_wavy") else self.y_eye + 6
        # outer edge: right side bottom -> over the top -> left side bottom
        outer: list[Pt] = []
        sw = self.half_width(side_y)
        outer.append((CX - sw - v * 0.7 - 3, side_y))
        curly = st == "curly_short"
        angs = list(range(-100, 101, 10 if curly else 20))
        for i, ang in enumerate(angs):
            e = v + (5 if curly and i % 2 else 0)
            et = v_top + (5 if curly and i % 2 else 0)
            if st == "quiff":
                # the quiff rises at the front-left and falls to the right
                et = v * 1.1 + 24 * math.exp(-(((ang + 15) / 35.0) ** 2))
            outer.append(self._cran(ang, e, et))
        outer.append((CX + sw + v * 0.7 + 3, side_y))
        if st in ("bob", "long_wavy", "long_straight"):
            outer = [(x + (v * 0.3 if x > CX else -v * 0.3), y) for x, y in outer]
        cap = spline(outer, closed=False, tension=1.0)
        spline(hl, closed=False, tension=0.9, path=cap, move=False)
        cap.Z()
        if bald > 0.62:
            self._hair_sides(sc, v)
            return
        if st == "buzz":
            sc.add(cap, pal.hair, opacity=0.7, clip=self.head)
            return
        # shadow the fringe casts on the forehead
        sc.add(cap.translated(3, 7), pal.skin_deep, opacity=0.35, clip=self.head)
        # shading: a crescent of shadow on the right and along the hairline, a sheen stroke
        sc.add(cap, pal.hair_shadow)
        sc.add(cap.translated(-5, -3), pal.hair, clip=cap)
        self._hair_sheen(sc, v, v_top, st)
        if st == "side_part":
            p0 = (CX - self.hw * 0.35, hl[3][1] + 2)
            sc.add(
                Path().M(*p0).Q(p0[0] + 4, self.y_top + 10, p0[0] + 12, self.y_top - v_top * 0.6 + 6),
                stroke=pal.hair_shadow,
                width=3.0,
                opacity=0.9,
            )
        if st in ("long_straight", "long_wavy"):
            sc.add(
                Path().M(CX - 2, self.y_top + self.hh * 0.15).Q(CX - 1, self.y_top + 4, CX + 2, self.y_top - v_top + 8),
                stroke=pal.hair_shadow,
                width=2.6,
                opacity=0.85,
            )

    def _hair_sheen(self, sc: Scene, v: float, v_top: float, st: str) -> None:
        pal = self.pal
        a0, a1 = -62, -22
        p0 = self._cran(a0, v - 8, v_top - 8)
        pm = self._cran((a0 + a1) / 2, v - 5, v_top - 5)
        p1 = self._cran(a1, v - 7, v_top - 7)
        sc.add(spline([p0, pm, p1], closed=False), stroke=pal.hair_light, width=4.0, opacity=0.55)

    def _hair_sides(self, sc: Scene, v: float) -> None:
        """The horseshoe left by heavy baldness: tufts above and behind the ears."""
        pal = self.pal
        for side in (-1, 1):
            y0, y1 = self.y_eye - 40, self.y_eye + 6
            x0 = CX + side * (self.half_width(y0) + 1)
            x1 = CX + side * (self.half_width(y1) - 1)
            tuft = (
                Path()
                .M(x0 - side * 10, y0 - 4)
                .C(x0 + side * (v * 0.6 + 6), y0 - 8, x1 + side * (v * 0.6 + 6), y1 - 6, x1 + side * 2, y1 + 4)
                .C(x1 - side * 8, y1 - 6, x0 - side * 12, y0 + 14, x0 - side * 10, y0 - 4)
                .Z()
            )
            sc.add(tuft, pal.hair)

    def _glasses(self, sc: Scene) -> None:
        gv = self.p.glasses
        if gv <= 0.5:
            return
        k = (gv - 0.5) / 0.5
        shape = min(2, int(k * 3))
        g = self.eye
        frame = (hexc("#2A2222"), hexc("#6B3E22"), hexc("#B08A4A"))[min(2, int(self.p.identity_jitter * 3))]
        lw = 3.6 if shape != 2 else 3.0
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
            lenses.append((p, xc))
        for p, _ in lenses:
            sc.add(p, (1, 1, 1), opacity=0.16)
        for p, _ in lenses:
            sc.add(p, stroke=frame, width=lw)
        xl = lenses[0][0].bounds()[2]
        xr = lenses[1][0].bounds()[0]
        sc.add(Path().M(xl, yc - 4).Q(CX, yc - 10, xr, yc - 4), stroke=frame, width=lw)
        for side, (p, _) in zip((-1, 1), lenses):
            b = p.bounds()
            xe = b[2] if side == 1 else b[0]
            xf = CX + side * (self.half_width(yc) + 2)
            if abs(xf - CX) > abs(xe - CX):
                sc.add(Path().M(xe, yc - 6).L(xf, yc - 9), stroke=frame, width=lw)
        if shape == 2:
            for p, _ in lenses:
                b = p.bounds()
                sc.add(Path().M(b[0] + 4, b[1] + 1).L(b[2] - 4, b[1] + 1), stroke=frame, width=6.0)
