"""Renderer contract: sizes, formats, animation regions, morphing, param sensitivity, the art's
guarantees (hair silhouettes, contrast at every tone, facial hair apart from hair), visemes
and the per-part cache (an incremental redraw equals a full one).

Regions come from the face's own geometry (``FaceModel``, ``FaceLayers`` boxes), never from
pinned pixel boxes, so the art can change without rewriting the tests.
"""

from __future__ import annotations

import io
import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from engines.face import HAIR_STYLES, PARAM_NAMES, SPECS_BY_NAME, FaceParams
from engines.render import (
    BLINK_LEVELS,
    MOUTH_LEVELS,
    QUANTA,
    SENSITIVITY,
    VISIBLE_UNITS,
    AvatarRenderer,
    FaceLayers,
    mouth_variants,
    part_alpha,
    quantize,
    render_png,
    render_svg,
)
from engines.render_face import BALD_STYLES, HAIR_LENGTH_RANGE, PART_INPUTS, PARTS, FaceModel, resolve_hair_style
from engines.render_palette import (
    BEARD_HAIR_MIN_DELTA_E,
    EYE_FLOOR,
    HAIR_BASE,
    LINE_FLOOR,
    SKIN,
    contrast,
    delta_e,
    palette_for,
)
from engines.render_scene import DESIGN

SVG_NS = "{http://www.w3.org/2000/svg}"
V = lambda name, cat: SPECS_BY_NAME[name].value_of(cat)  # noqa: E731


def _face(**kw: float) -> FaceParams:
    return FaceParams.neutral().replace(**kw)


def _png_array(params: FaceParams, size: int = 256, **kw) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(render_png(params, size, **kw))).convert("RGB"), dtype=np.int16)


