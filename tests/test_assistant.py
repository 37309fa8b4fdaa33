"""AssistantAvatar: TTS audio in, paced audio + lip-synced frames + segment events out.

Most tests drive the avatar with an explicit clock (its ``clock``/``sleep`` hooks), so
timing is exact; two run on the real clock to check pacing and the interrupt wake-up.
The audio is real speech (espeak-ng) resampled to a TTS rate.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from engines.animator import FaceAnimator
from speech2face.assistant import AssistantAvatar, AudioOut, FaceEvent, SegmentEnd, VideoOut, face_from_seed, face_params
from tests.server_helpers import envelope_db

RATE = 24_000
FPS = 25.0


@pytest.fixture(scope="module")
def tts(tts24k) -> np.ndarray:
    return tts24k["female"]


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, dt: float) -> None:
        self.now += dt
        await asyncio.sleep(0)


def make(clock: FakeTime | None = None, **kw) -> AssistantAvatar:
    kw.setdefault("face", {"femininity": 0.8, "hair_length": 0.8})
    if clock is not None:
        kw.update(clock=clock.clock, sleep=clock.sleep)
    return AssistantAvatar(sample_rate=RATE, fps=FPS, **kw)


async def collect(avatar: AssistantAvatar, until, script=None, limit: int = 5000) -> list:
    """Items until ``until(items)``; ``script(item, items)`` may push audio or interrupt."""
    items: list = []
    async for item in avatar:
        items.append(item)
        if script is not None:
            script(item, items)
        if until(items) or len(items) >= limit:
            break
    return items


def videos(items) -> list[VideoOut]:
    return [x for x in items if isinstance(x, VideoOut)]


@pytest.mark.asyncio
async def test_audio_comes_back_paced_with_the_frames_and_the_mouth_follows_it(tts):
    ft = FakeTime()
    avatar = make(ft)
    pushed_at = 5

    def script(item, items):
        if isinstance(item, VideoOut) and item.index == pushed_at:
            for i in range(0, len(tts), 4800):  # TTS hands audio over in 200 ms pieces, faster than real time
                avatar.push_audio(tts[i : i + 4800])
            avatar.end_segment()

    items = await collect(avatar, lambda xs: isinstance(xs[-1], SegmentEnd), script)
    items += await collect(avatar, lambda xs: len(videos(xs)) >= 10)  # idle frames after the segment
    await avatar.aclose()
    frames, audio = videos(items), [x for x in items if isinstance(x, AudioOut)]
    # frames at fps: consecutive slots, stream time = index / fps
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(f.t == pytest.approx(f.index / FPS) for f in frames)
    # every sample pushed comes back out, in order, one frame period per slot, beside its frame
    out = np.concatenate([a.pcm for a in audio])
    assert np.array_equal(out[: len(tts)], tts) and not out[len(tts) :].any()
    assert all(abs(a.pcm.size - RATE / FPS) <= 1 for a in audio)
    by_t = {round(f.t, 6): f for f in frames}
    assert all(round(a.t, 6) in by_t for a in audio)
    assert audio[0].segment_start and not any(a.segment_start for a in audio[1:])
    assert audio[0].t == pytest.approx((pushed_at + 1) / FPS)
    # the segment ends exactly at the audio's duration, after the frame showing its last slice
    end = items[-11] if isinstance(items[-11], SegmentEnd) else next(x for x in items if isinstance(x, SegmentEnd))
    assert end == SegmentEnd(len(tts) / RATE, False)
    talking = [f for f in frames if f.audio_pos is not None]
    assert talking[0].audio_pos == 0.0 and talking[-1].audio_pos == pytest.approx((len(talking) - 1) / FPS)
    assert all(f.audio_pos is None and f.mouth == 0.0 for f in frames[: pushed_at + 1] + frames[-10:])
    # the mouth follows the energy of the audio played with the frame
    pos = np.array([f.audio_pos for f in talking])
    ref = envelope_db(tts, pos + 1 / FPS, window=1 / FPS, rate=RATE)
    mouth = np.array([f.mouth for f in talking])
    r = float(np.corrcoef(mouth, np.clip(ref, -60, 0))[0, 1])
    assert r > 0.8, r
    assert mouth.max() == 1.0 and (mouth[ref < -50] == 0.0).all()


@pytest.mark.asyncio
async def test_clear_buffer_interrupts_at_once_and_closes_the_mouth(tts):
    ft = FakeTime()
    avatar = make(ft)
    state = {"cleared_at": None}

    def script(item, items):
        if isinstance(item, VideoOut) and item.index == 2:
            avatar.push_audio(tts)
            avatar.end_segment()
        # interrupt on a frame whose mouth is open, mid-sentence
        if isinstance(item, VideoOut) and item.index > 40 and item.mouth > 0.5 and state["cleared_at"] is None:
            state["cleared_at"] = len(items)
            avatar.clear_buffer()
            avatar.end_segment()  # a framework's flush after the interruption: no second event

    items = await collect(avatar, lambda xs: state["cleared_at"] is not None and len(xs) > state["cleared_at"] + 30, script)
    await avatar.aclose()
    i = state["cleared_at"]
    played = sum(a.pcm.size for a in items[:i] if isinstance(a, AudioOut))
    assert items[i] == SegmentEnd(pytest.approx(played / RATE), True)  # the very next item
    after = items[i + 1 :]
    assert not any(isinstance(x, (AudioOut, SegmentEnd)) for x in after)  # nothing more of it plays, no second end
    nxt = videos(after)[0]
    assert nxt.mouth == 0.0 and nxt.audio_pos is None
    assert nxt.t - videos(items[:i])[-1].t == pytest.approx(1 / FPS)  # closed within one frame period
    assert not avatar.playing


@pytest.mark.asyncio
async def test_segments_queue_back_to_back(tts):
    ft = FakeTime()
    avatar = make(ft)
    a, b = tts[: RATE // 2], tts[RATE : RATE + RATE // 3]

    def script(item, items):
        if isinstance(item, VideoOut) and item.index == 0:
            avatar.push_audio(a)
            avatar.end_segment()
            avatar.push_audio(b, sample_rate=RATE)
            avatar.end_segment()
            avatar.end_segment()  # an empty segment still gets its end

    items = await collect(avatar, lambda xs: sum(isinstance(x, SegmentEnd) for x in xs) == 3, script)
    await avatar.aclose()
    ends = [x for x in items if isinstance(x, SegmentEnd)]
    assert ends == [SegmentEnd(0.5, False), SegmentEnd(len(b) / RATE, False), SegmentEnd(0.0, False)]
    starts = [x for x in items if isinstance(x, AudioOut) and x.segment_start]
    assert len(starts) == 2
    out = np.concatenate([x.pcm for x in items if isinstance(x, AudioOut)])
    assert np.array_equal(out[out != 0][:100], a[a != 0][:100])
    assert np.count_nonzero(out) == np.count_nonzero(a) + np.count_nonzero(b)


@pytest.mark.asyncio
async def test_other_input_rates_and_formats(tts):
    ft = FakeTime()
    avatar = make(ft, image_format="jpeg", size=384)
    pcm16 = as_float16k(tts)

    def script(item, items):
        if isinstance(item, VideoOut) and item.index == 0:
            avatar.push_audio(pcm16, sample_rate=16_000)  # float32 at another rate: resampled
            avatar.end_segment()

    items = await collect(avatar, lambda xs: isinstance(xs[-1], SegmentEnd), script)
    await avatar.aclose()
    end = items[-1]
    assert end.position == pytest.approx(len(pcm16) / 16_000, abs=0.01)
    f = videos(items)[-1]
    assert f.rgb.shape == (384, 384, 3) and f.jpeg[:2] == b"\xff\xd8" and not f.rgb.flags.writeable


def as_float16k(pcm24k: np.ndarray) -> np.ndarray:
    """2 s of float32 at 16 kHz (plain decimation: a different rate and dtype is the point)."""
    return (pcm24k[::3].astype(np.float32) / 32768.0)[: 16_000 * 2]


@pytest.mark.asyncio
async def test_slow_consumer_drops_frames_not_audio(tts):
    avatar = make()  # the real clock
    chunk = tts[: int(1.2 * RATE)]
    items: list = []
    t0 = time.monotonic()
    async for item in avatar:
        items.append(item)
        if len(items) == 1:
            avatar.push_audio(chunk)
            avatar.end_segment()
        if isinstance(item, VideoOut):
            await asyncio.sleep(0.1)  # a consumer that takes 2.5 frame periods per frame
        if isinstance(item, SegmentEnd) or time.monotonic() - t0 > 10:
            break
    await avatar.aclose()
    frames, audio = videos(items), [x for x in items if isinstance(x, AudioOut)]
    assert isinstance(items[-1], SegmentEnd) and items[-1].position == pytest.approx(len(chunk) / RATE)
    gaps = np.diff([f.index for f in frames])
    assert gaps.max() >= 2  # frames were skipped …
    ts = np.array([a.t for a in audio])
    assert np.allclose(np.diff(ts), 1 / FPS)  # … audio never: every slot's slice came out
    assert np.array_equal(np.concatenate([a.pcm for a in audio])[: len(chunk)], chunk)
    # and the audio kept the wall clock's pace (it was not delayed by the slow consumer)
    assert items[-1].position <= time.monotonic() - t0 + 0.2


@pytest.mark.asyncio
async def test_real_clock_pacing_and_interrupt_wakeup(tts):
    avatar = make()
    await avatar.prepare()
    frames: list[VideoOut] = []
    got_end: list[float] = []
    cleared = None
    t0 = time.monotonic()
    async for item in avatar:
        if isinstance(item, VideoOut):
            frames.append(item)
            if len(frames) == 3:
                avatar.push_audio(tts)
            if len(frames) == 20:

                def interrupt() -> None:
                    nonlocal cleared
                    cleared = time.monotonic()
                    avatar.clear_buffer()

                asyncio.get_running_loop().call_later(0.005, interrupt)  # lands while the avatar waits for a slot
        elif isinstance(item, SegmentEnd):
            got_end.append(time.monotonic())
            break
    await avatar.aclose()
    assert frames[-1].t == pytest.approx(frames[-1].index / FPS)
    assert time.monotonic() - t0 == pytest.approx(frames[-1].t, abs=0.5)  # real time, loosely (shared machine)
    # reported at once, not at the next slot (which was ~35 ms away)
    assert got_end and got_end[0] - cleared < 0.5 / FPS, got_end[0] - cleared


@pytest.mark.asyncio
async def test_face_given_up_front_or_by_seed_shows_from_the_first_frame(onnx_engine, tts):
    oneshot = onnx_engine.analyze(as_float16k(tts))
    analyze_json = {"file": "x.wav", **oneshot.to_json()}
    firsts = []
    for face in (analyze_json, analyze_json["face"], oneshot.params):
        avatar = AssistantAvatar(sample_rate=RATE, face=face, blink_seed=1)
        firsts.append((await collect(avatar, lambda xs: True))[0].rgb)
        await avatar.aclose()
    expect = FaceAnimator(256, oneshot.params).frame(0.0).image
    assert all(np.array_equal(f, expect) for f in firsts)
    seeded = []
    for seed in ("support-bot", "support-bot", "sales-bot"):
        avatar = AssistantAvatar(sample_rate=RATE, seed=seed)
        seeded.append((await collect(avatar, lambda xs: True))[0].rgb)
        await avatar.aclose()
    assert np.array_equal(seeded[0], seeded[1]) and not np.array_equal(seeded[0], seeded[2])
    assert np.array_equal(face_from_seed("a").vector, face_from_seed("a").vector)
    for bad in ({"no_such_param": 0.5}, {"age": 2.0}, {"face": {"vector": [0.5]}}, "face"):
        with pytest.raises(ValueError):
            face_params(bad)


@pytest.mark.asyncio
async def test_face_refines_from_the_tts_voice_then_freezes(onnx_engine, tts):
    ft = FakeTime()
    avatar = AssistantAvatar(sample_rate=RATE, engine=onnx_engine, freeze_after_s=3.0, clock=ft.clock, sleep=ft.sleep)
    items: list = []
    deadline = time.monotonic() + 60
    async for item in avatar:
        items.append(item)
        if len(items) == 1:
            avatar.push_audio(tts)
            avatar.end_segment()
        events = [x for x in items if isinstance(x, FaceEvent)]
        if events and isinstance(item, VideoOut) and item.version == events[-1].update["version"]:
            break  # the refined face is on screen
        if isinstance(item, VideoOut):
            await asyncio.sleep(0.005)  # the model and the rasteriser run in real threads
        assert time.monotonic() < deadline, "no refinement reached the screen"
    assert avatar.frozen and avatar.current.seconds_heard == pytest.approx(3.0)
    events = [x.update for x in items if isinstance(x, FaceEvent)]
    assert all(e["speech_seconds"] <= 3.0 for e in events) and events[-1]["version"] > 0
    assert videos(items)[0].version == 0
    # frozen: more speech changes nothing
    avatar.push_audio(tts)
    more = await collect(avatar, lambda xs: len(videos(xs)) >= 30)
    assert not any(isinstance(x, FaceEvent) for x in more)
    await avatar.aclose()


def test_bad_arguments_are_clear_errors():
    for kw in ({"sample_rate": 12345}, {"sample_rate": RATE, "size": 300}, {"sample_rate": RATE, "fps": 0}):
        with pytest.raises(ValueError):
            AssistantAvatar(**kw)
    avatar = AssistantAvatar(sample_rate=RATE)
    with pytest.raises(ValueError, match="mono"):
        avatar.push_audio(np.zeros((100, 2), np.int16))
    with pytest.raises(ValueError, match="int16 or float32"):
        avatar.push_audio(np.zeros(100, np.int32))
    asyncio.run(avatar.aclose())
    with pytest.raises(RuntimeError):
        avatar.push_audio(np.zeros(100, np.int16))
