"""The engine on real components: PyAV decoding, ONNX Runtime and torch sessions, espeak/MBROLA voices.

Synthetic voices are a sanity check of the plumbing and of honesty near the boundary; the
real-speech figures live in the README (``speech2face eval`` on the dev set).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engines.audio import AudioError, decode_audio
from engines.backends import make_backend
from engines.face import N_PARAMS, PARAM_NAMES, FaceParams
from engines.mel import mel_spectrogram
from engines.pipeline import AvatarEngine
from engines.vad import StreamingVad, speech_only
from tests import voices


@pytest.fixture(scope="module")
def torch_engine() -> AvatarEngine:
    return AvatarEngine("torch")


def _pcm(path) -> np.ndarray:
    return decode_audio(path).pcm


# ---------------------------------------------------------------- front end
def test_mel_matches_librosa(speech_wav):
    librosa = pytest.importorskip("librosa")
    wav = _pcm(speech_wav["female"])[:25600]
    ours = mel_spectrogram(wav)
    ref = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    assert ours.shape == ref.shape == (161, 40)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_vad_is_chunking_invariant_and_drops_silence(speech_wav):
    pcm = _pcm(speech_wav["male"])
    padded = np.concatenate([np.zeros(16000, np.float32), pcm, np.zeros(24000, np.float32)])
    whole = speech_only(padded)
    vad = StreamingVad()
    parts = [vad.push(padded[i : i + 320]) for i in range(0, len(padded), 320)] + [vad.flush()]
    assert np.array_equal(np.concatenate(parts), whole)
    assert len(whole) < len(padded) - 30000  # the 2.5 s of silence is gone
    assert len(whole) > 0.6 * len(pcm)  # most of the speech is kept
    assert len(speech_only(np.zeros(48000, np.float32))) == 0


@pytest.mark.parametrize("fmt", voices.FORMAT_KEYS)
def test_every_container_decodes_to_16k_mono(bad_inputs, fmt):
    audio = decode_audio(bad_inputs[fmt])
    assert audio.pcm.dtype == np.float32 and audio.pcm.ndim == 1
    assert audio.seconds > 1.0
    assert np.abs(audio.pcm).max() > 0.01


@pytest.mark.parametrize("name", ["rate_8k", "rate_44k_stereo", "rate_48k_6ch"])
def test_odd_rates_and_channel_counts_are_resampled(bad_inputs, name, onnx_engine):
    audio = decode_audio(bad_inputs[name])
    assert audio.source_rate != 16000 or audio.source_channels != 1
    update = onnx_engine.analyze(audio.pcm)
    assert update.seconds_heard > 1.0


@pytest.mark.parametrize(
    "name, words",
    [("empty", "empty"), ("not_audio", "audio"), ("not_audio_text", "audio"), ("truncated", "truncated")],
)
def test_bad_files_raise_clear_errors(bad_inputs, name, words):
    with pytest.raises(AudioError, match=words):
        decode_audio(bad_inputs[name])


def test_long_file_is_bounded(bad_inputs):
    capped = decode_audio(bad_inputs["long"], max_seconds=60)
    assert capped.truncated_at_cap and abs(capped.seconds - 60) < 0.1


# ---------------------------------------------------------------- backends
def test_torch_and_onnx_runtime_agree(speech_wav):
    torch_b, ort_b = make_backend("torch"), make_backend("onnx")
    assert ort_b.encoder.get_providers() == ["CPUExecutionProvider"]
    wav = _pcm(speech_wav["female"])
    mels = np.stack([mel_spectrogram(wav[i : i + 25600])[:160] for i in range(0, 16 * 4000, 4000)])
    for batch in (mels[:1], mels):  # batch 1 and 16
        diff = np.abs(torch_b.embed(batch) - ort_b.embed(batch)).max()
        assert diff <= 1e-4, diff


def test_params_equal_across_backends(speech_wav, onnx_engine, torch_engine):
    pcm = _pcm(speech_wav["male"])
    a, b = onnx_engine.analyze(pcm), torch_engine.analyze(pcm)
    assert np.abs(a.embedding - b.embedding).max() <= 1e-4
    assert np.abs(a.params.vector - b.params.vector).max() <= 1e-4
    assert abs(a.p_female - b.p_female) <= 1e-4 and abs(a.confidence - b.confidence) <= 1e-4


# ---------------------------------------------------------------- pipeline
def test_streaming_equals_one_shot(speech_wav, onnx_engine):
    pcm = _pcm(speech_wav["female"])
    one_shot = onnx_engine.analyze(pcm)
    pipe = onnx_engine.pipeline()
    versions, seconds = [], []
    for i in range(0, len(pcm), 320):  # 20 ms chunks
        update = pipe.push(pcm[i : i + 320])
        if update is not None:
            versions.append(update.version)
            seconds.append(update.seconds_heard)
    final = pipe.finish()
    assert np.array_equal(final.params.vector, one_shot.params.vector)
    assert final.p_female == one_shot.p_female and final.version == one_shot.version
    assert versions == sorted(versions) and len(versions) >= 8  # a refinement every 0.5 s of speech
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(seconds, seconds[1:]))


def test_seconds_limit_matches_the_live_state(speech_wav, onnx_engine):
    pcm = _pcm(speech_wav["male"])
    limited = onnx_engine.analyze(pcm, seconds=3.0)
    pipe = onnx_engine.pipeline()
    live = None
    for i in range(0, len(pcm), 800):
        update = pipe.push(pcm[i : i + 800])
        if update is not None and abs(update.seconds_heard - 3.0) < 1e-9:
            live = update
    assert live is not None and limited.seconds_heard == pytest.approx(3.0)
    assert np.abs(live.params.vector - limited.params.vector).max() <= 1e-6


def test_confidence_grows_with_speech(voice_corpus, onnx_engine):
    pcm = _pcm(voice_corpus["espeak-en-us-m3"][voices.LONG_SENTENCE_INDEX])
    conf = [onnx_engine.analyze(pcm, seconds=s).confidence for s in (1.0, 3.0, 6.0)]
    assert conf[0] < conf[1] < conf[2]


def test_plain_voices_get_their_labelled_presentation(voice_corpus, onnx_engine):
    wrong = []
    for voice in voices.VOICES:
        update = onnx_engine.analyze(_pcm(voice_corpus[voice.name][0]))
        if update.gender != voice.gender:
            wrong.append((voice.name, round(update.p_female, 2)))
    assert not wrong, wrong


def test_pitch_moved_voices_are_never_confidently_wrong(pitch_sweep, onnx_engine):
    bad = []
    for voice, path in pitch_sweep:
        update = onnx_engine.analyze(_pcm(path))
        p_wrong = 1 - update.p_female if voice.gender == "female" else update.p_female
        if p_wrong > 0.8:
            bad.append((voice.name, round(p_wrong, 2)))
    assert not bad, bad


def test_same_voice_is_closer_than_different_voices(voice_corpus, onnx_engine):
    names = [v.name for v in voices.VOICES if v.engine == "mbrola"] + [
        "espeak-en-f3",
        "espeak-en-m7",
        "espeak-de-m4",
        "espeak-es-f2",
    ]
    vecs = {n: [onnx_engine.analyze(_pcm(p)).params.vector for p in voice_corpus[n][:2]] for n in names}
    same = {n: float(np.linalg.norm(a - b)) for n, (a, b) in vecs.items()}
    diff = {(m, n): float(np.linalg.norm(vecs[m][0] - vecs[n][1])) for m, n in itertools.permutations(names, 2)}
    # every voice's other sentence is nearer than any other voice's sentence, with a margin
    for n in names:
        nearest_other = min(d for (a, b), d in diff.items() if n in (a, b))
        assert same[n] * 1.2 < nearest_other, (n, same[n], nearest_other)
    assert np.mean(list(diff.values())) > 2.5 * np.mean(list(same.values()))


def test_privacy_modes(speech_wav, onnx_engine):
    pcm = _pcm(speech_wav["female"])
    stable = [onnx_engine.analyze(pcm, privacy="stable").params.vector for _ in range(2)]
    room_a = [onnx_engine.analyze(pcm, privacy="room", room="alpha").params.vector for _ in range(2)]
    room_b = onnx_engine.analyze(pcm, privacy="room", room="beta").params.vector
    rnd = [onnx_engine.analyze(pcm, privacy="random").params.vector for _ in range(2)]
    assert np.array_equal(stable[0], stable[1]) and np.array_equal(room_a[0], room_a[1])
    assert np.linalg.norm(room_a[0] - room_b) > 0.5 and np.linalg.norm(room_a[0] - stable[0]) > 0.5
    assert np.linalg.norm(rnd[0] - rnd[1]) > 0.5
    with pytest.raises(ValueError, match="room"):
        onnx_engine.analyze(pcm, privacy="room")


def test_overrides_apply_and_skin_tone_is_never_from_voice(speech_wav, onnx_engine):
    female, male = _pcm(speech_wav["female"]), _pcm(speech_wav["male"])
    dark = onnx_engine.analyze(female, overrides={"skin_tone": "deep", "gender_presentation": "masculine"})
    assert dark.params.category("skin_tone") == "deep" and dark.params["femininity"] == pytest.approx(0.1)
    # without a choice or a seed, two different voices in any privacy mode wear the same
    # documented default colours (tests/test_look.py checks this over hundreds of voices)
    a = onnx_engine.analyze(female)
    b = onnx_engine.analyze(male, privacy="room", room="x")
    for k in ("skin_tone", "hair_colour", "eye_colour", "freckles"):
        assert a.params[k] == b.params[k]
    with pytest.raises(ValueError, match="skin_tone must be one of"):
        onnx_engine.analyze(male, overrides={"skin_tone": "green"})


def test_too_little_speech_gives_a_neutral_low_confidence_face(bad_inputs, onnx_engine):
    for name in ("silence", "noise_floor", "short_speech"):
        update = onnx_engine.analyze(decode_audio(bad_inputs[name]).pcm)
        assert update.seconds_heard < 1.0
        assert np.array_equal(update.params.vector, FaceParams.neutral().vector)
        assert update.confidence == 0.0
        assert "more speech" in update.message


def test_face_params_contract():
    neutral = FaceParams.neutral()
    assert neutral.vector.shape == (N_PARAMS,) and len(PARAM_NAMES) == N_PARAMS
    assert FaceParams.from_dict(neutral.as_dict()).vector.tolist() == pytest.approx(neutral.vector.tolist(), abs=1e-6)
    with pytest.raises(ValueError):
        FaceParams(np.zeros(3))


def test_push_many_batches_callers_and_matches_separate_pushes(speech_wav, onnx_engine):
    clips = [_pcm(speech_wav["female"]), _pcm(speech_wav["male"])]
    solo = [onnx_engine.pipeline() for _ in clips]
    many = [onnx_engine.pipeline() for _ in clips]
    for i in range(0, max(map(len, clips)), 3200):  # 0.2 s pushes, as the server feeds them
        for pipe, pcm in zip(solo, clips):
            pipe.push(pcm[i : i + 3200])
        onnx_engine.push_many([(pipe, pcm[i : i + 3200]) for pipe, pcm in zip(many, clips)])
    for a, b in zip(solo, many):
        assert a.current.version == b.current.version > 8
        assert a.current.seconds_heard == b.current.seconds_heard
        assert np.abs(a.current.params.vector - b.current.params.vector).max() <= 1e-4
    assert many[0].current.gender == "female" and many[1].current.gender == "male"


def test_traits_come_first_then_identity(voice_corpus, onnx_engine):
    neutral = FaceParams.neutral()
    categorical = ("hair_style", "facial_hair_style")
    look = ("hair_colour", "skin_tone", "eye_colour", "freckles")
    changed_late = 0
    for name in ("mbrola-us1", "mbrola-us2", "espeak-en-f3", "espeak-de-m4"):
        pcm = _pcm(voice_corpus[name][voices.LONG_SENTENCE_INDEX])
        early, late = onnx_engine.analyze(pcm, seconds=2.0), onnx_engine.analyze(pcm)
        # early: the voice's traits already show, the identity buckets are still the neutral face's
        assert abs(early.params["femininity"] - 0.5) > 0.1
        assert all(early.params[c] == pytest.approx(neutral[c]) for c in categorical)
        changed_late += late.params.category("hair_style") != neutral.category("hair_style")
        # the colours are the look's (default here), from the first frame to the last
        assert all(early.params[c] == late.params[c] == pytest.approx(neutral[c]) for c in look)
    assert changed_late >= 2  # identity details arrive with more speech


def test_push_many_isolates_a_failing_pipeline(speech_wav, onnx_engine):
    pcm = _pcm(speech_wav["female"])
    good, bad = onnx_engine.pipeline(), onnx_engine.pipeline()
    bad.finish()  # pushing into a finished pipeline raises
    results = onnx_engine.push_many([(good, pcm), (bad, pcm)])
    assert isinstance(results[1], RuntimeError)
    assert results[0] is not None and results[0].seconds_heard > 3.0


def test_telephone_band_is_detected_and_f4_dropped():
    from engines.profile import VoiceProfile

    rng = np.random.default_rng(3)
    wide = rng.standard_normal(16_000) * 0.1
    spec = np.fft.rfft(wide)
    spec[np.fft.rfftfreq(16_000, 1 / 16_000) > 3600] = 0  # an 8 kHz phone line
    phone = np.fft.irfft(spec, 16_000)
    tel, hifi = VoiceProfile(), VoiceProfile()
    for i in (0, 8_000):
        tel.add_block(phone[i : i + 8_000])
        hifi.add_block(wide[i : i + 8_000])
    assert (tel.blocks, tel.narrowband_blocks) == (2, 2) and (hifi.blocks, hifi.narrowband_blocks) == (2, 0)
    # the same formants give a different tract length once F4 is left out
    for p in (tel, hifi):
        p.formant_sum, p.formant_n = np.array([500.0, 1500.0, 2500.0, 4200.0]) * 10, 10
    assert tel.vtl_cm != pytest.approx(hifi.vtl_cm)
    assert tel.vtl_cm == pytest.approx(35_000 / (2 * 1000.0), rel=1e-6)  # F1..F3 at 0.5/1.5/2.5 × 1000 Hz
