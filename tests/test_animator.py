"""FaceAnimator: one moving face — mouth envelope, blinks, morph, idle sway, one frame cache.

All with the real renderer and an explicit clock; the thread test runs ``set_face`` in a
real thread while frames are drawn, as the server does with its render executor.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from engines.animator import MORPH_S, FaceAnimator, LayerCache, visibly_different
from engines.blink import Blinker, closure
from engines.face import FaceParams
from engines.mouth import MouthEnvelope, MouthState
from engines.render import BLINK_LEVELS, MOUTH_LEVELS, FaceLayers
from engines.viseme import VISEMES

FPS = 25.0
P = 1.0 / FPS


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def _loud(n: int = 1920, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * amp * 32767).astype(np.int16)


A = FaceParams.neutral().replace(background_hue=0.0, femininity=0.2)
B = FaceParams.neutral().replace(background_hue=0.33, femininity=0.8, hair_length=0.9)
C = FaceParams.neutral().replace(background_hue=0.66, femininity=0.5)


# --- the envelope and the blinks (moved here from the server with their assertions) ---
def test_mouth_folds_held_packets_as_if_on_arrival():
    """Packets are held until a frame reads them: the readings are those of reading after every
    packet, a caller reusing its buffer changes nothing, and unread packets stay bounded."""
    from engines.mouth import MAX_PENDING

    rng = np.random.default_rng(1)
    packets = [(rng.standard_normal(1920) * [0.0, 0.3, 0.05, 0.2][i // 25 % 4] * 32767).astype(np.int16) for i in range(150)]
    clock = [0.0]
    every, framed = MouthEnvelope(clock=lambda: clock[0]), MouthEnvelope(clock=lambda: clock[0])
    buf = np.empty(1920, np.int16)
    compared = 0
    for i, x in enumerate(packets):
        clock[0] = i * 0.02
        every.push(x, 48_000, channels=2, arrival=clock[0])
        r_every = every.reading(clock[0] + 0.005)
        buf[:] = x
        framed.push(buf, 48_000, channels=2, arrival=clock[0])
        buf[:] = 0  # the caller reuses its buffer
        if i % 3 == 2:
            r = framed.reading(clock[0] + 0.005)
            assert (r.value, r.level_db, r.audio_t, r.age) == (r_every.value, r_every.level_db, r_every.audio_t, r_every.age)
            compared += r.value > 0
    assert compared > 10
    idle = MouthEnvelope()
    for x in packets:
        idle.push(x, 48_000, channels=2)
    assert len(idle._pending) < MAX_PENDING
    with pytest.raises(ValueError):
        idle.push(np.array([np.nan, 0.0], np.float32), 16_000)


def test_mouth_follows_loudness_and_closes_in_silence():
    clock = [0.0]
    env = MouthEnvelope(clock=lambda: clock[0])
    rng = np.random.default_rng(0)
    values = []
    for i in range(100):  # 2 s: silence, loud, quiet, silence (20 ms packets)
        amp = [0.0, 0.3, 0.02, 0.0][i // 25]
        x = (rng.standard_normal(960) * amp * 32767).astype(np.int16)
        clock[0] = i * 0.02
        env.push(x, 48_000, arrival=clock[0])
        values.append(env.reading(clock[0]).value)
    v = np.array(values)
    assert np.all(v[:25] == 0) and np.all(v[-20:] == 0)
    assert v[30:45].mean() > v[55:70].mean() > 0.0  # louder opens wider (relative to the recent peak)
    r = env.reading(clock[0] + 0.5)  # no audio for 0.5 s: the mouth closes
    assert r.value == 0.0 and r.age == pytest.approx(0.5)
    assert env.reading(clock[0]).audio_t == pytest.approx(2.0)
    assert env.reading(clock[0]).shape == "rest"  # the viseme of silence is the closed mouth


def test_blinks_are_natural():
    b = Blinker(seed=1)
    t = np.arange(0, 120, 1 / 60)
    v = np.array([b.value(x) for x in t])
    assert v.min() == 0.0 and v.max() == 1.0
    starts = np.flatnonzero((v[1:] > 0) & (v[:-1] == 0))
    per_minute = len(starts) / 2
    assert 8 <= per_minute <= 30, per_minute
    assert closure(0.035) == pytest.approx(0.5) and closure(1.0) == 0.0


# --- the animator ---
def test_one_quantisation_and_one_definition_of_the_levels():
    import server.video

    assert not hasattr(server.video, "MOUTH_LEVELS") and not hasattr(server.video, "BLINK_LEVELS")
    anim = FaceAnimator(256, A, sway=False, blink_seed=3)
    seen_mouth, seen_blink = set(), set()
    t = 0.0
    for i in range(300):  # 12 s: speech bursts of varying loudness, blinks
        t = i * P
        if (i // 10) % 2 == 0:
            anim.push_audio(_loud(amp=0.02 + 0.3 * (i % 7) / 7, seed=i), 48_000, arrival=t)
        f = anim.frame(t)
        seen_mouth.add(f.mouth.open)
        seen_blink.add(f.blink)
    mouth_levels = {i / (MOUTH_LEVELS - 1) for i in range(MOUTH_LEVELS)}
    blink_levels = {i / (BLINK_LEVELS - 1) for i in range(BLINK_LEVELS)}
    assert seen_mouth <= mouth_levels and len(seen_mouth) >= 4, seen_mouth
    assert seen_blink <= blink_levels and max(seen_blink) == 1.0, seen_blink


def test_settled_silent_face_is_served_from_the_cache():
    anim = FaceAnimator(256, A, blink_seed=5)
    n = int(30 * FPS)  # 30 s of a listening face: blinks and idle sway, no audio
    frames = [anim.frame(i * P, "yuv420p") for i in range(n)]
    sways = {f.sway for f in frames}
    assert sways == {0, 1}, sways  # the idle sway moves, by a pixel at 256 px
    steps = sum(a.sway != b.sway for a, b in zip(frames, frames[1:]))
    assert 4 <= steps <= 10, steps  # rarely: each step is a whole-picture change for a video encoder
    assert len({f.blink for f in frames}) > 1  # and it blinks
    hits = sum(f.cached for f in frames)
    assert anim.cache_misses <= 3 * BLINK_LEVELS, anim.cache_misses  # a few distinct pictures, each drawn once
    assert hits / n > 0.97, hits / n
    first = frames[0].image
    assert first.shape == (256 * 3 // 2, 256) and first.dtype == np.uint8
    assert not first.flags.writeable  # cached pictures cannot be corrupted by a consumer


def test_sway_moves_the_picture_by_whole_rows():
    anim = FaceAnimator(256, A, blink_seed=5)
    still = FaceAnimator(256, A, blink_seed=5, sway=False)
    for i in range(int(5 * FPS)):
        t = i * P
        f, g = anim.frame(t), still.frame(t)
        if f.sway == 1:
            assert np.array_equal(f.image[1:], g.image[:-1])
            return
    pytest.fail("no sway within 5 s")


def test_mouth_follows_the_pushed_audio_and_closes():
    anim = FaceAnimator(256, A, sway=False)
    closed = anim.frame(0.0).image
    t = P
    for k in range(5):
        anim.push_audio(_loud(960, seed=k), 48_000, arrival=t)
        t += 0.02
    f = anim.frame(t)
    assert f.mouth.open > 0.5 and f.mouth.shape in VISEMES  # loud noise: a fricative-like viseme
    assert f.audio_t == pytest.approx(0.1) and f.mouth_age == pytest.approx(0.02)
    diff = np.any(f.image != closed, axis=-1)
    ys, xs = np.nonzero(diff)
    assert ys.size > 50 and ys.min() > 256 * 0.55, "only the mouth region changes"
    later = anim.frame(t + 0.2)  # no audio for 200 ms: the mouth is shut again
    assert later.mouth.open == 0.0 and np.array_equal(later.image, closed)


def test_morph_starts_at_the_old_face_and_ends_at_the_new():
    anim = FaceAnimator(256, A, sway=False)
    fa = anim.frame(0.0).image
    ref_b = FaceAnimator(256, B, sway=False).frame(0.0).image
    assert anim.set_face(B, 1) is True
    f0 = anim.frame(0.1)
    assert f0.morph == 0.0 and f0.version == 1 and np.array_equal(f0.image, fa)
    mid = anim.frame(0.1 + MORPH_S / 2)
    assert 0.3 < mid.morph < 0.7 and not mid.cached
    assert _mad(mid.image, fa) > 5 and _mad(mid.image, ref_b) > 5
    end = anim.frame(0.1 + MORPH_S)
    assert end.morph == 1.0 and np.array_equal(end.image, ref_b)
    assert anim.frame(0.1 + MORPH_S + P).cached


def test_refinement_mid_morph_waits_and_never_jumps():
    anim = FaceAnimator(256, A, sway=False)
    anim.frame(0.0)
    anim.set_face(B, 1)
    t, frames = 0.0, []
    staged_c = False
    while t < 1.0:
        t += P
        f = anim.frame(t)
        frames.append(f)
        if not staged_c and 0.4 < f.morph < 0.6:
            anim.set_face(C, 2)  # arrives mid-morph
            staged_c = True
    ref_b = FaceAnimator(256, B, sway=False).frame(0.0).image
    ref_c = FaceAnimator(256, C, sway=False).frame(0.0).image
    versions = [f.version for f in frames]
    assert versions == sorted(versions) and versions[-1] == 2
    first_c = next(i for i, f in enumerate(frames) if f.version == 2)
    assert np.array_equal(frames[first_c].image, ref_b)  # C morphs from the settled B
    assert np.array_equal(frames[-1].image, ref_c)
    span = _mad(ref_b, ref_c)
    steps = [_mad(a.image, b.image) for a, b in zip(frames, frames[1:])]
    assert max(steps) < 0.35 * span, (max(steps), span)


def test_set_face_in_a_thread_while_frames_are_drawn():
    """The server's shape: rasterise in an executor thread, draw frames on the loop thread."""
    anim = FaceAnimator(256, A, sway=False, blink_seed=9)
    faces = [A, B, C, A.replace(hair_length=0.95)]
    refs = {v: FaceAnimator(256, p, sway=False).frame(0.0).image for v, p in enumerate(faces) if v}
    errors: list[BaseException] = []

    def refine() -> None:
        try:
            for v, p in enumerate(faces[1:], start=1):
                anim.set_face(p, v)
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=refine)
    t, frames = 0.0, []
    worker.start()
    deadline = time.monotonic() + 30
    while worker.is_alive() or not frames or frames[-1].version != 3 or frames[-1].morph < 1.0:
        assert time.monotonic() < deadline
        t += P
        frames.append(anim.frame(t))
        time.sleep(0.002)
    worker.join()
    assert not errors, errors
    versions = [f.version for f in frames]
    assert versions == sorted(versions)
    assert anim.faces_rasterised == 4
    last = frames[-1]
    assert last.blink > 0 or _mad(last.image, refs[3]) == 0.0
    steps = [_mad(a.image, b.image) for a, b in zip(frames, frames[1:]) if a.blink == b.blink == 0]
    spans = [_mad(refs[1], refs[2]), _mad(refs[2], refs[3])]
    assert max(steps) < 0.35 * max(spans), (max(steps), spans)