def _changed_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) bounding the pixels that differ, or None."""
    ys, xs = np.nonzero(np.any(a != b, axis=-1))
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _inside(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def _px(v: float, size: int = 256) -> int:
    return int(round(v * size / DESIGN))


def _region(model: FaceModel, y0: float, y1: float, x0: float, x1: float, size: int = 256) -> tuple[slice, slice]:
    return slice(_px(y0, size), _px(y1, size)), slice(_px(x0, size), _px(x1, size))


MASC_BEARD = dict(femininity=0.0, age=0.45, facial_hair=0.9)
DARK_RENDERER_FACE = dict(femininity=0.3, glasses=0.8, facial_hair=0.7, age=0.5)


@pytest.fixture(scope="module")
def renderer() -> AvatarRenderer:
    r = AvatarRenderer(size=256)
    r.set_params(_face(**DARK_RENDERER_FACE))
    return r


# -- formats ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [256, 384, 512])
def test_png_sizes(size: int) -> None:
    data = render_png(FaceParams.neutral(), size=size)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.size == (size, size)
    assert img.mode == "RGB"


@pytest.mark.parametrize("size", [0, 100, 255, 1024, 256.0, "256"])
def test_invalid_size_rejected(size) -> None:
    with pytest.raises(ValueError, match="256"):
        render_png(FaceParams.neutral(), size=size)
    with pytest.raises(ValueError):
        AvatarRenderer(size=size)
    with pytest.raises(ValueError):
        render_svg(FaceParams.neutral(), size=size)


@pytest.mark.parametrize("size", [256, 512])
def test_svg_parses(size: int) -> None:
    doc = render_svg(_face(glasses=0.9, freckles=0.9), size=size, mouth=0.5)
    root = ET.fromstring(doc.encode("utf-8"))
    assert root.tag == f"{SVG_NS}svg"
    assert root.get("width") == str(size) and root.get("height") == str(size)
    assert root.get("viewBox") == "0 0 512 512"
    paths = root.findall(f".//{SVG_NS}path")
    assert len(paths) > 60  # a real drawing, not an empty frame
    ids = {c.get("id") for c in root.iter(f"{SVG_NS}clipPath")}
    for p in paths:
        ref = p.get("clip-path")
        if ref:
            assert ref[5:-1] in ids


def test_svg_and_png_come_from_the_same_scene() -> None:
    """The SVG lists one path per shape the raster draws, so changes show up in both."""
    a, b = _face(glasses=0.2), _face(glasses=0.9)
    assert render_svg(b).count("<path ") > render_svg(a).count("<path ")
    assert _mad(_png_array(a), _png_array(b)) > 0.5


def test_svg_renders_like_png() -> None:
    """An independent SVG renderer (Skia's SVG DOM) must reproduce the PNG: one scene, two outputs."""
    skia = pytest.importorskip("skia")
    p = _face(femininity=0.1, age=0.8, greying=0.8, age_lines=0.9, facial_hair=0.8, glasses=0.7)
    # expression values on the pre-drawn levels (between levels a frame blends two pictures)
    mouth, blink = 2 / (MOUTH_LEVELS - 1), 1 / (BLINK_LEVELS - 1)
    svg = render_svg(p, 256, mouth=mouth, blink=blink)
    # copyData: without it the stream points into a bytes object Python may already have freed
    # (the DOM then sometimes failed to parse: an intermittent None)
    dom = skia.SVGDOM.MakeFromStream(skia.MemoryStream(svg.encode("utf-8"), True))
    assert dom is not None
    info = skia.ImageInfo.Make(256, 256, skia.kRGBA_8888_ColorType, skia.kPremul_AlphaType)
    surf = skia.Surface.MakeRaster(info)
    dom.setContainerSize(skia.Size(256, 256))
    dom.render(surf.getCanvas())
    from_svg = surf.toarray()[:, :, :3].astype(np.int16)
    png = _png_array(p, 256, mouth=mouth, blink=blink)
    diff = np.abs(from_svg - png)
    assert diff.mean() < 0.6
    # edge pixels differ: a part's shading clipped to its own shape is painted atop that shape
    # (its anti-aliased edge), where an SVG viewer builds a clip mask (measured: p99.5 14, was 10)
    assert np.percentile(diff, 99.5) <= 16


def test_frame_shape_and_dtype(renderer: AvatarRenderer) -> None:
    f = renderer.frame(0.3, 0.2)
    assert f.shape == (256, 256, 3)
    assert f.dtype == np.uint8
    assert f.flags["C_CONTIGUOUS"]
    f[:] = 0  # the caller owns the frame: writing to it must not corrupt the cache
    assert renderer.frame(0.3, 0.2).max() > 0


def test_rest_frame_matches_png() -> None:
    """A live frame is the PNG of the face it shows; that face is within a quantum of the params."""
    p = _face(femininity=0.8, hair_style=0.65)
    r = AvatarRenderer(256)
    r.set_params(p)
    frame = r.frame(0.0, 0.0).astype(np.int16)
    assert np.array_equal(frame, _png_array(r.layers.shown))
    assert np.all(np.abs(r.layers.shown.vector - p.vector) <= QUANTA + 1e-6)
    assert _mad(frame, _png_array(p)) < 0.5


def test_first_face_is_neutral() -> None:
    r = AvatarRenderer(256)
    assert np.array_equal(r.frame(0, 0).astype(np.int16), _png_array(FaceParams.neutral()))


def test_deterministic() -> None:
    p = _face(femininity=0.2, facial_hair=0.9, glasses=0.95, freckles=0.9)
    assert render_png(p, 384) == render_png(p, 384)
    assert render_svg(p) == render_svg(p)
    r1, r2 = AvatarRenderer(256), AvatarRenderer(256)
    r1.set_params(p)
    r2.set_params(p)
    assert r1.frame(0.6, 0.4, viseme="O").tobytes() == r2.frame(0.6, 0.4, viseme="O").tobytes()


def test_set_params_type_checked() -> None:
    r = AvatarRenderer(256)
    with pytest.raises(TypeError):
        r.set_params({"age": 0.5})  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["X", {"A": float("nan")}, {"Q": 1.0}])
def test_bad_viseme_rejected(renderer: AvatarRenderer, bad) -> None:
    with pytest.raises(ValueError):
        renderer.frame(0.5, 0.0, viseme=bad)


# -- animation regions ----------------------------------------------------------------------
def test_mouth_changes_only_mouth_region(renderer: AvatarRenderer) -> None:
    box = renderer.layers.mouth.box
    closed = renderer.frame(0.0, 0.0)
    for viseme in ("A", "E", "O", "F"):
        opened = renderer.frame(1.0, 0.0, viseme=viseme)
        changed = _changed_box(closed, opened)
        assert changed is not None and _inside(changed, box), (viseme, changed, box)
    x0, y0, x1, y1 = box
    assert (x1 - x0) * (y1 - y0) < 0.06 * 256 * 256  # a small crop, not the face
    opened = renderer.frame(1.0, 0.0)
    assert _mad(closed[y0:y1, x0:x1], opened[y0:y1, x0:x1]) > 10  # a dark open mouth
    half = renderer.frame(0.5, 0.0)
    assert 0 < _mad(closed, half) < _mad(closed, opened)


