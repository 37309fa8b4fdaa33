"""A real call on loopback: a Python aiortc peer sends speech, receives the avatar video.

Checks what a person would notice: a face appears quickly, it is neutral before speech,
it refines while speech flows, it ends where the one-shot analysis of the same audio
ends, and its mouth follows the voice and rests in silence.
"""

from __future__ import annotations

import asyncio
import os
import re
import time

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

os.environ.setdefault("OMP_NUM_THREADS", "1")

from server.call import YOUNG_FACE_INTERVAL  # noqa: E402
from server.config import ServerConfig  # noqa: E402
from server.video import HOLD_MAX_S  # noqa: E402
from tests.server_helpers import (  # noqa: E402
    AUDIO_RATE,
    ArrayAudioTrack,
    Caller,
    envelope_db,
    read_wav_16k,
    serving,
    to_48k,
    wait_for,
)

LEAD_S, TAIL_S = 1.5, 2.0


@pytest_asyncio.fixture
async def server(onnx_engine):
    async with serving(onnx_engine, ServerConfig(port=0, session_budget=4)) as served:
        yield served


@pytest.mark.asyncio
async def test_loopback_call(server, onnx_engine, speech_wav):
    url, state = server
    speech = read_wav_16k(speech_wav["female"])
    sent48 = np.concatenate(
        [np.zeros(int(LEAD_S * AUDIO_RATE), np.float32), to_48k(speech), np.zeros(int(TAIL_S * AUDIO_RATE), np.float32)]
    )
    speech_end = LEAD_S + len(speech) / 16_000
    caller = Caller(url, ArrayAudioTrack(sent48))
    async with aiohttp.ClientSession() as session:
        resp = await caller.connect(session)
        assert resp.status == 200, await resp.text()
        assert await wait_for(lambda: caller.first_frame_at is not None, 5.0), "no video frame within 5 s"
        assert caller.first_frame_at - caller.offer_at < 5.0
        total = len(sent48) / AUDIO_RATE
        await wait_for(lambda: bool(caller.result.frames) and caller.result.frames[-1]["audio_t"] >= total - 0.05, total + 10.0)

        def newest_face_shown() -> bool:
            versions = [m["version"] for m in caller.result.status if m["type"] == "status"]
            return bool(versions) and caller.result.frames[-1]["version"] == versions[-1]

        # a young face takes the newest refinement at most once per YOUNG_FACE_INTERVAL
        await wait_for(newest_face_shown, YOUNG_FACE_INTERVAL + 3.0)
        await asyncio.sleep(0.5)
        metrics_text = await (await session.get(url + "/metrics")).text()
    await caller.close()

    res = caller.result
    assert res.video_size == (256, 256)
    assert caller.slot_rate() > 10, f"served {caller.slot_rate():.1f} frame slots per second"
    # the silent tail holds the unchanged picture instead of sending it again
    assert res.frames[-1]["slots"] > len(res.frames) + 10, (res.frames[-1]["slots"], len(res.frames))
    held = float(re.search(r"^s2f_frames_held_total ([0-9.e+]+)$", metrics_text, re.M).group(1))
    assert held > 10, held

    # neutral face before speech
    hello = res.status[0]
    assert hello["type"] == "hello" and hello["version"] == 0
    neutral = onnx_engine.pipeline().current.params.as_dict()
    assert max(abs(hello["face"]["params"][k] - neutral[k]) for k in neutral) < 1e-6
    early = [f for f in res.frames if f["audio_t"] < LEAD_S - 0.1]
    assert early and all(f["version"] == 0 for f in early)

    # refinements while speech flows, versions strictly increasing
    versions = [m["version"] for m in res.status if m["type"] == "status"]
    assert len(versions) >= 5, versions
    assert all(b > a for a, b in zip(versions, versions[1:])), versions
    heard = [m["speech_seconds"] for m in res.status if m["type"] == "status"]
    assert heard == sorted(heard) and heard[-1] > 3.0
    frame_versions = [f["version"] for f in res.frames]
    assert frame_versions == sorted(frame_versions) and frame_versions[-1] == versions[-1]

    # the final face equals the one-shot analysis of the same audio (after Opus, within tolerance)
    final = res.status[-1]
    oneshot = onnx_engine.analyze(speech, seconds=final["speech_seconds"])
    live = np.array([final["face"]["params"][k] for k in oneshot.params.as_dict()])
    diff = np.abs(live - oneshot.params.vector)
    # Opus is not bit-exact, so the speaker embedding moves a little; traits must not,
    # identity params (a projection of the embedding) may move slightly more.
    from engines.face import PARAM_SPECS, Source

    traits = np.array([s.source == Source.TRAIT for s in PARAM_SPECS])
    assert float(diff[traits].max()) < 0.05, diff[traits]
    assert float(diff.mean()) < 0.05 and float(diff.max()) < 0.25, (diff.mean(), diff.max())
    assert final["gender"]["label"] == oneshot.gender
    assert abs(final["gender"]["p_female"] - oneshot.p_female) < 0.1

    # mouth follows the audio energy, and rests in silence
    frames = [f for f in res.frames if f["audio_t"] > 0]
    t = np.array([f["audio_t"] for f in frames])
    mouth = np.array([f["mouth"] for f in frames])
    ref = envelope_db(sent48, t)
    talking = (t > LEAD_S + 0.1) & (t < speech_end)
    r = float(np.corrcoef(mouth[talking], np.clip(ref[talking], -60, 0))[0, 1])
    print(
        f"\nmouth/energy r={r:.3f}; live-vs-oneshot mean {diff.mean():.4f} max {diff.max():.4f}; "
        f"ttff {caller.first_frame_at - caller.offer_at:.3f} s; versions {versions[-1]}"
    )
    assert r > 0.6, f"mouth/energy correlation {r:.2f}"
    assert mouth[talking].max() > 0.5
    silent = ((t > 0.1) & (t < LEAD_S - 0.05)) | (t > speech_end + 0.15)
    # a still picture is held, not sent again: keep-alives and blinks are what silence sends
    assert silent.sum() >= 3 and np.all(mouth[silent] == 0.0), mouth[silent]

    # mouth age: median within one frame period + 20 ms (bounds on tails are the bench's job)
    ages = np.array([f["mouth_age_ms"] for f in res.frames if f["audio_t"] > 0])
    assert np.median(ages) <= 1000 / 15 + 20, np.percentile(ages, [50, 95])

    assert "s2f_frames_sent_total" in metrics_text and "s2f_refinement_latency_seconds_count" in metrics_text
    assert await wait_for(lambda: not state.calls, 5.0), "call not released after hang-up"