def test_invisible_refinement_costs_no_rasterisation():
    anim = FaceAnimator(256, A, sway=False)
    anim.frame(0.0)
    tiny = FaceParams(A.vector + 0.002)
    assert not visibly_different(A, tiny) and visibly_different(A, B)
    assert anim.differs(tiny) is False and anim.differs(B) is True
    assert anim.set_face(tiny, 7) is False
    f = anim.frame(P)
    assert f.version == 7 and f.cached and anim.faces_rasterised == 1
    # a categorical bucket change is always visible
    hair = A.replace(hair_style=(int(A["hair_style"] * 6) + 1.5) / 6)
    assert visibly_different(A, hair)


def test_set_size_swaps_without_a_morph():
    anim = FaceAnimator(256, A, sway=False)
    anim.frame(0.0)
    anim.set_size(384)
    assert anim.size == 384
    f = anim.frame(P)
    assert f.image.shape == (384, 384, 3) and f.morph == 1.0
    anim.set_face(B, 1)  # later refinements come at the new size
    g = anim.frame(2 * P)
    assert g.image.shape == (384, 384, 3) and g.morph == 0.0


def test_formats_come_from_the_same_picture():
    anim = FaceAnimator(256, B, sway=False)
    rgb = anim.frame(0.0, "rgb24").image
    jpeg = anim.image("jpeg")
    assert isinstance(jpeg, bytes) and jpeg[:2] == b"\xff\xd8"
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    assert decoded.shape == (256, 256, 3) and _mad(decoded, rgb) < 3.0
    yuv = anim.image("yuv420p")
    assert yuv.shape == (384, 256)
    again = anim.frame(P, "jpeg")
    assert again.cached and again.image is jpeg
    with pytest.raises(ValueError):
        anim.frame(2 * P, "png")


