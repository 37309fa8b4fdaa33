"""SpeechFeed: a call's audio on its way to the model — chunked resampling, the silence gate
and the push plan (real PyAV frames as aiortc delivers them: 48 kHz stereo s16, 20 ms)."""

from __future__ import annotations

import av
import numpy as np

from server.feed import PUSH_MAX_SECONDS, PUSH_MIN_SECONDS, SpeechFeed, packet_samples


def _frames(pcm48k: np.ndarray, layout: str = "stereo"):
    """20 ms s16 frames of a mono float signal (duplicated to both channels for stereo)."""
    for i in range(0, len(pcm48k) - 959, 960):
        x = (np.clip(pcm48k[i : i + 960], -1, 1) * 32767).astype(np.int16)
        packed = np.repeat(x, 2)[None] if layout == "stereo" else x[None]
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
        frame.sample_rate = 48_000
        yield frame


def _feed_all(feed: SpeechFeed, pcm48k: np.ndarray, layout: str = "stereo") -> list[np.ndarray]:
    out = []
    for frame in _frames(pcm48k, layout):
        if feed.add(packet_samples(frame), frame):
            got = feed.take()
            if got is not None:
                out.append(got)
    got = feed.take()
    if got is not None:
        out.append(got)
    return out


def test_packet_samples_are_the_frame_read_in_place():
    t = np.arange(48_000) / 48_000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for layout in ("stereo", "mono"):
        for frame in list(_frames(tone, layout))[:5]:
            got = packet_samples(frame)
            assert got.dtype == np.int16 and np.array_equal(got, frame.to_ndarray())
            assert not got.flags.writeable  # the frame's own memory
    planar = av.AudioFrame.from_ndarray(np.zeros((2, 960), np.float32), format="fltp", layout="stereo")
    assert packet_samples(planar).shape == (2, 960)  # other formats: PyAV's own conversion


def test_chunks_resample_like_frames_do():
    t = np.arange(48_000 * 2) / 48_000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    chunked = np.concatenate(_feed_all(SpeechFeed(), tone))
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16_000)
    framewise = np.concatenate([f.to_ndarray().reshape(-1) for fr in _frames(tone) for f in resampler.resample(fr)])
    n = min(len(chunked), len(framewise))
    assert abs(len(chunked) - len(framewise)) < 160 and n > 30_000
    assert np.corrcoef(chunked[1000 : n - 1000], framewise[1000 : n - 1000])[0, 1] > 0.999
    assert abs(np.abs(chunked).max() - np.abs(framewise).max()) < 0.01  # the same downmix level


def test_silence_is_zeros_once_and_then_nothing():
    feed = SpeechFeed()
    quiet = np.full(48_000, 10 ** (-70 / 20), np.float32)  # -70 dBFS: below the gate
    pieces = _feed_all(feed, quiet)
    assert len(pieces) == 1 and not pieces[0].any() and len(pieces[0]) == 16_000 * PUSH_MIN_SECONDS
    t = np.arange(9600) / 48_000
    speech = (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    after = _feed_all(feed, speech)
    assert after and np.abs(np.concatenate(after)).max() > 0.1  # sound after silence gets through
    again = _feed_all(feed, quiet)
    assert len(again) == 1 and not again[0].any()  # the first silence after sound, once


def test_push_plan_follows_the_next_refinement():
    feed = SpeechFeed()
    feed.plan(0.0)
    assert feed.push_seconds == PUSH_MIN_SECONDS
    feed.plan(0.5)
    assert PUSH_MIN_SECONDS < feed.push_seconds < PUSH_MAX_SECONDS
    feed.plan(8.0)
    assert feed.push_seconds == PUSH_MAX_SECONDS


def test_a_format_change_keeps_the_audio_before_it():
    feed = SpeechFeed()
    feed.plan(8.0)  # no push due within the test
    t = np.arange(4800) / 48_000
    tone = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    for frame in _frames(tone, "stereo"):
        feed.add(frame.to_ndarray(), frame)
    for frame in _frames(tone, "mono"):
        feed.add(frame.to_ndarray(), frame)
    out = feed.take()
    assert out is not None and 2 * 1600 - 200 < len(out) <= 2 * 1600