def test_blink_changes_only_eye_region(renderer: AvatarRenderer) -> None:
    box = renderer.layers.eyes.box
    open_ = renderer.frame(0.0, 0.0)
    shut = renderer.frame(0.0, 1.0)
    changed = _changed_box(open_, shut)
    assert changed is not None and _inside(changed, box)
    assert changed[0] < 128 - 10 and changed[2] > 128 + 10  # both eyes
    both = renderer.frame(1.0, 1.0)
    mouth_only = renderer.frame(1.0, 0.0)
    y_split = renderer.layers.mouth.box[1]
    assert box[3] <= y_split
    assert np.array_equal(both[:y_split], shut[:y_split])
    assert np.array_equal(both[y_split:], mouth_only[y_split:])


def test_visemes_are_distinct_shapes() -> None:
    renderer = AvatarRenderer(256)
    renderer.set_params(_face(femininity=0.6))
    x0, y0, x1, y1 = renderer.layers.mouth.box
    crops = {v: renderer.frame(1.0, 0.0, viseme=v)[y0:y1, x0:x1] for v in ("A", "E", "O", "F")}
    for a, b in itertools.combinations(crops, 2):
        assert _mad(crops[a], crops[b]) > 3.0, (a, b)
    rest = renderer.frame(0.0, 0.0)[y0:y1, x0:x1]
    assert np.array_equal(renderer.frame(1.0, 0.0, viseme="rest")[y0:y1, x0:x1], rest)  # M/B/P: closed whatever the loudness

    def white(crop: np.ndarray) -> int:  # teeth: light and nearly grey
        c = crop.astype(np.int16)
        return int(np.count_nonzero((c.min(axis=-1) > 215) & (c.max(axis=-1) - c.min(axis=-1) < 24)))

    # teeth at the open shapes and the F, none at rest
    assert white(crops["A"]) > 10 and white(crops["E"]) > 10 and white(crops["F"]) > 5
    assert white(rest) < white(crops["E"]) / 4
    # a weight map draws the heaviest open shape (no ghostly dissolve of two mouths), and the
    # closed shape's weight closes the lips
    mixed = renderer.frame(1.0, 0.0, viseme={"A": 0.6, "O": 0.4, "E": 0.0})
    assert np.array_equal(mixed, renderer.frame(1.0, 0.0, viseme="A"))
    half_shut = renderer.frame(1.0, 0.0, viseme={"rest": 0.5, "O": 0.5})
    assert np.array_equal(half_shut, renderer.frame(0.5, 0.0, viseme="O"))


def test_morph_endpoints_and_crossfade() -> None:
    a = _face(femininity=0.1, hair_style=0.05, background_hue=0.1)
    b = _face(femininity=0.9, hair_style=0.75, hair_length=0.9, background_hue=0.6)
    ra = AvatarRenderer(256)
    ra.set_params(a)
    r = AvatarRenderer(256)
    r.set_params(a)
    r.set_params(b)
    fa, fb = ra.frame(0.4, 0.3), r.layers.frame(0.4, 0.3)
    assert _mad(fb, _png_array(b)) < 3  # the current face is b (drawn from a: within a quantum of it)
    assert np.array_equal(r.frame(0.4, 0.3, morph=0.0), fa)
    assert np.array_equal(r.frame(0.4, 0.3, morph=1.0), fb)
    assert np.array_equal(r.frame(0.4, 0.3), fb)
    mid = r.frame(0.4, 0.3, morph=0.5).astype(np.int16)
    expect = (fa.astype(np.int16) + fb.astype(np.int16)) / 2
    assert np.abs(mid - expect).max() <= 1
    q1 = r.frame(0.4, 0.3, morph=0.25)
    q3 = r.frame(0.4, 0.3, morph=0.75)
    assert _mad(q1, fa) < _mad(q3, fa)


def test_refinement_mid_morph_does_not_jump() -> None:
    a, b, c = _face(background_hue=0.0), _face(background_hue=0.33), _face(background_hue=0.66)
    r = AvatarRenderer(256)
    r.set_params(a)
    r.set_params(b)
    shown = r.frame(0.0, 0.0, morph=0.5)
    r.set_params(c)
    assert np.abs(r.frame(0.0, 0.0, morph=0.0).astype(np.int16) - shown).max() <= 1


# -- params move the picture ----------------------------------------------------------------
def test_different_params_differ() -> None:
    rng = np.random.default_rng(7)
    imgs = [_png_array(FaceParams(rng.uniform(0, 1, len(PARAM_NAMES)))) for _ in range(4)]
    for i, j in itertools.combinations(range(len(imgs)), 2):
        assert _mad(imgs[i], imgs[j]) > 8.0