def test_cache_stays_within_its_byte_budget():
    anim = FaceAnimator(512, A, cache_bytes=2 * 1024 * 1024, blink_seed=1)
    for i in range(400):
        if i % 3:
            anim.push_audio(_loud(1920, amp=0.05 + 0.3 * (i % 5) / 5, seed=i), 48_000, arrival=i * P)
        anim.frame(i * P, "rgb24")
        assert anim.cache_bytes <= 2 * 1024 * 1024


def test_layers_compose_matches_the_still_renderer():
    from engines.render import AvatarRenderer

    layers = FaceLayers.build(B, 256)
    still = AvatarRenderer(256)
    still.set_params(B)
    for m, b in ((0.0, 0.0), (0.5, 0.0), (1.0, 1 / 3)):
        assert np.array_equal(layers.compose(MouthState(m), b), still.frame(m, b))


def test_layer_cache_shares_built_layers():
    built = []

    def factory(params, size):
        built.append(size)
        return FaceLayers.build(params, size)

    cache = LayerCache(factory, entries=2)
    a1, a2 = FaceAnimator(256, A, layer_factory=cache), FaceAnimator(256, A, layer_factory=cache)
    assert built == [256] and np.array_equal(a1.frame(0.0).image, a2.frame(0.0).image)
    FaceAnimator(256, B, layer_factory=cache)
    FaceAnimator(256, C, layer_factory=cache)  # evicts A
    FaceAnimator(256, A, layer_factory=cache)
    assert built == [256] * 4
