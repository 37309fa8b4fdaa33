"""Renderer contract: sizes, formats, animation regions, morphing, param sensitivity."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from engines.face import SPECS_BY_NAME, FaceParams
from engines.render import AvatarRenderer, render_png, render_svg
from engines.render_face import HAIR_LENGTH_RANGE, resolve_hair_style

SVG_NS = "{http://www.w3.org/2000/svg}"


def _face(**kw: float) -> FaceParams:
    return FaceParams.neutral().replace(**kw)


def _png_array(params: FaceParams, size: int = 256, **kw: float) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(render_png(params, size, **kw))).convert("RGB"), dtype=np.int16)


def _changed_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) bounding the pixels that differ, or None."""
    ys, xs = np.nonzero(np.any(a != b, axis=-1))
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


@pytest.fixture(scope="module")
def renderer() -> AvatarRenderer:
    r = AvatarRenderer(size=256)
    r.set_params(_face(femininity=0.3, glasses=0.8, facial_hair=0.7, age=0.5))
    return r


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
    assert len(paths) > 40  # a real drawing, not an empty frame
    # every clip-path reference resolves to a defined clipPath
    ids = {c.get("id") for c in root.iter(f"{SVG_NS}clipPath")}
    for p in paths:
        ref = p.get("clip-path")
        if ref:
            assert ref[5:-1] in ids


def test_svg_and_png_come_from_the_same_scene() -> None:
    """The SVG lists one path per shape the raster draws, so changes show up in both."""
    a, b = _face(glasses=0.2), _face(glasses=0.9)
    na = render_svg(a).count("<path ")
    nb = render_svg(b).count("<path ")
    assert nb > na
    assert _mad(_png_array(a), _png_array(b)) > 0.5


def test_frame_shape_and_dtype(renderer: AvatarRenderer) -> None:
    f = renderer.frame(0.3, 0.2)
    assert f.shape == (256, 256, 3)
    assert f.dtype == np.uint8
    assert f.flags["C_CONTIGUOUS"]
    # the caller owns the frame: writing to it must not corrupt the cache
    f[:] = 0
    assert renderer.frame(0.3, 0.2).max() > 0


def test_rest_frame_matches_png() -> None:
    p = _face(femininity=0.8, hair_style=0.65)
    r = AvatarRenderer(256)
    r.set_params(p)
    assert np.array_equal(r.frame(0.0, 0.0).astype(np.int16), _png_array(p))


def test_mouth_changes_only_mouth_region(renderer: AvatarRenderer) -> None:
    closed = renderer.frame(0.0, 0.0)
    opened = renderer.frame(1.0, 0.0)
    box = _changed_box(closed, opened)
    assert box is not None
    x0, y0, x1, y1 = box
    assert 80 <= x0 and x1 <= 176, box  # centred, narrower than the face
    assert 150 <= y0 and y1 <= 215, box  # lower face only
    assert (x1 - x0) * (y1 - y0) < 0.06 * 256 * 256
    assert _mad(closed[y0:y1, x0:x1], opened[y0:y1, x0:x1]) > 10  # a dark open mouth
    half = renderer.frame(0.5, 0.0)
    assert 0 < _mad(closed, half) < _mad(closed, opened)


def test_blink_changes_only_eye_region(renderer: AvatarRenderer) -> None:
    open_ = renderer.frame(0.0, 0.0)
    shut = renderer.frame(0.0, 1.0)
    box = _changed_box(open_, shut)
    assert box is not None
    x0, y0, x1, y1 = box
    assert 60 <= x0 and x1 <= 196, box
    assert 95 <= y0 and y1 <= 150, box
    # both eyes change: the box spans both sides of the midline
    assert x0 < 118 and x1 > 138
    # blink and mouth are independent regions
    both = renderer.frame(1.0, 1.0)
    mouth_only = renderer.frame(1.0, 0.0)
    assert np.array_equal(both[:150], shut[:150])
    assert np.array_equal(both[150:], mouth_only[150:])


def test_morph_endpoints_and_crossfade() -> None:
    a = _face(femininity=0.1, hair_style=0.05, background_hue=0.1)
    b = _face(femininity=0.9, hair_style=0.75, hair_length=0.9, background_hue=0.6)
    ra, rb = AvatarRenderer(256), AvatarRenderer(256)
    ra.set_params(a)
    rb.set_params(b)
    r = AvatarRenderer(256)
    r.set_params(a)
    r.set_params(b)
    fa, fb = ra.frame(0.4, 0.3), rb.frame(0.4, 0.3)
    assert np.array_equal(r.frame(0.4, 0.3, morph=0.0), fa)
    assert np.array_equal(r.frame(0.4, 0.3, morph=1.0), fb)
    assert np.array_equal(r.frame(0.4, 0.3), fb)  # default morph is the current face
    mid = r.frame(0.4, 0.3, morph=0.5).astype(np.int16)
    expect = (fa.astype(np.int16) + fb.astype(np.int16)) / 2
    assert np.abs(mid - expect).max() <= 1
    # monotone: a quarter of the way is closer to a than three quarters
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
    assert r1.frame(0.6, 0.4).tobytes() == r2.frame(0.6, 0.4).tobytes()