def test_shape_params_move_the_geometry_visibly() -> None:
    """Each shape param, swept over [0, 1], changes its feature by several pixels at 256 px."""
    m0 = FaceModel(quantize(_face(head_width=0.0, face_length=0.0, jaw_width=0.0, eye_size=0.0, nose_width=0.0, mouth_width=0.0)))
    m1 = FaceModel(quantize(_face(head_width=1.0, face_length=1.0, jaw_width=1.0, eye_size=1.0, nose_width=1.0, mouth_width=1.0)))
    px = 256 / DESIGN
    assert (m1.hw - m0.hw) * 2 * px > 14  # head width
    assert (m1.hh - m0.hh) * px > 14  # face length
    assert (m1.half_width(m1.y_chin - 40) - m0.half_width(m0.y_chin - 40)) * 2 * px > 10  # jaw
    assert (m1.eye.ew - m0.eye.ew) * 2 * px > 6
    assert (m1.nose_w - m0.nose_w) * 2 * px > 8
    assert (m1.mw - m0.mw) * 2 * px > 10
    a, b = _png_array(_face(face_length=0.0, head_width=0.0)), _png_array(_face(face_length=1.0, head_width=1.0))
    assert _mad(a, b) > 6


def test_facial_hair_changes_chin() -> None:
    base = dict(MASC_BEARD, facial_hair_style=V("facial_hair_style", "full_beard"))
    a = _png_array(_face(**{**base, "facial_hair": 0.0}))
    b = _png_array(_face(**base))
    m = FaceModel(quantize(_face(**base)))
    chin = _region(m, m.y_mouth + m.ll + 10, m.y_chin, 256 - m.mw, 256 + m.mw)
    forehead = _region(m, m.y_top + 30, m.y_eye - m.eye.eh - 30, 256 - 30, 256 + 30)
    assert _mad(a[chin], b[chin]) > 15
    assert np.array_equal(a[forehead], b[forehead])
    assert np.array_equal(a, _png_array(_face(**{**base, "facial_hair": 0.1})))  # below the threshold nothing is drawn
    fem = {**base, "femininity": 1.0}
    assert np.array_equal(_png_array(_face(**{**fem, "facial_hair": 0.0})), _png_array(_face(**fem)))


def test_femininity_changes_face() -> None:
    a = _png_array(_face(femininity=0.0))
    m = _png_array(_face(femininity=0.5))
    b = _png_array(_face(femininity=1.0))
    assert _mad(a, b) > 3
    assert _mad(a, m) < _mad(a, b) and _mad(b, m) < _mad(a, b)  # the androgynous face sits between


def test_age_changes_face() -> None:
    child = _png_array(_face(age=0.05))
    adult = _png_array(_face(age=0.3))
    senior = _png_array(_face(age=0.95, greying=1.0, age_lines=1.0, baldness=0.3))
    assert _mad(child, adult) > 3
    m = FaceModel(quantize(_face(age=0.3)))
    hair = _region(m, m.y_top - 5, m.y_top + 40, 256 - 50, 256 + 50)
    assert _mad(adult[hair], senior[hair]) > 20  # grey hair
    assert np.array_equal(child, _png_array(_face(age=0.05, greying=1.0, age_lines=1.0)))  # gated by age


def test_skin_tone_and_extras() -> None:
    light = _png_array(_face(skin_tone=0.05))
    deep = _png_array(_face(skin_tone=0.95))
    m = FaceModel(quantize(_face()))
    cheek = _region(m, m.y_nose - 10, m.y_nose + 10, 256 - m.eye.ex - 10, 256 - m.eye.ex + 10)
    assert light[cheek].mean() - deep[cheek].mean() > 60
    plain = _png_array(_face(freckles=0.5))
    freckled = _png_array(_face(freckles=1.0))
    assert int(np.count_nonzero(np.any(np.abs(plain - freckled) > 12, axis=-1))) > 40
    assert np.array_equal(plain, _png_array(_face(freckles=0.0)))


