"""Hair and facial hair: many silhouettes, three flat tones each, strands drawn as strokes.

Why it is built this way:
- A face is recognised at 64 px mostly by its hair's outline, so every style has its own
  silhouette (the outer edge of the mass), not just its own colour: straight, wavy, curly
  and coily textures, short and long, plus afro, braids, bun, ponytail, undercut, buzz,
  receding and bald. ``tests/test_render.py`` measures how much the silhouettes overlap.
- Each mass gets three tones: the hair colour, a drawn shadow shape (the mass shifted
  toward the light and cut by its own outline, leaving a crisp crescent on the far side)
  and highlight shapes that follow the texture (a sheen band for straight hair, small
  arcs for curls, dots for coils). Strands are thin strokes in the shadow tone.
- The hair is split into a back part (behind the body: long lengths, the afro's halo,
  buns, ponytails, braids) and a front part (over the head), so long hair can fall behind
  the shoulders and in front of them.
- Facial hair is its own layer, under the front hair, in its own colour (see
  ``render_palette.beard_colour``) and with a shape that stops well below the eyes: the
  cheeks stay skin, the sideburn is a narrow strip, so a beard never closes a ring with
  the hair (the balaclava look).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .render_palette import mix
from .render_scene import Path, Pt, Scene, circle, ellipse, sample_spline, spline

if TYPE_CHECKING:
    from .render_face import FaceModel

LINE_FINE = 2.2

# how far each style's mass stands off the skull, as a multiple of the identity's hair volume
STYLE_VOLUME = {
    "buzz": 0.0,
    "crew": 0.45,
    "side_part": 0.65,
    "quiff": 0.55,
    "undercut": 0.5,
    "bob": 0.75,
    "long_straight": 0.55,
    "ponytail": 0.15,
    "bun": 0.15,
    "long_wavy": 0.8,
    "wavy_short": 0.7,
    "curly_short": 0.9,
    "long_curly": 1.0,
    "afro": 1.0,
    "coily_short": 0.7,
    "braids": 0.2,
    "receding": 0.3,
    "bald": 0.2,
}
LONG = ("bob", "long_straight", "long_wavy", "long_curly", "braids")


# -- small geometry helpers -----------------------------------------------------------
def _mirror(pts: list[Pt]) -> list[Pt]:
    from .render_face import CX

    return [(2 * CX - x, y) for x, y in reversed(pts)]


def _arc(m: FaceModel, a0: float, a1: float, extra: float, extra_top: float, n: int, bump: float = 0.0, lobes: int = 0):
    """Points on the pushed-out cranium from angle a0 to a1 (0 = top); ``lobes`` adds curls."""
    pts = []
    for i in range(n + 1):
        t = i / n
        ang = a0 + (a1 - a0) * t
        e = extra
        if lobes:
            e = extra + bump * abs(math.sin(math.pi * lobes * t))
        pts.append(m.cran(ang, e, extra_top + (e - extra)))
    return pts


def _lobed(pts: list[Pt], cx: float, cy: float, amp: float, lobes: int, sharp: float = 0.5) -> list[Pt]:
    """Push the points radially out from (cx, cy) in ``lobes`` bumps: curls and coils."""
    out = []
    n = len(pts)
    for i, (x, y) in enumerate(pts):
        t = i / max(1, n - 1)
        k = abs(math.sin(math.pi * lobes * t)) ** sharp
        dx, dy = x - cx, y - cy
        r = math.hypot(dx, dy) or 1.0
        out.append((x + dx / r * amp * k, y + dy / r * amp * k))
    return out


def _shade_mass(sc: Scene, mass: Path, m: FaceModel, dx: float = -6.0, dy: float = -4.0) -> None:
    """Three tones: shadow under, base shifted toward the light and cut by the outline."""
    pal = m.pal
    sc.add(mass, pal.hair_shadow)
    sc.add(mass.translated(dx, dy), pal.hair, clip=mass)


def _sheen(sc: Scene, m: FaceModel, clip: Path, a0: float, a1: float, extra: float, width: float = 7.0) -> None:
    """A crisp highlight band following the skull's curve on the lit side."""
    pal = m.pal
    outer = _arc(m, a0, a1, extra, extra, 8)
    inner = _arc(m, a1, a0, extra - width, extra - width, 8)
    band = spline(outer, closed=False)
    spline(inner, closed=False, path=band, move=False)
    band.Z()
    sc.add(band, pal.hair_light, clip=clip)


def _strands(sc: Scene, m: FaceModel, lines: list[list[Pt]], clip: Path, colour=None, width: float = LINE_FINE) -> None:
    c = colour if colour is not None else m.pal.hair_shadow
    for pts in lines:
        sc.add(spline(pts, closed=False), stroke=c, width=width, clip=clip)


def _sideburn_outer(m: FaceModel, side: int, v: float) -> list[Pt]:
    """From the skull's side, down in front of the ear to the sideburn's foot (right side, top to bottom)."""
    from .render_face import CX

    y_sb = m.y_eye - 6
    y_ft = m.y_eye + 14
    return [
        (CX + side * (m.half_width(y_sb) + v * 0.35 + 2), y_sb),
        (CX + side * (m.half_width(m.y_eye) + 1), m.y_eye + 1),
        (CX + side * (m.half_width(y_ft) - 1), y_ft),
        (CX + side * (m.half_width(y_ft) - 9), y_ft - 1),
    ]