def test_different_params_differ() -> None:
    rng = np.random.default_rng(7)
    imgs = [_png_array(FaceParams(rng.uniform(0, 1, len(FaceParams.neutral().vector)))) for _ in range(4)]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert _mad(imgs[i], imgs[j]) > 8.0


def test_facial_hair_changes_chin() -> None:
    base = dict(femininity=0.0, age=0.45, facial_hair_style=SPECS_BY_NAME["facial_hair_style"].value_of("full_beard"))
    a = _png_array(_face(facial_hair=0.0, **base))
    b = _png_array(_face(facial_hair=1.0, **base))
    chin = (slice(165, 205), slice(100, 156))
    forehead = (slice(60, 90), slice(100, 156))
    assert _mad(a[chin], b[chin]) > 15
    assert np.array_equal(a[forehead], b[forehead])
    # below the threshold nothing is drawn
    c = _png_array(_face(facial_hair=0.1, **base))
    assert np.array_equal(a, c)
    # feminine faces get none even if asked
    d = _png_array(_face(facial_hair=0.0, **{**base, "femininity": 1.0}))
    e = _png_array(_face(facial_hair=1.0, **{**base, "femininity": 1.0}))
    assert np.array_equal(d, e)


def test_femininity_changes_face() -> None:
    a = _png_array(_face(femininity=0.0))
    m = _png_array(_face(femininity=0.5))
    b = _png_array(_face(femininity=1.0))
    eyes = (slice(100, 140), slice(70, 186))
    jaw = (slice(150, 200), slice(70, 186))
    assert _mad(a[eyes], b[eyes]) > 3  # brows, lashes
    assert _mad(a[jaw], b[jaw]) > 3  # jaw line, lips
    # the androgynous face sits between the two
    assert _mad(a, m) < _mad(a, b) and _mad(b, m) < _mad(a, b)


def test_age_changes_face() -> None:
    child = _png_array(_face(age=0.05))
    adult = _png_array(_face(age=0.3))
    senior = _png_array(_face(age=0.95, greying=1.0, age_lines=1.0, baldness=0.3))
    assert _mad(child, adult) > 3
    hair = (slice(25, 70), slice(70, 186))
    assert _mad(adult[hair], senior[hair]) > 20  # grey hair
    # lines and greying are gated by age: a child never gets them
    c2 = _png_array(_face(age=0.05, greying=1.0, age_lines=1.0))
    assert np.array_equal(child, c2)


def test_skin_tone_and_extras() -> None:
    light = _png_array(_face(skin_tone=0.05))
    deep = _png_array(_face(skin_tone=0.95))
    cheek = (slice(130, 160), slice(90, 110))
    assert light[cheek].mean() - deep[cheek].mean() > 60
    plain = _png_array(_face(freckles=0.5))
    freckled = _png_array(_face(freckles=1.0))
    assert int(np.count_nonzero(np.any(np.abs(plain - freckled) > 12, axis=-1))) > 60
    assert np.array_equal(plain, _png_array(_face(freckles=0.0)))


def test_hair_style_respects_length() -> None:
    for style in SPECS_BY_NAME["hair_style"].categories:
        for length in np.linspace(0, 1, 11):
            got = resolve_hair_style(style, float(length))
            lo, hi = HAIR_LENGTH_RANGE[got]
            assert lo <= length <= hi
            if HAIR_LENGTH_RANGE[style][0] <= length <= HAIR_LENGTH_RANGE[style][1]:
                assert got == style
    long_ = _face(hair_style=SPECS_BY_NAME["hair_style"].value_of("long_straight"), hair_length=0.05)
    buzz = _face(hair_style=SPECS_BY_NAME["hair_style"].value_of("buzz"), hair_length=0.05)
    short = _face(hair_style=SPECS_BY_NAME["hair_style"].value_of("short"), hair_length=0.05)
    assert render_svg(long_) in (render_svg(buzz), render_svg(short))


def test_set_params_type_checked() -> None:
    r = AvatarRenderer(256)
    with pytest.raises(TypeError):
        r.set_params({"age": 0.5})  # type: ignore[arg-type]


def test_svg_renders_like_png() -> None:
    """An independent SVG renderer (Skia's SVG DOM) must reproduce the PNG: one scene, two outputs."""
    skia = pytest.importorskip("skia")
    p = _face(femininity=0.1, age=0.8, greying=0.8, age_lines=0.9, facial_hair=0.8, glasses=0.7)
    svg = render_svg(p, 256, mouth=0.7, blink=0.3)
    dom = skia.SVGDOM.MakeFromStream(skia.MemoryStream(svg.encode("utf-8")))
    info = skia.ImageInfo.Make(256, 256, skia.kRGBA_8888_ColorType, skia.kPremul_AlphaType)
    surf = skia.Surface.MakeRaster(info)
    dom.setContainerSize(skia.Size(256, 256))
    dom.render(surf.getCanvas())
    from_svg = surf.toarray()[:, :, :3].astype(np.int16)
    png = _png_array(p, 256, mouth=0.7, blink=0.3)
    diff = np.abs(from_svg - png)
    assert diff.mean() < 0.5
    assert np.percentile(diff, 99.5) <= 8
