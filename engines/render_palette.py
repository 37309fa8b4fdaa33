"""Colours for the avatar: hand-picked swatches per skin tone, derived tones for the rest.

Why it is built this way:
- Every surface has two or three flat tones (base, a drawn shadow shape, a highlight
  shape), never a blur. Skin tones are hand-picked as triples because a derived shadow
  that only darkens turns deep skin muddy: deep tones get a shadow that is only a little
  darker and a warm highlight that lifts the eye and brow area.
- Features must read at every tone. Contrast is measured as the WCAG relative-luminance
  ratio between a feature's colour and the skin it is drawn on, and every line colour is
  pushed toward black (or white) until it clears a floor. A natural deep skin tone is dark
  enough that even black lines cannot reach WCAG's 3:1 non-text ratio (black on #6E4630
  is 2.5:1), so the floor is split: every primary feature line (lids, brows, lip parting,
  open mouth) clears ``LINE_FLOOR`` against the skin base and highlight, and each eye also
  has a part at ``EYE_FLOOR`` (the lid line on light skin, the white of the eye on dark
  skin). ``tests/test_render.py`` checks both floors at every tone and hair colour.
- Facial hair never takes the hair's colour: a beard is drawn a clear step away from the
  hair (darker and warmer on blond and ginger hair, lighter and warmer on black hair), so
  beard and hair read as two things and never as one helmet-and-mask.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

from .render_scene import RGB

#: primary feature lines vs the skin they are drawn on (see the module docstring)
LINE_FLOOR = 2.2
#: the most readable part of each eye vs the skin around it (WCAG non-text contrast)
EYE_FLOOR = 3.0
#: hair vs beard: CIE76 colour difference below which two flat areas read as one
BEARD_HAIR_MIN_DELTA_E = 20.0


def hexc(s: str) -> RGB:
    s = s.lstrip("#")
    return (int(s[0:2], 16) / 255.0, int(s[2:4], 16) / 255.0, int(s[4:6], 16) / 255.0)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    t = max(0.0, min(1.0, t))
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def hls(h: float, light: float, s: float) -> RGB:
    return colorsys.hls_to_rgb(h % 1.0, max(0.0, min(1.0, light)), max(0.0, min(1.0, s)))


def shade(c: RGB, dl: float, ds: float = 0.0, dh: float = 0.0) -> RGB:
    """Shift lightness/saturation/hue of a colour; the one knob most derived tones use."""
    h, light, s = colorsys.rgb_to_hls(*c)
    return hls(h + dh, light + dl, s + ds)


def _lin(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(c: RGB) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    return 0.2126 * _lin(c[0]) + 0.7152 * _lin(c[1]) + 0.0722 * _lin(c[2])


def contrast(a: RGB, b: RGB) -> float:
    """WCAG 2 contrast ratio, 1 (same) .. 21 (black on white)."""
    la, lb = luminance(a), luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def lab(c: RGB) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour, for colour differences."""
    r, g, b = (_lin(v) for v in c)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = f(x), f(y), f(z)
    return (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))


def delta_e(a: RGB, b: RGB) -> float:
    la, lb = lab(a), lab(b)
    return sum((p - q) ** 2 for p, q in zip(la, lb)) ** 0.5


def ensure_contrast(c: RGB, against: tuple[RGB, ...], floor: float) -> RGB:
    """``c`` darkened (or, on dark grounds, lightened) just enough to clear ``floor`` against each ground.

    Keeps hue and saturation, so a blond brow on pale skin stays golden, only deeper.
    """
    if min(contrast(c, g) for g in against) >= floor:
        return c
    h, light, s = colorsys.rgb_to_hls(*c)
    dark_ground = max(luminance(g) for g in against) < 0.18
    step = -0.02 if (not dark_ground or light < 0.5) else 0.02
    while 0.0 < light < 1.0:
        light = max(0.0, min(1.0, light + step))
        out = hls(h, light, s)
        if min(contrast(out, g) for g in against) >= floor:
            return out
    return hls(h, light, s)