def _temple(m: FaceModel, side: int, recede: float = 0.0) -> Pt:
    from .render_face import CX

    g = m.eye
    y = m.y_eye - g.eh - 24 - 36 * recede
    return (CX + side * (m.hw * (0.86 - 0.08 * recede)), y)


def _cap(
    m: FaceModel,
    v: float,
    v_top: float,
    hairline: list[Pt],
    lobes: int = 0,
    bump: float = 0.0,
    n: int = 12,
    v_side: float | None = None,
) -> Path:
    """A short-hair mass: sideburn, over the skull, sideburn, then back along the hairline.

    ``v_side`` (default ``v``) is how far the hair stands off the sides: most short cuts are
    shorter there than on top, which is what keeps a short style from reading as a helmet."""
    vs = v if v_side is None else v_side
    right = _sideburn_outer(m, 1, vs)
    left = _mirror(right)  # bottom to top on the left
    over = _arc(m, -100, 100, vs, v_top, n, bump, lobes)
    outer = left + over + right
    path = spline(outer, closed=False, tension=0.9)
    spline(hairline, closed=False, tension=0.9, path=path, move=False)
    return path.Z()


def _hl_y(m: FaceModel, recede: float = 0.0) -> float:
    """Height of the hairline's middle (lower for children, higher when receding)."""
    return m.y_top + m.hh * (0.15 + 0.10 * m.child) - 34 * recede


def _hairline(m: FaceModel, mid: list[Pt], recede: float = 0.0) -> list[Pt]:
    from .render_face import CX

    sb = _sideburn_outer(m, 1, 0.0)[-1]
    return [sb, _temple(m, 1, recede)] + mid + [_temple(m, -1, recede), (2 * CX - sb[0], sb[1])]


# -- the back part ----------------------------------------------------------------------
def hair_back(m: FaceModel, sc: Scene) -> None:
    from .render_face import CX

    st, pal = m.style, m.pal
    v = m.vol * STYLE_VOLUME[st]
    back = mix(pal.hair, pal.hair_shadow, 0.45)
    if st in ("long_straight", "long_wavy", "bob", "long_curly"):
        right = _drape(m, v, st)
        bottom = right[-1][1]
        pts = _mirror(right) + right[1:] + [(CX + m.hw * 0.5, bottom - 10), (CX - m.hw * 0.5, bottom - 10)]
        mass = spline(pts, closed=True, tension=0.9)
        sc.add(mass, back)
        sc.add(mass.translated(10, 0), pal.hair_shadow, clip=mass, opacity=0.6)
    elif st == "afro":
        mass = _afro_mass(m)
        _shade_mass(sc, mass, m, -10, -8)
        _afro_texture(m, sc)
    elif st == "ponytail":
        side = 1 if m.jit >= 0 else -1
        x0, y0 = m.cran(side * 62, v)
        tail = (
            Path()
            .M(x0 - side * 14, y0 - 6)
            .C(x0 + side * 70, y0 - 26, x0 + side * 86, m.y_eye + 20, x0 + side * 52, m.y_chin + 56)
            .C(x0 + side * 48, m.y_chin, x0 + side * 26, m.y_eye, x0 - side * 6, y0 + 30)
            .Z()
        )
        _shade_mass(sc, tail, m, side * -7, -3)
        _sheen(sc, m, tail, side * 40, side * 75, v + 20, 6)
        _strands(
            sc,
            m,
            [
                [(x0 + side * 10, y0 + 4), (x0 + side * 56, m.y_eye - 10), (x0 + side * 50, m.y_chin + 30)],
                [(x0 + side * 4, y0 + 14), (x0 + side * 36, m.y_eye + 10), (x0 + side * 46, m.y_chin + 44)],
            ],
            tail,
        )
        sc.add(ellipse(x0 + side * 2, y0 + 6, 10, 14), mix(pal.shirt, pal.shirt_shadow, 0.3))
    elif st == "bun":
        r = 31 + 0.35 * m.vol
        cy = m.y_top - 18
        bun = circle(CX, cy, r)
        _shade_mass(sc, bun, m, -6, -5)
        _strands(
            sc,
            m,
            [
                [(CX - r * 0.7, cy + 2), (CX - r * 0.1, cy - r * 0.55), (CX + r * 0.6, cy - r * 0.3)],
                [(CX - r * 0.5, cy + r * 0.45), (CX + r * 0.2, cy + r * 0.1), (CX + r * 0.7, cy + r * 0.25)],
            ],
            bun,
        )
        sc.add(circle(CX - r * 0.35, cy - r * 0.4, r * 0.22), pal.hair_light, clip=bun)
    elif st == "braids":
        _braids(m, sc, front=False)