# -- hair -------------------------------------------------------------------------------------
def test_hair_style_respects_length() -> None:
    for style in HAIR_STYLES:
        for length in np.linspace(0, 1, 11):
            got = resolve_hair_style(style, float(length))
            lo, hi = HAIR_LENGTH_RANGE[got]
            assert lo <= length <= hi
            assert got not in BALD_STYLES  # only baldness draws a bald head
            if (
                style not in BALD_STYLES
                and lo <= length <= hi
                and HAIR_LENGTH_RANGE[style][0] <= length <= HAIR_LENGTH_RANGE[style][1]
            ):
                assert got == style
    assert resolve_hair_style("afro", 0.2, baldness=0.9) == "bald"
    assert resolve_hair_style("crew", 0.2, baldness=0.5) == "receding"
    long_ = _face(hair_style=V("hair_style", "long_straight"), hair_length=0.05)
    assert FaceModel(quantize(long_)).style != "long_straight"


def _style_face(style: str) -> FaceParams:
    lo, hi = HAIR_LENGTH_RANGE[style]
    kw = dict(hair_style=V("hair_style", style), hair_length=(lo + hi) / 2, femininity=0.5, age=0.35, baldness=0.0)
    if style == "receding":
        kw.update(baldness=0.55, age=0.6, femininity=0.1)
    if style == "bald":
        kw.update(baldness=1.0, age=0.7, femininity=0.1)
    return _face(**kw)


def test_hair_silhouettes_are_distinct() -> None:
    """At least 14 styles, and every pair of hair silhouettes differs (mask IoU below a bound)."""
    masks = {}
    for style in HAIR_STYLES:
        p = _style_face(style)
        assert FaceModel(quantize(p)).style == style
        masks[style] = part_alpha(p, ("hair_back", "hair_front"), 256) > 127
    assert len(masks) >= 14
    worst = 0.0
    for a, b in itertools.combinations(masks, 2):
        inter = np.count_nonzero(masks[a] & masks[b])
        union = np.count_nonzero(masks[a] | masks[b])
        iou = inter / union
        worst = max(worst, iou)
        assert iou < 0.9, (a, b, iou)
    assert worst > 0.3  # the masks are real hair, overlapping on the skull


def test_hair_has_three_tones_and_strands() -> None:
    for style in ("side_part", "long_wavy", "afro", "curly_short"):
        p = _style_face(style)
        mask = part_alpha(p, ("hair_back", "hair_front"), 256) > 250
        img = _png_array(p)[mask]
        colours = {tuple(c) for c in img.tolist()}
        m = FaceModel(quantize(p))
        pal = m.pal
        want = [tuple(int(round(v * 255)) for v in c) for c in (pal.hair, pal.hair_shadow, pal.hair_light)]
        for w in want:
            near = min(sum(abs(a - b) for a, b in zip(w, c)) for c in colours)
            assert near <= 6, (style, w)