# -- swatches ---------------------------------------------------------------------------
# porcelain -> deep: (base, shadow, highlight). Shadows shift warm and a little saturated
# (subsurface look); deep tones keep the shadow close to the base and lift the highlight.
SKIN = (
    (hexc("#F9DFCE"), hexc("#EDBFA8"), hexc("#FFF0E4")),
    (hexc("#F2C7A5"), hexc("#E0A682"), hexc("#FAD9BF")),
    (hexc("#DCA77F"), hexc("#C48A62"), hexc("#EABD98")),
    (hexc("#C18757"), hexc("#A86E41"), hexc("#D39C6C")),
    (hexc("#93603C"), hexc("#7C4C2D"), hexc("#AC774F")),
    (hexc("#6E4630"), hexc("#5C3826"), hexc("#8A5A3C")),
)
SKIN_BASE = [t[0] for t in SKIN]
HAIR_BASE = [hexc(x) for x in ("#2A2420", "#4A3222", "#6E4829", "#8A3B20", "#A67B4E", "#E4C27E", "#CB6830")]
GREY_HAIR = hexc("#BDBDBD")
WHITE_HAIR = hexc("#ECECE8")
EYE_BASE = [hexc(x) for x in ("#6B4226", "#3C2616", "#8A6B32", "#4E7F4B", "#4A7DB5", "#7D8B95")]
INK = hexc("#1C1210")  # the line colour for lids, lashes and the mouth: warm near-black
SCLERA = hexc("#FBF8F4")


def bucket(v: float, n: int) -> int:
    return min(n - 1, max(0, int(v * n)))


def beard_colour(hair: RGB) -> RGB:
    """A facial-hair colour that reads as the same person's but never as the same mass.

    Light hair (blond, ginger, light brown) gets a deeper, slightly duller beard (the way
    beards usually grow darker than the scalp's sun-lightened hair); dark hair a slightly
    lighter, ashier one. The step is enforced in CIE76 ΔE, not guessed.
    """
    h, light, s = colorsys.rgb_to_hls(*hair)
    if light > 0.45:
        out, sign = hls(h - 0.01, light - 0.26, s * 0.85), -1.0
    elif light > 0.25:
        out, sign = hls(h, light - 0.11, s * 0.95), -1.0
    else:
        out, sign = hls(h, light + 0.08, s * 0.8), 1.0
    while delta_e(out, hair) < BEARD_HAIR_MIN_DELTA_E:
        h2, l2, s2 = colorsys.rgb_to_hls(*out)
        if not 0.02 < l2 < 0.98:
            break
        out = hls(h2, l2 + 0.02 * sign, s2)
    return out


@lru_cache(maxsize=256)
def _palette(skin_i: int, hair_i: int, grey_q: int, eye_i: int, bg_q: int, shirt_q: int, fem_q: int, old_q: int) -> "Palette":
    return Palette(skin_i, hair_i, grey_q / 64, eye_i, bg_q / 256, shirt_q / 256, fem_q / 16, old_q / 16)


def palette_for(
    skin_tone: float,
    hair_colour: float,
    greying: float,
    eye_colour: float,
    background_hue: float,
    shirt_hue: float,
    femininity: float,
    whiteness: float,
) -> "Palette":
    """The (cached) palette for a face; inputs snapped to steps below what the eye tells apart."""
    return _palette(
        bucket(skin_tone, len(SKIN)),
        bucket(hair_colour, len(HAIR_BASE)),
        int(round(greying * 64)),
        bucket(eye_colour, len(EYE_BASE)),
        int(round(background_hue * 256)) % 256,
        int(round(shirt_hue * 256)) % 256,
        int(round(femininity * 16)),
        int(round(whiteness * 16)),
    )