def _afro_mass(m: FaceModel) -> Path:
    """A big rounded cloud around the crown with an irregular scalloped edge; it ends at the
    ears, so a beard never meets it below the sideburns."""
    from .render_face import CX

    rx = m.hw + 36 + 1.3 * m.vol
    ry = m.ry_cran + 34 + 1.2 * m.vol
    cy = m.cy_cran - 8
    y_end = m.y_eye + 18
    pts: list[Pt] = []
    lobes = 17
    for i in range(lobes * 2 + 1):
        t = i / (lobes * 2)
        ang = -128 + 256 * t
        a = math.radians(ang)
        bump = (7.0 + 3.0 * math.sin(i * 2.3)) if i % 2 else 0.0
        x = CX + (rx + bump) * math.sin(a)
        y = cy - (ry + bump) * math.cos(a)
        pts.append((x, min(y, y_end + 10)))
    pts += [(CX + m.half_width(y_end) - 6, y_end), (CX - m.half_width(y_end) + 6, y_end)]
    return spline(pts, closed=True, tension=0.9)


def _afro_texture(m: FaceModel, sc: Scene) -> None:
    """Coils: small C-shaped marks, lit ones toward the light, and a crisp highlight crescent."""
    from .render_face import CX

    pal = m.pal
    rx = m.hw + 36 + 1.3 * m.vol
    ry = m.ry_cran + 34 + 1.2 * m.vol
    cy = m.cy_cran - 8
    for ring, (k, n) in enumerate(((0.86, 15), (0.7, 11))):
        for i in range(n):
            ang = -112 + 224 * (i + 0.5 * ring) / (n - 1 + ring)
            a = math.radians(ang)
            x, y = CX + rx * k * math.sin(a), cy - ry * k * math.cos(a)
            if y > m.y_eye + 8:
                continue
            lit = -85 < ang < -15
            c = pal.hair_light if lit else pal.hair_shadow
            sc.add(Path().M(x - 5, y + 2).Q(x - 4, y - 5, x + 3, y - 4), stroke=c, width=2.4)


def _braids(m: FaceModel, sc: Scene, front: bool) -> None:
    """Box braids: a curtain of narrow plaits, each a chain of small flat segments."""
    from .render_face import CX

    pal = m.pal
    bottom = 478.0 + 8 * m.jit
    xs_back = [-1.08, -0.92, -0.76, 0.76, 0.92, 1.08] if not front else [-0.98, -0.84, 0.84, 0.98]
    for k in xs_back:
        x_top = CX + k * (m.hw + 6)
        y_top = m.y_eye - 20 if not front else m.y_eye - 10
        x_bot = CX + k * (m.hw + (26 if not front else 16)) + (6 if k > 0 else -6)
        y_bot = bottom if not front else m.y_chin + 58 + 6 * abs(k)
        n = max(4, int((y_bot - y_top) / 14))
        w = 7.5
        for i in range(n):
            t0, t1 = i / n, (i + 1) / n
            xa, ya = lerp_pt((x_top, y_top), (x_bot, y_bot), t0)
            xb, yb = lerp_pt((x_top, y_top), (x_bot, y_bot), t1)
            seg = (
                Path()
                .M(xa - w, ya)
                .Q((xa + xb) / 2, ya - 3, xa + w, ya)
                .L(xb + w * 0.7, yb + 2)
                .Q(xb, yb + 5, xb - w * 0.7, yb + 2)
                .Z()
            )
            sc.add(seg, pal.hair if (i + (1 if k > 0 else 0)) % 2 else mix(pal.hair, pal.hair_shadow, 0.35))
            sc.add(Path().M(xa - w * 0.6, ya + 2).L(xa + w * 0.2, ya + 5), stroke=pal.hair_light, width=1.8, opacity=0.8)
        sc.add(ellipse(x_bot, y_bot + 4, 5.5, 4.5), pal.hair_shadow)


def lerp_pt(a: Pt, b: Pt, t: float) -> Pt:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


# -- the front part ---------------------------------------------------------------------
def hair_front(m: FaceModel, sc: Scene) -> None:
    v = m.vol * STYLE_VOLUME[m.style]
    globals()["_front_" + m.style](m, sc, v, _hl_y(m))


def _with_cast_shadow(m: FaceModel, sc: Scene, mass: Path, dy: float = 7.0) -> None:
    sc.add(mass.translated(3, dy), m.pal.skin_deep, opacity=0.45, clip=m.head)


