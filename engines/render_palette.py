"""Colours for the avatar: hand-picked base swatches, shading tones derived from them.

Each material gets a base, a shadow and a highlight. Shadows are not plain darkening:
skin shadows go warmer and more saturated (subsurface look), hair shadows go cooler;
that is what keeps the flat style from looking muddy.
"""

from __future__ import annotations

import colorsys

from .render_scene import RGB


def hexc(s: str) -> RGB:
    s = s.lstrip("#")
    return (int(s[0:2], 16) / 255.0, int(s[2:4], 16) / 255.0, int(s[4:6], 16) / 255.0)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    t = max(0.0, min(1.0, t))
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def hls(h: float, light: float, s: float) -> RGB:
    return colorsys.hls_to_rgb(h % 1.0, max(0.0, min(1.0, light)), max(0.0, min(1.0, s)))


def shade(c: RGB, dl: float, ds: float = 0.0, dh: float = 0.0) -> RGB:
    """Shift lightness/saturation/hue of a colour; the one knob all derived tones use."""
    h, light, s = colorsys.rgb_to_hls(*c)
    return hls(h + dh, light + dl, s + ds)


# porcelain -> deep; chosen to read as natural under the pastel backgrounds
SKIN_BASE = [hexc(x) for x in ("#F8DCCB", "#F0C5A5", "#DDA883", "#C38758", "#93603D", "#5F3B27")]
HAIR_BASE = [hexc(x) for x in ("#28221F", "#45301F", "#6B4528", "#86391F", "#A4784C", "#E2C07D", "#C9652E")]
GREY_HAIR = hexc("#C9C9C9")
WHITE_HAIR = hexc("#EDEDEA")
EYE_BASE = [hexc(x) for x in ("#6B4226", "#3C2616", "#8A6B32", "#4E7F4B", "#4A7DB5", "#7D8B95")]
INK = hexc("#2B1D18")  # the line colour for lids, lashes, nostrils: warm near-black


def bucket(v: float, n: int) -> int:
    return min(n - 1, max(0, int(v * n)))


class Palette:
    """All colours for one face, computed once per set_params."""

    def __init__(
        self,
        skin_tone: float,
        hair_colour: float,
        greying: float,
        eye_colour: float,
        background_hue: float,
        shirt_hue: float,
        femininity: float,
        age: float,
    ) -> None:
        i = bucket(skin_tone, len(SKIN_BASE))
        self.skin = SKIN_BASE[i]
        dark = i >= 4
        self.skin_shadow = shade(self.skin, -0.08 if not dark else -0.07, 0.08, -0.008)
        self.skin_deep = shade(self.skin, -0.17 if not dark else -0.13, 0.1, -0.012)
        self.skin_light = shade(self.skin, 0.05 if not dark else 0.07, -0.02)
        self.blush = mix(self.skin, hexc("#F0707A"), 0.55 if not dark else 0.35)
        lip_rose = mix(self.skin_deep, hexc("#C0545E"), 0.35 + 0.35 * femininity)
        self.lip = mix(self.skin_deep, lip_rose, (0.25 + 0.45 * femininity) * (1.0 if not dark else 0.75))
        self.lip_dark = shade(self.lip, -0.12, 0.05)
        self.lip_light = shade(self.lip, 0.08)
        self.mouth_in = hexc("#4A1F22")
        self.teeth = hexc("#FBF8F2")
        self.tongue = hexc("#D66A6E")

        base_hair = HAIR_BASE[bucket(hair_colour, len(HAIR_BASE))]
        grey_target = mix(GREY_HAIR, WHITE_HAIR, max(0.0, (age - 0.7) / 0.3))
        self.hair = mix(base_hair, grey_target, greying)
        h, light, s = colorsys.rgb_to_hls(*self.hair)
        self.hair_shadow = hls(h - 0.01, light * 0.72, s * 1.05)
        self.hair_light = hls(h + 0.01, light + (1 - light) * 0.22, s * 0.95)
        # brows read as a feature, not as hair: always a step darker, more so on deep skin
        brow_base = shade(base_hair, -0.08 - 0.03 * i)
        self.brow = mix(brow_base, mix(GREY_HAIR, base_hair, 0.35), greying * 0.7)
        self.beard = mix(shade(base_hair, 0.0), grey_target, min(1.0, greying * 1.15))
        self.beard_shadow = shade(self.beard, -0.08)

        self.iris = EYE_BASE[bucket(eye_colour, len(EYE_BASE))]
        self.iris_dark = shade(self.iris, -0.14)
        self.sclera = hexc("#FBF8F4")
        self.ink = INK

        self.bg = hls(background_hue, 0.80, 0.52)
        self.bg_light = hls(background_hue, 0.86, 0.50)
        self.shirt = hls(shirt_hue, 0.52, 0.46)
        self.shirt_shadow = hls(shirt_hue + 0.01, 0.43, 0.48)
        self.shirt_light = hls(shirt_hue, 0.60, 0.46)
        # a shirt too close to the background hue gets nudged darker so the silhouette reads
        dh = abs(((shirt_hue - background_hue) + 0.5) % 1.0 - 0.5)
        if dh < 0.08:
            self.shirt = shade(self.shirt, -0.14)
            self.shirt_shadow = shade(self.shirt_shadow, -0.12)
            self.shirt_light = shade(self.shirt_light, -0.12)