class Palette:
    """All colours for one face."""

    def __init__(
        self,
        skin_i: int,
        hair_i: int,
        greying: float,
        eye_i: int,
        background_hue: float,
        shirt_hue: float,
        femininity: float,
        whiteness: float,
    ) -> None:
        self.tone = skin_i
        base, shadow, light = SKIN[skin_i]
        dark = skin_i >= 4
        self.skin, self.skin_shadow, self.skin_light = base, shadow, light
        # secondary lines (creases, ear, nostril) and the cast shadows under hair and jaw
        self.skin_deep = shade(shadow, -0.07 if not dark else -0.05, 0.04)
        self.skin_line = ensure_contrast(shade(shadow, -0.12, 0.05), (base,), 1.45)
        self.blush = mix(base, hexc("#EE6F78"), 0.5 if not dark else 0.28)
        grounds = (base, light)
        self.ink = ensure_contrast(INK, grounds, LINE_FLOOR)
        lip_rose = mix(shadow, hexc("#C0545E"), (0.3 + 0.35 * femininity) * (1.0 if not dark else 0.55))
        self.lip = mix(shadow, lip_rose, 0.35 + 0.45 * femininity)
        self.lip_dark = shade(self.lip, -0.1, 0.04)
        self.lip_light = shade(self.lip, 0.08 if not dark else 0.1)
        self.lip_line = ensure_contrast(shade(self.lip, -0.3, 0.1), grounds, LINE_FLOOR)
        self.mouth_in = ensure_contrast(hexc("#4A1C20"), grounds, LINE_FLOOR)
        self.mouth_deep = shade(self.mouth_in, -0.08)
        self.teeth = hexc("#FBF8F2")
        self.teeth_shadow = hexc("#DCD6CF")
        self.tongue = hexc("#D8676F")
        self.tongue_shadow = hexc("#B24D57")

        base_hair = HAIR_BASE[hair_i]
        grey_target = mix(GREY_HAIR, WHITE_HAIR, whiteness)
        self.hair = mix(base_hair, grey_target, greying)
        h, hl, hs = colorsys.rgb_to_hls(*self.hair)
        # hair shadow cooler and deeper, highlight warmer: three flat tones per hair mass
        self.hair_shadow = hls(h - 0.01, hl * 0.68, min(1.0, hs * 1.08))
        self.hair_light = hls(h + 0.012, hl + (1 - hl) * (0.24 if hl < 0.5 else 0.3), hs * 0.95)
        if hl < 0.2:  # black hair: a blue-grey sheen reads as shine, a brown one as dye
            self.hair_light = mix(self.hair_light, hexc("#6C7380"), 0.45)
        self.hair_line = shade(self.hair_shadow, -0.06)
        # brows: a step darker than the hair and always clear of the skin
        brow_base = mix(shade(base_hair, -0.1), grey_target, greying * 0.6)
        self.brow = ensure_contrast(brow_base, grounds, LINE_FLOOR + 0.15)
        beard_base = beard_colour(base_hair)
        self.beard = mix(beard_base, grey_target, min(1.0, greying * 1.1))
        if delta_e(self.beard, self.hair) < BEARD_HAIR_MIN_DELTA_E:
            self.beard = beard_colour(self.hair)
        self.beard_shadow = shade(self.beard, -0.08, 0.02)
        self.beard_light = shade(self.beard, 0.07)
        # stubble: the skin, a step darker and greyer (a stubble shaded in beard colour reads as paint)
        self.stubble = mix(base, mix(self.beard_shadow, hexc("#3A3A3A"), 0.6), 0.26 if not dark else 0.32)

        self.iris = EYE_BASE[eye_i]
        self.iris_dark = shade(self.iris, -0.22, 0.05)
        self.iris_light = shade(self.iris, 0.12)
        self.sclera = SCLERA

        self.bg = hls(background_hue, 0.80, 0.50)
        self.bg_light = hls(background_hue, 0.86, 0.48)
        self.bg_dark = hls(background_hue, 0.74, 0.42)
        self.shirt = hls(shirt_hue, 0.52, 0.46)
        self.shirt_shadow = hls(shirt_hue + 0.01, 0.42, 0.48)
        self.shirt_light = hls(shirt_hue, 0.61, 0.46)
        # a shirt too close to the background hue gets nudged darker so the silhouette reads
        dh = abs(((shirt_hue - background_hue) + 0.5) % 1.0 - 0.5)
        if dh < 0.08:
            self.shirt = shade(self.shirt, -0.14)
            self.shirt_shadow = shade(self.shirt_shadow, -0.12)
            self.shirt_light = shade(self.shirt_light, -0.12)
        self.frame_colours = (hexc("#2A2222"), hexc("#6B3E22"), hexc("#B08A4A"))

    def feature_colours(self) -> dict[str, RGB]:
        """The primary feature colours the contrast floor applies to (for tests and docs)."""
        return {"ink": self.ink, "brow": self.brow, "lip_line": self.lip_line, "mouth_in": self.mouth_in}
