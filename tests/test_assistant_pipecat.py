"""The Pipecat video service, driven by ``pipecat.tests.utils.run_test`` (a real pipeline
worker with Pipecat's own frame classes) the way a TTS service feeds it."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="the [pipecat] extra is not installed")

from pipecat.frames.frames import (  # noqa: E402
    InterruptionFrame,
    OutputImageRawFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed  # noqa: E402
from pipecat.pipeline.worker import PipelineParams  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402

from speech2face.assistant.pipecat import Speech2FaceVideoService  # noqa: E402
from tests.assistant_helpers import assert_paced, best_lag, correlation, energy_at, syllables  # noqa: E402

RATE = 24_000
FPS = 25.0
PERIOD = 1.0 / FPS
PARAMS = PipelineParams(audio_out_sample_rate=RATE)


class Pushed(BaseObserver):
    """When our service pushed each frame downstream (wall clock)."""

    def __init__(self, service) -> None:
        super().__init__()
        self.service = service
        self.log: list[tuple[float, object]] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.source is self.service:
            self.log.append((time.monotonic(), data.frame))


def tts_frames(pcm: np.ndarray, context_id: str, chunk_ms: int = 40) -> list:
    n = RATE * chunk_ms // 1000
    return [TTSAudioRawFrame(pcm[i : i + n].tobytes(), RATE, 1, context_id=context_id) for i in range(0, len(pcm), n)]


def audio_of(frames) -> np.ndarray:
    return np.concatenate([np.frombuffer(f.audio, np.int16) for f in frames if isinstance(f, TTSAudioRawFrame)])


def service() -> tuple[Speech2FaceVideoService, Pushed]:
    s = Speech2FaceVideoService(seed="pipecat-test", size=256, fps=FPS)
    return s, Pushed(s)


@pytest.mark.asyncio
async def test_tts_audio_comes_back_in_step_with_lip_synced_pictures():
    svc, pushed = service()
    pcm = syllables(2.4, RATE)
    duration = len(pcm) / RATE
    frames = [SleepFrame(0.3), TextFrame("hello"), TTSStartedFrame(context_id="c1"), *tts_frames(pcm, "c1")]
    frames += [TTSStoppedFrame(context_id="c1"), SleepFrame(duration + 0.6)]
    down, _ = await run_test(svc, frames_to_send=frames, pipeline_params=PARAMS, observers=[pushed])

    kinds = [type(f) for f in down]
    assert TextFrame in kinds  # everything else passes through
    assert kinds.count(TTSStartedFrame) == 1 and kinds.count(TTSStoppedFrame) == 1
    audio_idx = [i for i, f in enumerate(down) if isinstance(f, TTSAudioRawFrame)]
    assert kinds.index(TTSStartedFrame) < audio_idx[0]
    assert kinds.index(TTSStoppedFrame) > audio_idx[-1]  # held back until the audio has played out
    assert all(down[i].context_id == "c1" and down[i].sample_rate == RATE for i in audio_idx)

    # the same audio comes back, all of it
    out = audio_of(down)
    assert len(out) >= len(pcm) and len(out) - len(pcm) < RATE * PERIOD
    assert np.array_equal(out[: len(pcm)], pcm)

    # pictures at fps, paced in real time, idle ones before the speech
    images = [(w, f) for w, f in pushed.log if isinstance(f, OutputImageRawFrame)]
    assert all(f.size == (256, 256) and f.format == "RGB" and len(f.image) == 256 * 256 * 3 for _, f in images)
    meta = [f.metadata["speech2face"] for _, f in images]
    assert_paced([w for w, _ in images], [m["index"] for m in meta], FPS)
    assert meta[0]["audio_pos"] is None and meta[-1]["audio_pos"] is None

    # in step: each speaking picture comes right after the audio it shows, within one frame period
    pushed_samples = 0
    lead = []
    for _, f in pushed.log:
        if isinstance(f, TTSAudioRawFrame):
            pushed_samples += len(f.audio) // 2
        elif isinstance(f, OutputImageRawFrame) and f.metadata["speech2face"]["audio_pos"] is not None:
            lead.append(pushed_samples / RATE - f.metadata["speech2face"]["audio_pos"])
    assert len(lead) >= 0.9 * duration * FPS
    assert 0.0 < min(lead) and max(lead) <= PERIOD + 1e-6, (min(lead), max(lead))

    # and the mouth follows the audio energy
    voiced = [m for m in meta if m["audio_pos"] is not None]
    mouth = np.array([m["mouth"] for m in voiced])
    energy = energy_at(pcm, RATE, np.array([m["audio_pos"] for m in voiced]), PERIOD)
    assert correlation(mouth, energy) > 0.6, correlation(mouth, energy)
    assert abs(best_lag(mouth, energy)) <= 1


@pytest.mark.asyncio
async def test_interruption_drops_queued_audio_and_closes_the_mouth_within_a_frame():
    svc, pushed = service()
    pcm = syllables(3.0, RATE)
    frames = [TTSStartedFrame(context_id="c2"), *tts_frames(pcm, "c2"), SleepFrame(1.0), InterruptionFrame(), SleepFrame(0.6)]
    down, _ = await run_test(svc, frames_to_send=frames, pipeline_params=PARAMS, observers=[pushed])

    t_int = next(w for w, f in pushed.log if isinstance(f, InterruptionFrame))
    assert InterruptionFrame in [type(f) for f in down]
    assert TTSStoppedFrame not in [type(f) for f in down]  # an interrupted utterance does not "stop"
    played = audio_of(f for w, f in pushed.log if w <= t_int)
    late = [f for w, f in pushed.log if w > t_int and isinstance(f, TTSAudioRawFrame)]
    assert 0.6 <= len(played) / RATE <= 1.3, len(played) / RATE
    assert sum(len(f.audio) // 2 for f in late) <= RATE * PERIOD  # at most the frame already on its way
    after = [f.metadata["speech2face"] for w, f in pushed.log if w > t_int + PERIOD and isinstance(f, OutputImageRawFrame)]
    assert len(after) >= 10
    assert all(m["mouth"] == 0.0 and m["audio_pos"] is None for m in after), after[:4]


@pytest.mark.asyncio
async def test_end_frame_lets_the_last_words_play_out():
    svc, pushed = service()
    pcm = syllables(1.0, RATE)
    frames = [TTSStartedFrame(context_id="c3"), *tts_frames(pcm, "c3"), TTSStoppedFrame(context_id="c3")]
    down, _ = await run_test(svc, frames_to_send=frames, pipeline_params=PARAMS, observers=[pushed])
    out = audio_of(down)
    assert np.array_equal(out[: len(pcm)], pcm)
    assert isinstance(down[-1], (TTSStoppedFrame, OutputImageRawFrame))
    assert [type(f) for f in down].count(TTSStoppedFrame) == 1


def test_bad_options_fail_at_construction():
    with pytest.raises(ValueError, match="fps"):
        Speech2FaceVideoService(seed="x", fps=0)
    with pytest.raises(ValueError, match="face param"):
        Speech2FaceVideoService(face={"jaw_width": 3})


@pytest.mark.asyncio
async def test_face_refines_from_the_tts_voice(onnx_engine, tts24k):
    """No face given: the avatar hears the TTS voice (real speech) and the service reports each refinement."""
    svc = Speech2FaceVideoService(engine=onnx_engine, fps=FPS, freeze_after_s=3.0)
    updates: list[dict] = []

    @svc.event_handler("on_face_updated")
    async def on_face(service, update):
        updates.append(update)

    pcm = tts24k["female"][: int(3.5 * RATE)]
    frames = [
        TTSStartedFrame(context_id="v"),
        *tts_frames(pcm, "v"),
        TTSStoppedFrame(context_id="v"),
        SleepFrame(len(pcm) / RATE + 1.0),
    ]
    down, _ = await run_test(svc, frames_to_send=frames, pipeline_params=PARAMS)
    assert np.array_equal(audio_of(down)[: len(pcm)], pcm)
    assert updates, "no refinement from 3.5 s of speech"
    versions = [u["version"] for u in updates]
    assert versions == sorted(versions) and versions[-1] >= 2
    assert updates[-1]["speech_seconds"] > 1.5 and "face" in updates[-1]
    assert updates[-1]["gender"]["p_female"] > 0.5  # a female voice, heard through the plugin