def _front_buzz(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    pal = m.pal
    mid = [(CX + m.hw * 0.6, hl + 12), (CX, hl + 6), (CX - m.hw * 0.6, hl + 12)]
    cap = _cap(m, 1.5, 1.5, _hairline(m, mid))
    sc.add(cap, mix(pal.skin_shadow, pal.hair, 0.72), clip=m.head)
    sc.add(cap.translated(-7, -6), mix(pal.skin, pal.hair, 0.62), clip=cap)
    _sheen(sc, m, cap, -64, -20, -6, 5)
    return cap


def _front_crew(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    mid = [
        (CX + m.hw * 0.58, hl + 14),
        (CX + m.hw * 0.22, hl + 9),
        (CX + 2, hl + 13),
        (CX - m.hw * 0.26, hl + 8),
        (CX - m.hw * 0.6, hl + 13),
    ]
    cap = _cap(m, v, v * 1.4 + 6, _hairline(m, mid), lobes=7, bump=3.0, n=28, v_side=v * 0.3 + 1)
    _with_cast_shadow(m, sc, cap)
    _shade_mass(sc, cap, m)
    _sheen(sc, m, cap, -62, -22, v - 4, 6)
    xs = (-0.45, -0.15, 0.15, 0.45)
    _strands(sc, m, [[(CX + m.hw * k, hl + 10), (CX + m.hw * (k + 0.04), hl - 12)] for k in xs], cap)
    return cap


def _front_side_part(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    xp = CX - m.hw * 0.36  # the part
    mid = [
        (CX + m.hw * 0.72, hl + 26),
        (CX + m.hw * 0.2, hl + 22),
        (xp + 8, hl + 4),
        (xp - 4, hl - 6),
        (CX - m.hw * 0.7, hl + 10),
    ]
    cap = _cap(m, v, v * 1.3 + 5, _hairline(m, mid), v_side=v * 0.5 + 1)
    _with_cast_shadow(m, sc, cap, 8)
    _shade_mass(sc, cap, m)
    _sheen(sc, m, cap, -60, -30, v - 3, 7)
    pal = m.pal
    sc.add(Path().M(xp, hl - 4).Q(xp + 3, m.y_top + 8, xp + 10, m.y_top - v * 0.8 + 6), stroke=pal.hair_line, width=2.8)
    _strands(
        sc,
        m,
        [
            [(xp + 14, hl - 2), (CX + m.hw * 0.1, hl + 6), (CX + m.hw * 0.6, hl + 20)],
            [(xp + 24, hl - 16), (CX + m.hw * 0.25, hl - 6), (CX + m.hw * 0.8, hl + 10)],
        ],
        cap,
    )
    return cap


def _front_quiff(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    mid = [(CX + m.hw * 0.62, hl + 8), (CX + m.hw * 0.1, hl - 2), (CX - m.hw * 0.62, hl + 8)]
    vs = v * 0.3 + 1
    right = _sideburn_outer(m, 1, vs)
    left = _mirror(right)
    over = []
    for i in range(15):
        ang = -100 + 200 * i / 14
        et = v * 1.2 + 4 + 34 * math.exp(-(((ang + 12) / 30.0) ** 2))
        over.append(m.cran(ang, vs, et))
    path = spline(left + over + right, closed=False, tension=0.9)
    spline(_hairline(m, mid), closed=False, tension=0.9, path=path, move=False)
    cap = path.Z()
    _with_cast_shadow(m, sc, cap)
    _shade_mass(sc, cap, m)
    _sheen(sc, m, cap, -58, -28, v + 10, 8)
    _strands(
        sc,
        m,
        [
            [(CX - m.hw * k, hl + 2), (CX - m.hw * (k - 0.1), m.y_top - 16), (CX + m.hw * (0.3 - k * 0.2), m.y_top - 8)]
            for k in (0.3, 0.0)
        ],
        cap,
    )
    return cap


def _front_undercut(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    pal = m.pal
    side = 1 if m.jit >= 0 else -1
    # shaved sides: a close crop in a skin-and-hair mix, its own flat tone
    mid = [(CX + m.hw * 0.6, hl + 14), (CX, hl + 8), (CX - m.hw * 0.6, hl + 14)]
    crop = _cap(m, 1.5, 1.5, _hairline(m, mid))
    sc.add(crop, mix(pal.skin_shadow, pal.hair, 0.62), clip=m.head)
    # the long top: from the part, swept over toward ``side`` into a fringe that hangs by the brow
    g = m.eye
    top_pts = []
    for i in range(13):
        t = i / 12
        ang = -62 + 150 * t
        top_pts.append(m.cran(side * ang, v + 4 + (v * 0.7 + 14) * math.sin(math.pi * min(1.0, t * 1.2) / 2)))
    tip = (CX + side * m.hw * 0.8, m.y_eye - g.eh - 20)
    under = [tip, (CX + side * m.hw * 0.35, hl + 18), (CX - side * m.hw * 0.2, hl + 4), (CX - side * m.hw * 0.55, hl - 8)]
    top = spline(top_pts + under, closed=True, tension=0.85)
    _with_cast_shadow(m, sc, top, 8)
    _shade_mass(sc, top, m)
    _sheen(sc, m, top, -48 if side > 0 else -30, -12 if side > 0 else 10, v + 6, 8)
    _strands(
        sc,
        m,
        [
            [(CX - side * m.hw * 0.45, hl - 4), (CX + side * m.hw * 0.1, m.y_top - v * 0.6), (CX + side * m.hw * 0.7, hl)],
            [(CX - side * m.hw * 0.2, hl + 4), (CX + side * m.hw * 0.35, m.y_top + 10), (tip[0] - side * 8, tip[1] - 10)],
        ],
        top,
    )
    return top


def _front_receding(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    rec = 0.75
    h2 = _hl_y(m, rec)
    mid = [
        (CX + m.hw * 0.5, h2 + 6),
        (CX + m.hw * 0.22, h2 - 16),
        (CX, h2 - 4),
        (CX - m.hw * 0.22, h2 - 16),
        (CX - m.hw * 0.5, h2 + 6),
    ]
    _scalp_shine(m, sc)
    cap = _cap(m, v, v * 0.5 + 1, _hairline(m, mid, rec), v_side=v + 3)
    sc.add(cap, m.pal.hair_shadow)
    sc.add(cap.translated(-5, -4), m.pal.hair, clip=cap)
    return cap


def _scalp_shine(m: FaceModel, sc: Scene) -> None:
    from .render_face import CX

    sc.add(ellipse(CX - m.hw * 0.3, m.y_top + m.hh * 0.13, m.hw * 0.26, m.hh * 0.045), m.pal.skin_light, clip=m.head)


def _front_bald(m: FaceModel, sc: Scene, v: float, hl: float) -> Path | None:
    from .render_face import CX

    pal = m.pal
    _scalp_shine(m, sc)
    out = None
    for side in (-1, 1):
        y0, y1 = m.y_eye - 44, m.y_eye + 8
        x0 = CX + side * (m.half_width(y0) + 1)
        x1 = CX + side * (m.half_width(y1) - 1)
        tuft = (
            Path()
            .M(x0 - side * 12, y0 - 4)
            .C(x0 + side * (v * 0.6 + 7), y0 - 9, x1 + side * (v * 0.6 + 7), y1 - 6, x1 + side * 2, y1 + 4)
            .C(x1 - side * 8, y1 - 6, x0 - side * 12, y0 + 14, x0 - side * 12, y0 - 4)
            .Z()
        )
        sc.add(tuft, pal.hair_shadow)
        sc.add(tuft.translated(-3, -3), pal.hair, clip=tuft)
        out = tuft
    return out


def _front_wavy_short(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    mid = []
    for i in range(7):
        t = i / 6
        x = CX + m.hw * (0.7 - 1.4 * t)
        y = hl + 14 + (7 if i % 2 else -3) - 8 * math.sin(math.pi * t)
        mid.append((x, y))
    cap = _cap(m, v, v * 1.3 + 5, _hairline(m, mid), lobes=3, bump=6.0, n=24, v_side=v * 0.6 + 1)
    _with_cast_shadow(m, sc, cap)
    _shade_mass(sc, cap, m)
    _sheen(sc, m, cap, -60, -24, v - 2, 7)
    waves = []
    for k in (-0.5, -0.1, 0.3):
        x = CX + m.hw * k
        waves.append([(x - 8, hl + 8), (x + 6, hl - 8), (x - 4, hl - 24), (x + 8, m.y_top + 2)])
    _strands(sc, m, waves, cap)
    return cap


def _front_curly_short(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    mid = []
    n = 9
    for i in range(n):
        t = i / (n - 1)
        x = CX + m.hw * (0.74 - 1.48 * t)
        y = hl + 10 + (9 if i % 2 else -2) - 6 * math.sin(math.pi * t)
        mid.append((x, y))
    cap = _cap(m, v, v * 1.15 + 3, _hairline(m, mid), lobes=8, bump=8.0, n=40)
    _with_cast_shadow(m, sc, cap)
    _shade_mass(sc, cap, m)
    _curls(m, sc, cap, v, rows=2)
    return cap


def _curls(m: FaceModel, sc: Scene, clip: Path, v: float, rows: int, r_curl: float = 6.5) -> None:
    """Curl texture: small C-shaped arcs, highlight on the lit side and shadow elsewhere."""
    pal = m.pal
    for row in range(rows):
        extra = v - 8 - row * 16
        n = 9 - row * 2
        for i in range(n):
            ang = -80 + 160 * (i + 0.5 * (row % 2)) / max(1, n - 1)
            if ang > 82:
                continue
            x, y = m.cran(ang, extra, extra)
            lit = -70 < ang < -10
            c = pal.hair_light if lit else pal.hair_shadow
            arc = Path().M(x - r_curl, y + 1).Q(x - r_curl * 0.6, y - r_curl, x + r_curl * 0.5, y - r_curl * 0.6)
            sc.add(arc, stroke=c, width=2.6)


def _front_coily_short(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    """A short coily crop with a flat-ish top and a crisp line-up at the hairline."""
    from .render_face import CX

    pal = m.pal
    mid = [(CX + m.hw * 0.62, hl + 12), (CX + m.hw * 0.5, hl + 8), (CX - m.hw * 0.5, hl + 8), (CX - m.hw * 0.62, hl + 12)]
    right = _sideburn_outer(m, 1, v)
    left = _mirror(right)
    over = []
    for i in range(17):
        ang = -100 + 200 * i / 16
        e = v + 4 + 14 * max(0.0, math.cos(math.radians(ang))) ** 3  # boxy top
        over.append(m.cran(ang, e + (2.5 if i % 2 else 0.0)))
    path = spline(left + over + right, closed=False, tension=0.8)
    spline(_hairline(m, mid), closed=False, tension=0.6, path=path, move=False)
    cap = path.Z()
    _with_cast_shadow(m, sc, cap, 5)
    _shade_mass(sc, cap, m, -7, -5)
    for row in range(3):
        extra = v - 2 - row * 11
        n = 12 - 2 * row
        for i in range(n):
            ang = -84 + 168 * (i + 0.5 * (row % 2)) / (n - 1)
            x, y = m.cran(ang, extra + 10 * max(0.0, math.cos(math.radians(ang))) ** 3)
            lit = -72 < ang < -12
            sc.add(circle(x, y, 2.6), pal.hair_light if lit else pal.hair_shadow)
    return cap


def _front_afro(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    mid = [(CX + m.hw * 0.6, hl + 14), (CX, hl + 8), (CX - m.hw * 0.6, hl + 14)]
    # the halo is the back part; over the head only the hairline's edge and the sideburns
    cap = _cap(m, 6, 6, _hairline(m, mid))
    pal = m.pal
    _with_cast_shadow(m, sc, cap, 6)
    sc.add(cap, pal.hair_shadow)
    sc.add(cap.translated(-6, -6), pal.hair, clip=cap)
    return cap


def _drape(m: FaceModel, v: float, st: str) -> list[Pt]:
    """The outer edge of long hair, right side, from the crown down to the ends (one smooth curve)."""
    from .render_face import CX

    bob = st == "bob"
    spread = {"bob": 10.0, "long_straight": 8.0, "long_wavy": 30.0, "long_curly": 48.0}[st]
    bottom = (m.y_chin + 6) if bob else 470.0 + 10 * m.jit
    x = m.hw + v
    pts = [m.cran(a, v + 2, v * 1.1 + 3) for a in (0, 25, 50, 75, 95)]
    if bob:
        pts += [
            (CX + x + spread * 0.5, m.y_eye + 20),
            (CX + x + spread, m.y_mouth + 6),
            (CX + x + spread * 0.6, bottom - 4),
            (CX + x - 8, bottom),
        ]
    else:
        pts += [
            (CX + x + spread * 0.35, m.y_eye + 24),
            (CX + x + spread * 0.75, m.y_chin - 8),
            (CX + x + spread, bottom - 40),
            (CX + x + spread * 0.8, bottom),
        ]
    if st == "long_wavy":
        pts = pts[:4] + [(px + (14 if i % 2 else -8), py) for i, (px, py) in enumerate(pts[4:])]
    if st == "long_curly":
        pts = [m.cran(a, v + 8, v * 1.2 + 12) for a in (0, 25, 50, 75, 95)] + pts[5:]
        # resample densely so the curls are bumps of the outline, not of a few control points
        dense = [tuple(p) for p in sample_spline(pts, closed=False, per_seg=4)]
        pts = dense[:1] + _lobed(dense[1:], CX, m.cy_cran + 40, 12.0, 9, 0.7)
    return pts


def _front_bob(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    g = m.eye
    yb = m.y_eye - g.eh - 18 - 1.2 * m.brow_arch  # blunt fringe just above the brows
    right = _drape(m, v, "bob")
    inner_r = [
        (CX + m.half_width(m.y_chin - 16) + 8, m.y_chin - 6),
        (CX + m.half_width(m.y_mouth) + 2, m.y_mouth - 6),
        (CX + m.half_width(m.y_eye) + 1, m.y_eye),
        (CX + m.hw * 0.86, yb + 4),
    ]
    fringe = [(CX + m.hw * 0.5, yb + 2), (CX, yb + 1), (CX - m.hw * 0.5, yb + 2)]
    pts = _mirror(right) + right[1:] + inner_r + fringe + _mirror(inner_r)
    mass = spline(pts, closed=True, tension=0.85)
    _with_cast_shadow(m, sc, mass, 8)
    _shade_mass(sc, mass, m, -8, -4)
    _sheen(sc, m, mass, -64, -22, v - 2, 8)
    _strands(sc, m, [[(CX + m.hw * k, yb - 2), (CX + m.hw * k * 1.02, yb - 16)] for k in (-0.35, 0.3)], mass)
    return mass


def _long_front(m: FaceModel, sc: Scene, v: float, hl: float, st: str, part: float) -> Path:
    """Long hair over the head: a parted crown and two locks that fall in front of the shoulders."""
    from .render_face import CX

    xp = CX + part * m.hw
    right = _drape(m, v, st)[:-2]
    yl = m.y_chin + 62  # the locks end on the chest
    xo = right[-1][0]
    right = right + [(xo + 2, yl - 14), (xo - 8, yl)]
    wave = {"long_wavy": 8.0, "long_curly": 5.0}.get(st, 0.0)
    right_in = [
        (xo - 34, yl - 4),
        (CX + m.neck_w + 16, m.y_chin + 24),
        (CX + m.half_width(m.y_chin - 30) + 6, m.y_chin - 24),
        (CX + m.half_width(m.y_mouth) + 2, m.y_mouth - 10),
        (CX + m.half_width(m.y_eye) + 1, m.y_eye - 6),
        (CX + m.hw * 0.84, m.y_eye - 32),
    ]
    if wave:
        right_in = [(x + (wave * 0.7 if i % 2 else -wave * 0.4), y) for i, (x, y) in enumerate(right_in)]
    left_in = list(reversed([(2 * CX - x, y) for x, y in right_in]))
    mid = [(xp + m.hw * 0.45, hl + 18), (xp, hl - 2), (xp - m.hw * 0.45, hl + 18)]
    pts = _mirror(right) + right[1:] + right_in + mid + left_in
    mass = spline(pts, closed=True, tension=0.85)
    _with_cast_shadow(m, sc, mass, 8)
    _shade_mass(sc, mass, m, -8, -4)
    _sheen(sc, m, mass, -66, -24, v - 2, 8)
    pal = m.pal
    sc.add(Path().M(xp, hl).Q(xp + 1, m.y_top + 6, xp + 3, m.y_top - v + 6), stroke=pal.hair_line, width=2.6)
    strands = []
    for side in (-1, 1):
        x0 = CX + side * (m.half_width(m.y_eye) + 12)
        if wave:
            strands.append([(x0, m.y_eye - 10), (x0 + side * 8, m.y_mouth - 20), (x0, m.y_chin), (x0 + side * 12, yl - 16)])
        else:
            strands.append([(x0, m.y_eye - 10), (x0 + side * 6, m.y_mouth), (x0 + side * 10, yl - 14)])
    _strands(sc, m, strands, mass)
    return mass


def _front_long_straight(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    return _long_front(m, sc, v, hl, "long_straight", 0.06 * (1 if m.jit >= 0 else -1))


def _front_long_wavy(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    return _long_front(m, sc, v, hl, "long_wavy", -0.3 if m.jit < 0 else 0.3)


def _front_long_curly(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    mass = _long_front(m, sc, v, hl, "long_curly", 0.0)
    mid = []
    for i in range(9):
        t = i / 8
        mid.append((CX + m.hw * (0.8 - 1.6 * t), hl + 14 + (8 if i % 2 else -2) - 10 * math.sin(math.pi * t)))
    _curls(m, sc, mass, v + 4, rows=2, r_curl=7.0)
    pal = m.pal
    for side in (-1, 1):
        for j in range(4):
            x = CX + side * (m.hw + v * 0.5 + 2)
            y = m.y_eye + 10 + j * 26
            sc.add(Path().M(x - 6, y).Q(x, y - 9, x + 6, y - 2), stroke=pal.hair_shadow, width=2.6)
    return mass


def _front_ponytail(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    mid = [(CX + m.hw * 0.6, hl + 10), (CX + m.hw * 0.2, hl + 2), (CX - m.hw * 0.2, hl + 2), (CX - m.hw * 0.6, hl + 10)]
    cap = _cap(m, v + 3, v + 5, _hairline(m, mid))
    _with_cast_shadow(m, sc, cap, 5)
    _shade_mass(sc, cap, m)
    _sheen(sc, m, cap, -62, -26, v, 7)
    side = 1 if m.jit >= 0 else -1
    tie = (CX + side * m.hw * 0.62, m.y_top + 34)
    _strands(
        sc, m, [[(CX + m.hw * k, hl + 4), (CX + m.hw * (k * 0.5 + side * 0.2), m.y_top + 4), tie] for k in (-0.5, -0.1, 0.3)], cap
    )
    return cap


def _front_bun(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    mid = [(CX + m.hw * 0.6, hl + 10), (CX, hl + 1), (CX - m.hw * 0.6, hl + 10)]
    cap = _cap(m, v + 3, v + 4, _hairline(m, mid))
    _with_cast_shadow(m, sc, cap, 5)
    _shade_mass(sc, cap, m)
    _sheen(sc, m, cap, -62, -26, v, 7)
    top = (CX, m.y_top - 4)
    _strands(sc, m, [[(CX + m.hw * k, hl + 4), (CX + m.hw * k * 0.5, m.y_top + 18), top] for k in (-0.6, -0.25, 0.25, 0.6)], cap)
    sc.add(ellipse(CX, m.y_top - 2, 14, 5), m.pal.hair_line)
    return cap


def _front_braids(m: FaceModel, sc: Scene, v: float, hl: float) -> Path:
    from .render_face import CX

    pal = m.pal
    mid = [(CX + m.hw * 0.6, hl + 12), (CX, hl + 6), (CX - m.hw * 0.6, hl + 12)]
    cap = _cap(m, v + 4, v + 5, _hairline(m, mid))
    _with_cast_shadow(m, sc, cap, 5)
    _shade_mass(sc, cap, m)
    # the parting grid of the braids
    for k in (-0.5, -0.17, 0.17, 0.5):
        x = CX + m.hw * k
        sc.add(Path().M(x, hl + 6).Q(x + k * 8, m.y_top + 10, x + k * 30, m.y_top - 2), stroke=pal.hair_line, width=2.0, clip=cap)
    _sheen(sc, m, cap, -60, -28, v + 1, 6)
    _braids(m, sc, front=True)
    return cap


# -- facial hair ------------------------------------------------------------------------
def beard(m: FaceModel, sc: Scene) -> None:
    """The beard layer (beneath the hair, above the skin): stubble, chin and jaw styles."""
    from .render_face import CX

    a, st = m.beard_amt, m.beard_style
    if a <= 0 or st == "moustache":
        return
    pal = m.pal
    mw, my = m.mw, m.y_mouth
    if st in ("goatee", "circle"):
        top = my + m.ll + 4
        gw = mw * (0.55 + 0.25 * a)
        pts = [
            (CX + gw * 0.8, top - 2),
            (CX + gw, (top + m.y_chin) / 2),
            (CX + gw * 0.6, m.y_chin - 1),
            (CX, m.y_chin + 4 + 8 * a),
            (CX - gw * 0.6, m.y_chin - 1),
            (CX - gw, (top + m.y_chin) / 2),
            (CX - gw * 0.8, top - 2),
            (CX, top + 3),
        ]
        if st == "circle":  # joined to the moustache around the mouth corners
            pts[0] = (CX + mw + 6, my - 2)
            pts[-2] = (CX - mw - 6, my - 2)
        gt = spline(pts, closed=True, tension=0.9)
        _beard_tones(m, sc, gt)
        return
    ya = m.y_eye + 14  # the sideburn's foot, where the hair's sideburn ends
    full = st == "full_beard"
    strap = st == "chinstrap"
    stub = st == "stubble"
    depth = (6 + 18 * a) if full else (3 + 5 * a if not strap else 2.0)
    # outer edge: the jaw line pushed out (more toward the chin for a full beard)
    ys = [ya + (m.y_chin - ya) * t for t in (0.0, 0.2, 0.4, 0.6, 0.8, 0.92)]
    out = []
    for y in ys:
        k = (y - ya) / (m.y_chin - ya)
        off = (depth * k * k) if not stub else 0.5
        out.append((CX + m.half_width(y) + off * 0.5, y + off * k))
    bottom = (CX, m.y_chin + (depth if not stub else 1.0))
    # inner edge: a low cheek line from the sideburn to below the mouth corner; cheeks stay skin
    if strap:
        inner = [
            (CX + m.half_width(m.y_chin - 14) - 9, m.y_chin - 12),
            (CX + m.half_width(m.y_mouth + 10) - 9, m.y_mouth + 10),
            (CX + m.half_width(m.y_nose) - 8, m.y_nose),
            (CX + m.half_width(ya) - 8, ya),
        ]
        under = (CX, m.y_chin - 8)
    else:
        yc = m.y_nose + 8
        inner = [
            (CX + mw + 9, my + 4),
            (CX + mw + 14, my - 6),
            (CX + m.half_width(yc) * 0.82, yc + 4),
            (CX + m.half_width(ya + 10) - 9, ya + 12),
            (CX + m.half_width(ya) - 8, ya),
        ]
        under = (CX, my + m.ll + 9)
    pts = [under] + [(2 * CX - x, y) for x, y in inner] + [(2 * CX - x, y) for x, y in out] + [bottom]
    pts += list(reversed(out)) + list(reversed(inner))
    shape = spline(pts, closed=True, tension=0.8)
    if stub:
        sc.add(shape, pal.stubble, opacity=0.55 + 0.35 * a, clip=m.head)
        return
    _beard_tones(m, sc, shape)
    if full:
        # tufts along the lower edge: reads as hair, not as a mask
        for i in range(-3, 4):
            x = CX + i * m.hw * 0.16
            y = m.y_chin + depth * (1 - (i / 4) ** 2) - 3
            sc.add(Path().M(x - 5, y - 8).L(x, y + 3).L(x + 5, y - 8).Z(), pal.beard_shadow)


def _beard_tones(m: FaceModel, sc: Scene, shape: Path) -> None:
    pal = m.pal
    sc.add(shape, pal.beard_shadow)
    sc.add(shape.translated(-5, -5), pal.beard, clip=shape)
    b = shape.bounds()
    cx = (b[0] + b[2]) / 2
    for k in (-0.3, -0.15):
        x = cx + (b[2] - b[0]) * k
        sc.add(Path().M(x, b[3] - 18).L(x + 3, b[3] - 8), stroke=pal.beard_light, width=2.0, clip=shape)


def moustache(m: FaceModel, sc: Scene) -> None:
    """The moustache sits over the upper lip, above the mouth layer, in the beard's colour."""
    from .render_face import CX

    a, st = m.beard_amt, m.beard_style
    if a <= 0 or st in ("goatee", "chinstrap"):
        return
    pal = m.pal
    mw, my, yn = m.mw, m.y_mouth, m.y_nose
    top = yn + 6
    th = 4.0 + 6.0 * a
    right = [(CX + m.nose_w * 0.9, top + 1), (CX + mw + 4, my - 3), (CX + mw + 6, my + 2 + 3 * a)]
    back = [(CX + mw * 0.5, my - m.ul - 1.0 - th * 0.12)]
    pts = [(CX, top + 1)] + right + back + [(CX, my - m.ul - 0.5)] + _mirror(back) + _mirror(right)
    shape = spline(pts, closed=True, tension=0.8)
    if st == "stubble":
        sc.add(shape, pal.stubble, opacity=0.55 + 0.35 * a)
        return
    sc.add(shape, pal.beard_shadow)
    sc.add(shape.translated(-3, -3), pal.beard, clip=shape)