# -- readability at every tone ----------------------------------------------------------------
@pytest.mark.parametrize("tone", range(len(SKIN)))
def test_contrast_floor_at_every_tone(tone: int) -> None:
    """Feature lines clear LINE_FLOOR against the skin, each eye has a part at EYE_FLOOR."""
    skin_v = (tone + 0.5) / len(SKIN)
    for hair in range(len(HAIR_BASE)):
        for grey in (0.0, 1.0):
            pal = palette_for(skin_v, (hair + 0.5) / len(HAIR_BASE), grey, 0.5, 0.5, 0.5, 0.5, 0.5)
            for name, colour in pal.feature_colours().items():
                for ground in (pal.skin, pal.skin_light):
                    assert contrast(colour, ground) >= LINE_FLOOR, (tone, hair, grey, name)
            eye = max(contrast(pal.ink, pal.skin), contrast(pal.sclera, pal.skin))
            assert eye >= EYE_FLOOR
    # and in the picture: the brow and lid pixels against the cheek they sit above
    p = _face(skin_tone=skin_v, hair_colour=V("hair_colour", "blond"))
    img = _png_array(p).astype(np.float64) / 255
    m = FaceModel(quantize(p))
    g = m.eye
    cheek = img[_region(m, m.y_nose - 6, m.y_nose + 4, 256 - g.ex - 6, 256 - g.ex + 6)].reshape(-1, 3).mean(axis=0)
    eyes = img[_region(m, m.y_eye - g.eh * 2 - 14, m.y_eye + g.eh, 256 - g.ex - g.ew, 256 - g.ex + g.ew)].reshape(-1, 3)
    lum = eyes @ np.array([0.2126, 0.7152, 0.0722])
    darkest = eyes[np.argsort(lum)[: max(4, len(lum) // 25)]].mean(axis=0)
    assert contrast(tuple(darkest), tuple(cheek)) >= LINE_FLOOR


def test_skin_has_a_clean_second_tone() -> None:
    """Shading is drawn: the face holds few distinct flat colours, and base + shadow dominate."""
    for tone in range(len(SKIN)):
        p = _face(skin_tone=(tone + 0.5) / len(SKIN), hair_style=V("hair_style", "bald"), baldness=1.0, age=0.7)
        m = FaceModel(quantize(p))
        mask = part_alpha(p, ("head",), 256) > 250
        img = _png_array(p)[mask]
        base, shadow = (tuple(int(round(v * 255)) for v in c) for c in (m.pal.skin, m.pal.skin_shadow))
        near_base = np.all(np.abs(img - np.array(base)) <= 3, axis=-1)
        near_shadow = np.all(np.abs(img - np.array(shadow)) <= 3, axis=-1)
        assert near_base.mean() > 0.25 and near_shadow.mean() > 0.05, tone
        assert contrast(m.pal.skin, m.pal.skin_shadow) > 1.12  # a visible second tone


# -- facial hair ------------------------------------------------------------------------------
@pytest.mark.parametrize("hair", range(len(HAIR_BASE)))
def test_facial_hair_colour_differs_from_hair(hair: int) -> None:
    for grey in (0.0, 0.3, 0.7, 1.0):
        pal = palette_for(0.5, (hair + 0.5) / len(HAIR_BASE), grey, 0.5, 0.5, 0.5, 0.0, 0.5)
        assert delta_e(pal.beard, pal.hair) >= BEARD_HAIR_MIN_DELTA_E - 0.5, (hair, grey)


@pytest.mark.parametrize("style", ["short_beard", "full_beard", "circle", "goatee", "chinstrap"])
def test_facial_hair_is_its_own_shape(style: str) -> None:
    """The beard stays on the lower face: the cheeks under the eyes are skin, and beard and hair
    touch only in a narrow sideburn strip (no ring of hair round the face)."""
    for hair_style in ("side_part", "undercut", "afro", "crew", "coily_short"):
        lo, hi = HAIR_LENGTH_RANGE[hair_style]
        p = _face(
            **MASC_BEARD,
            facial_hair_style=V("facial_hair_style", style),
            hair_style=V("hair_style", hair_style),
            hair_length=(lo + hi) / 2,
            hair_colour=V("hair_colour", "blond"),
        )
        m = FaceModel(quantize(p))
        assert m.beard_amt > 0.5
        beard = part_alpha(p, ("facial_hair",), 256) > 127
        hair = part_alpha(p, ("hair_back", "hair_front"), 256) > 127
        assert beard.any()
        ys, xs = np.nonzero(beard)
        # nothing of the beard above the eyes' lower lids
        assert ys.min() >= _px(m.y_eye + m.eye.eh), (style, hair_style)
        # the cheek under each eye is not beard
        for side in (-1, 1):
            cheek = _region(m, m.y_eye + m.eye.eh + 8, m.y_nose, 256 + side * m.eye.ex - 6, 256 + side * m.eye.ex + 6)
            assert not beard[cheek].any(), (style, hair_style, side)
        # below the sideburns (where beard and hair meet by nature) they share next to nothing
        low = slice(_px(m.y_eye + 30), None)
        shared = np.count_nonzero(beard[low] & hair[low])
        assert shared <= 0.02 * np.count_nonzero(beard), (style, hair_style, shared)


# -- visemes ------------------------------------------------------------------------------------
def _phoneme(text: str, voice: str = "en-us") -> np.ndarray:
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from engines.audio import decode_audio

    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng not installed")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "p.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        return decode_audio(wav).pcm


def _dominant(pcm: np.ndarray, rate: int = 16000) -> str:
    from engines.viseme import VisemeEstimator

    est = VisemeEstimator()
    hop = int(0.02 * rate)
    active = np.flatnonzero(np.abs(pcm) > 0.01 * np.abs(pcm).max() + 1e-9)
    a0, a1 = (active[0], active[-1]) if active.size else (0, len(pcm))
    acc: dict[str, float] = {}
    for i in range(0, len(pcm) - hop, hop):
        w = est.push(pcm[i : i + hop], rate)
        if a0 + 0.12 * rate < i < a1 - 0.12 * rate:
            for k, x in w.items():
                acc[k] = acc.get(k, 0.0) + x
    return max(acc, key=acc.get)


@pytest.mark.parametrize(
    "text,voice,want",
    [
        ("[[a:a:a:a:]]", "en-us", "A"),
        ("[[a:a:a:a:]]", "en-us+f3", "A"),
        ("[[i:i:i:i:]]", "en-us", "E"),
        ("[[i:i:i:i:]]", "fr+f2", "E"),
        ("[[o:o:o:o:]]", "en-us", "O"),
        ("[[u:u:u:u:]]", "fr+f2", "O"),
        ("[[ffffffff]]", "en-us", "F"),
        ("[[ssssssss]]", "en-us", "E"),
        ("[[mmmmmmmm]]", "en-us", "rest"),
    ],
)
def test_viseme_estimator_on_synthetic_sounds(text: str, voice: str, want: str) -> None:
    assert _dominant(_phoneme(text, voice)) == want


def test_viseme_estimator_silence_rate_and_smoothing() -> None:
    from engines.viseme import SMOOTH_S, VisemeEstimator

    est = VisemeEstimator()
    for _ in range(20):
        w = est.push(np.zeros(320, np.float32))
    assert est.shape == "rest" and w["rest"] > 0.99
    pcm = _phoneme("[[a:a:a:a:]]")
    pcm48 = np.repeat(pcm, 3)  # the same sound at 48 kHz (what WebRTC delivers)
    assert _dominant(pcm48, 48000) == "A"
    # smooth transitions: one 20 ms packet moves each weight by at most 1 - exp(-dt / tau)
    est = VisemeEstimator()
    step = 1 - np.exp(-0.02 / SMOOTH_S)
    prev = dict(est.weights)
    for i in range(0, 16000, 320):
        w = est.push(pcm[i : i + 320])
        assert max(abs(w[k] - prev[k]) for k in w) <= step + 1e-6
        assert abs(sum(w.values()) - 1.0) < 1e-6
        prev = dict(w)
    with pytest.raises(ValueError):
        est.push(np.array([np.nan, 0.0], np.float32))
    # WebRTC's packets (48 kHz stereo int16, interleaved) give the weights their mono 16 kHz
    # float equivalent gives: the downmix, the rate and the int16 scale happen in one product
    mono16, stereo48 = VisemeEstimator(), VisemeEstimator()
    int16 = np.clip(pcm * 32767, -32768, 32767).astype(np.int16)
    for i in range(0, 8000, 320):
        a = mono16.push(int16[i : i + 320].astype(np.float32) / 32768.0)
        b = stereo48.push(np.repeat(np.repeat(int16[i : i + 320], 3), 2), 48000, channels=2)
        assert max(abs(a[k] - b[k]) for k in a) < 1e-4
    with pytest.raises(ValueError, match="channels"):
        stereo48.push(int16[:320], 48000, channels=0)
    # packets are only held until a frame reads them (analyse=False, the call's audio path): the
    # weights then are those of one push of the same audio, and a caller that reuses its buffer
    # after pushing does not change what was heard
    held, whole = VisemeEstimator(), VisemeEstimator()
    buf = np.empty(960, np.int16)
    for i in range(0, 4800, 320):
        buf[:] = np.repeat(int16[i : i + 320], 3)
        held.push(buf, 48000, analyse=False)
        buf[:] = 0
    expected = whole.push(np.repeat(int16[:4800], 3), 48000)
    assert held.update() == expected and expected["rest"] < 0.9


def test_formants_are_the_textbook_ones() -> None:
    """The formants come from LAPACK directly (a Cholesky solve, the companion matrix's
    eigenvalues): the same frequencies as the textbook chain in numpy (pre-emphasis, Hamming
    window, autocorrelation, ``np.linalg.solve``, ``np.roots``)."""
    from engines.viseme import LPC_ORDER, RATE, formants

    def reference(x: np.ndarray) -> list[float]:
        y = np.append(x[0], x[1:] - 0.63 * x[:-1]) * np.hamming(len(x))
        r = np.correlate(y, y, "full")[len(y) - 1 : len(y) + LPC_ORDER]
        r[0] *= 1.0 + 1e-6
        toeplitz = r[np.abs(np.subtract.outer(np.arange(LPC_ORDER), np.arange(LPC_ORDER)))]
        roots = np.roots(np.concatenate(([1.0], np.linalg.solve(toeplitz, -r[1:]))))
        roots = roots[roots.imag > 0.01]
        f = np.angle(roots) * RATE / (2 * np.pi)
        bw = -0.5 * RATE / np.pi * np.log(np.abs(roots))
        return sorted(f[(f > 200) & (f < 4000) & (bw < 500)].tolist())

    rng = np.random.default_rng(3)
    vowel = _phoneme("[[a:a:a:a:]]")[4000:4640].astype(np.float64)
    seen = 0
    for k in range(60):
        x = vowel if k == 0 else np.convolve(rng.standard_normal(700), rng.standard_normal(12), "valid")[:640]
        want, got = reference(x), formants(x)
        assert len(got) == len(want)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        seen += len(got)
    assert seen > 60 and formants(np.zeros(640)) == []


# -- the per-part cache ---------------------------------------------------------------------------
def _part_signature(model: FaceModel, name: str):
    if name == "mouth":
        return tuple(repr(s) for v, o in mouth_variants() for s in model.mouth_shapes(v, o))
    if name == "eyes":
        return tuple(repr(s) for b in (0.0, 1.0) for side in (-1, 1) for s in model.eye_shapes(b, side))
    return tuple(repr(s) for s in model.part_shapes(name))


def test_part_inputs_are_complete() -> None:
    """A part's shapes depend only on the params listed for it: the cache key is the truth."""
    rng = np.random.default_rng(3)
    for trial in range(3):
        base = quantize(
            FaceParams(rng.uniform(0.05, 0.95, len(PARAM_NAMES))).replace(facial_hair=0.9, femininity=0.1 + 0.3 * trial)
        )
        m0 = FaceModel(base)
        sig0 = {n: _part_signature(m0, n) for n in PARTS}
        for name in PARAM_NAMES:
            for new in (0.02, 0.97):
                m1 = FaceModel(quantize(base.replace(**{name: new})))
                for part in PARTS:
                    if name not in PART_INPUTS[part]:
                        assert _part_signature(m1, part) == sig0[part], (part, name)


def _assert_same_layers(a: FaceLayers, b: FaceLayers) -> None:
    assert np.array_equal(a.base, b.base)
    for kind in ("mouth", "eyes"):
        x, y = getattr(a, kind), getattr(b, kind)
        assert x.box == y.box
        for k in mouth_variants() if kind == "mouth" else [i / (BLINK_LEVELS - 1) for i in range(BLINK_LEVELS)]:
            assert np.array_equal(x.get(k), y.get(k)), (kind, k)


def test_incremental_redraw_equals_full_redraw() -> None:
    """Pixel for pixel, for single-param changes and for random refinement walks."""
    start = quantize(_face(**DARK_RENDERER_FACE, hair_style=V("hair_style", "long_wavy"), hair_length=0.8))
    prev = FaceLayers.build(start, 256)
    for name, value in [
        ("glasses", 0.95),
        ("eye_size", 0.9),
        ("hair_colour", 0.8),
        ("mouth_width", 0.1),
        ("background_hue", 0.2),
        ("facial_hair_style", 0.99),
        ("face_length", 0.7),
        ("skin_tone", 0.9),
    ]:
        p = start.replace(**{name: value})
        inc = FaceLayers.build(p, 256, previous=prev)
        assert inc.stats["parts_redrawn"] >= 1, name
        _assert_same_layers(inc, FaceLayers.build(inc.shown, 256))
    rng = np.random.default_rng(11)
    cur = FaceLayers.build(start, 256)
    v = start.vector.astype(np.float64)
    for _ in range(12):
        v = np.clip(v + rng.normal(0, 0.03, v.shape), 0, 1)
        cur = FaceLayers.build(FaceParams(v), 256, previous=cur)
        _assert_same_layers(cur, FaceLayers.build(cur.shown, 256))


def test_invisible_changes_cost_nothing() -> None:
    start = _face(**DARK_RENDERER_FACE)
    a = FaceLayers.build(start, 256)
    tiny = start.replace(face_length=start.face_length + 0.4 * QUANTA[PARAM_NAMES.index("face_length")])
    assert FaceLayers.build(tiny, 256, previous=a) is a
    r = AvatarRenderer(256)
    r.set_params(start)
    before = r.layers
    r.set_params(tiny)
    assert r.layers is before


def test_one_quantum_is_below_visibility() -> None:
    """A step of QUANTA moves no drawn point further than ~VISIBLE_UNITS (re-measures SENSITIVITY)."""
    rng = np.random.default_rng(0)

    def points(p: FaceParams) -> np.ndarray:
        sc = FaceModel(p).scene(0.0, 0.0)
        return np.array([v for s in sc.shapes for op in s.path.ops if op[0] != "Z" for v in op[1:]])

    faces = [FaceParams(rng.uniform(0.1, 0.9, len(PARAM_NAMES))) for _ in range(3)]
    for name in SENSITIVITY:
        q = QUANTA[PARAM_NAMES.index(name)]
        for f in faces:
            a, b = points(f), points(f.replace(**{name: f[name] + q}))
            if a.shape == b.shape:
                assert np.abs(a - b).max() <= VISIBLE_UNITS * 1.35, (name, np.abs(a - b).max())