@pytest.mark.asyncio
async def test_a_still_face_is_held_and_sent_at_once_on_a_keyframe_request(server):
    """Silence: the picture does not change, so it is sent again only every ``HOLD_MAX_S`` (and
    on a blink) while the server keeps serving every slot; a viewer's picture loss indication
    (RTCP PLI) gets the picture, as a keyframe, at the next slot, not at the next keep-alive."""
    url, _ = server
    fps = ServerConfig().fps
    caller = Caller(url, ArrayAudioTrack(np.zeros(AUDIO_RATE, np.float32), loop=True))
    async with aiohttp.ClientSession() as session:
        assert (await caller.connect(session)).status == 200
        assert await wait_for(lambda: caller.first_frame_at is not None, 5.0)
        await asyncio.sleep(1.5)
        n0, t0 = len(caller.result.video_times), time.monotonic()
        await asyncio.sleep(3.0)
        received = (len(caller.result.video_times) - n0) / (time.monotonic() - t0)
        assert 0.5 / HOLD_MAX_S <= received < 0.4 * fps, received
        assert caller.slot_rate() > 0.8 * fps, caller.slot_rate()
        delays = []
        for _ in range(3):
            n = len(caller.result.video_times)
            # right after a sent frame the next keep-alive is HOLD_MAX_S away
            assert await wait_for(lambda n=n: len(caller.result.video_times) > n, 3.0)
            k = len(caller.result.video_times)
            asked = time.monotonic()
            await caller.request_keyframe()
            assert await wait_for(lambda k=k: len(caller.result.video_times) > k, 3.0), "no frame after a PLI"
            delays.append(caller.result.video_times[k] - asked)
        assert max(delays) < 0.4 * HOLD_MAX_S, delays
    await caller.close()


@pytest.mark.asyncio
async def test_live_configure_size_and_skin_tone(server, speech_wav):
    url, state = server
    speech = read_wav_16k(speech_wav["male"])[: 16_000 * 3]
    caller = Caller(url, ArrayAudioTrack(to_48k(speech), loop=True))
    async with aiohttp.ClientSession() as session:
        resp = await caller.connect(session, size=384, skin_tone="deep", seed="first look")
        assert resp.status == 200
        assert await wait_for(lambda: caller.result.video_size == (384, 384), 5.0)
        assert await wait_for(lambda: caller.channel.readyState == "open", 5.0)
        assert caller.result.status[0]["skin_tone"] == "deep"
        from engines.face import SPECS_BY_NAME

        deep = SPECS_BY_NAME["skin_tone"].value_of("deep")
        assert abs(caller.result.status[0]["face"]["params"]["skin_tone"] - deep) < 1e-6
        caller.channel.send('{"type": "configure", "size": 256, "skin_tone": "light"}')
        assert await wait_for(lambda: caller.result.video_size == (256, 256), 5.0)
        light = SPECS_BY_NAME["skin_tone"].value_of("light")
        assert await wait_for(lambda: abs(caller.result.status[-1]["face"]["params"]["skin_tone"] - light) < 1e-6, 5.0)
        # the look seed picks the colours the caller did not choose; "new look" sends a new seed
        from engines.look import look_values

        first, second = look_values("first look"), look_values("second look")
        assert abs(caller.result.status[0]["face"]["params"]["hair_colour"] - first["hair_colour"]) < 1e-6
        caller.channel.send('{"type": "configure", "seed": "second look"}')
        assert await wait_for(
            lambda: (
                abs(caller.result.status[-1]["face"]["params"]["eye_colour"] - second["eye_colour"]) < 1e-6
                and abs(caller.result.status[-1]["face"]["params"]["hair_colour"] - second["hair_colour"]) < 1e-6
            ),
            5.0,
        )
        assert abs(caller.result.status[-1]["face"]["params"]["skin_tone"] - light) < 1e-6  # the choice stays
        # download the live face
        r = await session.get(f"{url}/v1/calls/{caller.call_id}/avatar?format=svg")
        assert r.status == 200 and "<svg" in await r.text()
        r = await session.get(f"{url}/v1/calls/{caller.call_id}/avatar?format=png&size=512")
        assert r.status == 200 and (await r.read())[:8] == b"\x89PNG\r\n\x1a\n"
        r = await session.get(f"{url}/v1/calls/nope/avatar")
        assert r.status == 404
        caller.channel.send("not json")  # ignored, never fatal
        caller.channel.send('{"type": "configure", "skin_tone": "green"}')
        assert await wait_for(lambda: any(m["type"] == "error" for m in caller.result.status), 3.0)
        n = len(caller.result.video_times)
        await asyncio.sleep(1.0)
        assert len(caller.result.video_times) > n + 8
    await caller.close()
    assert await wait_for(lambda: not state.calls, 5.0)
