"""Tests of the synthetic corpus itself: if these fail, model tests built on the
corpus would be measuring the generator, not the service."""

from __future__ import annotations

import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests import voices
from tests.voices import F0_RANGE, LONG_SENTENCE_INDEX, PITCH_SWEEP, VOICES, Voice


@pytest.fixture(scope="module")
def corpus_f0(voice_corpus: dict[str, list[Path]]) -> dict[str, float]:
    """Median F0 of sentence 0 per voice, measured once for all F0 tests."""
    return {name: voices.median_f0(paths[0]) for name, paths in voice_corpus.items()}


def _decode(path: Path) -> tuple[int, int, int, str]:
    """(total samples per channel, rate, channels, codec name) as the service's decoder sees it."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        n, rate, ch = 0, 0, 0
        for frame in container.decode(stream):
            n += frame.samples
            rate, ch = frame.sample_rate, len(frame.layout.channels)
    return n, rate, ch, codec


# --------------------------------------------------------------------------- voice list
def test_voice_list_is_balanced_and_diverse() -> None:
    assert len(VOICES) >= 24
    assert len({v.name for v in VOICES + PITCH_SWEEP}) == len(VOICES) + len(PITCH_SWEEP)
    genders = Counter(v.gender for v in VOICES)
    assert genders["female"] == genders["male"]
    assert {v.engine for v in VOICES} == {"espeak", "mbrola"}
    assert len({v.language for v in VOICES}) >= 4
    assert len({v.accent for v in VOICES}) >= 6
    assert all(v.pitch is None for v in VOICES)
    assert all(len(v.sentences) >= 4 for v in VOICES)
    # A silently ignored variant (e.g. en-gb+f5) must never be reintroduced.
    assert not {v.voice_id for v in VOICES} & set(voices.DROPPED_VARIANTS)


# --------------------------------------------------------------------------- plain voices
def test_every_voice_is_16k_mono_pcm16_of_sane_length(voice_corpus: dict[str, list[Path]]) -> None:
    assert set(voice_corpus) == {v.name for v in VOICES}
    for paths in voice_corpus.values():
        for p in paths:
            with wave.open(str(p)) as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2), p
                seconds = w.getnframes() / w.getframerate()
            assert 3.0 <= seconds <= 15.0, f"{p.name}: {seconds:.1f}s"
            x, _ = voices.read_wav(p)
            assert np.abs(x).max() > 0.05, f"{p.name} is (near) silent"


def test_each_voice_pitch_matches_its_label(corpus_f0: dict[str, float]) -> None:
    bad = []
    for v in VOICES:
        lo, hi = F0_RANGE[v.gender]
        if not lo <= corpus_f0[v.name] <= hi:
            bad.append(f"{v.name} ({v.gender}): {corpus_f0[v.name]:.0f} Hz not in {lo}-{hi}")
    assert not bad, "\n".join(bad)


def test_female_voices_are_higher_than_male_on_average(corpus_f0: dict[str, float]) -> None:
    female = [corpus_f0[v.name] for v in VOICES if v.gender == "female"]
    male = [corpus_f0[v.name] for v in VOICES if v.gender == "male"]
    assert np.mean(female) > 1.5 * np.mean(male)
    assert min(female) > max(male)


def test_sentences_differ_per_voice(voice_corpus: dict[str, list[Path]]) -> None:
    for name, paths in voice_corpus.items():
        assert len(set(paths)) == len(paths)
        assert len({p.read_bytes() for p in paths}) == len(paths), name
        durations = [voices.duration_s(p) for p in paths]
        assert len({round(d, 3) for d in durations}) == len(durations), (name, durations)
        long = durations[LONG_SENTENCE_INDEX]
        assert long > max(d for i, d in enumerate(durations) if i != LONG_SENTENCE_INDEX), name
        assert long >= 8.5, f"{name}: long sentence only {long:.1f}s"


# --------------------------------------------------------------------------- pitch sweep
def test_pitch_sweep_crosses_the_gender_boundary(pitch_sweep: list[tuple[Voice, Path]]) -> None:
    boundary = F0_RANGE["male"][1]
    by_base: dict[str, list[tuple[int, float]]] = {}
    for v, p in pitch_sweep:
        assert v.pitch is not None and p.is_file()
        by_base.setdefault(v.voice_id, []).append((v.pitch, voices.median_f0(p)))
    assert len(by_base) >= 2
    for base, points in by_base.items():
        f0s = [f for _, f in sorted(points)]
        assert all(b > a for a, b in zip(f0s, f0s[1:])), (base, f0s)  # -p raises F0
        assert min(f0s) < boundary < max(f0s), (base, f0s)


# --------------------------------------------------------------------------- cache
def test_cache_is_reused_and_keyed_on_pitch(tmp_path: Path) -> None:
    if not voices.espeak_available():
        pytest.skip("espeak-ng/sox not installed")
    v = VOICES[0]
    first = voices.synthesize(v, 1, out_dir=tmp_path)
    mtime = first.stat().st_mtime_ns
    again = voices.synthesize(v, 1, out_dir=tmp_path)
    assert again == first and again.stat().st_mtime_ns == mtime
    other = voices.synthesize(Voice(v.name, v.engine, v.voice_id, v.gender, v.accent, 70), 1, out_dir=tmp_path)
    assert other != first
    assert not list(tmp_path.glob(".tmp-*")), "temporary files left behind"


def test_speech_wav_fixture(speech_wav: dict[str, Path]) -> None:
    assert set(speech_wav) == {"female", "male"}
    for gender, p in speech_wav.items():
        assert 5.0 <= voices.duration_s(p) <= 8.0
        lo, hi = F0_RANGE[gender]
        assert lo <= voices.median_f0(p) <= hi


# --------------------------------------------------------------------------- bad inputs
def test_bad_input_files_have_the_promised_defects(bad_inputs: dict[str, Path]) -> None:
    import av

    expected = {
        "empty",
        "not_audio",
        "truncated",
        "silence",
        "noise_floor",
        "short_speech",
        "long",
        "rate_8k",
        "rate_44k_stereo",
        "rate_48k_6ch",
        *voices.FORMAT_KEYS,
    }
    assert expected <= set(bad_inputs)
    assert all(p.is_file() for p in bad_inputs.values())

    assert bad_inputs["empty"].stat().st_size == 0
    assert bad_inputs["not_audio"].suffix == ".wav"
    for key in ("not_audio", "not_audio_text", "empty"):
        # FFmpeg happily opens a PNG (as an image stream); what matters is no audio.
        try:
            with av.open(str(bad_inputs[key])) as c:
                assert not c.streams.audio, key
        except av.error.FFmpegError:
            pass
    assert bad_inputs["truncated"].stat().st_size < 0.35 * bad_inputs["wav"].stat().st_size

    silence, rate = voices.read_wav(bad_inputs["silence"])
    assert len(silence) == 5 * rate and not silence.any()
    noise, rate = voices.read_wav(bad_inputs["noise_floor"])
    rms_db = 20 * np.log10(np.sqrt(np.mean(noise**2)))
    assert len(noise) == 5 * rate and -80 < rms_db < -60
    assert voices.duration_s(bad_inputs["short_speech"]) == pytest.approx(0.3, abs=0.01)
    speech, _ = voices.read_wav(bad_inputs["short_speech"])
    assert np.sqrt(np.mean(speech**2)) > 0.02, "short clip should be speech, not a pause"

    for key, rate, ch in (("rate_8k", 8000, 1), ("rate_44k_stereo", 44100, 2), ("rate_48k_6ch", 48000, 6)):
        # Via PyAV: sox writes >2 channels as WAVE_FORMAT_EXTENSIBLE, which
        # Python 3.11's ``wave`` cannot parse.
        n, got_rate, got_ch, _ = _decode(bad_inputs[key])
        assert (got_rate, got_ch) == (rate, ch), key
        assert n / rate > 3.0


def test_long_input_is_ten_minutes_but_small(bad_inputs: dict[str, Path]) -> None:
    import av

    p = bad_inputs["long"]
    assert p.stat().st_size < 5_000_000
    with av.open(str(p)) as c:
        seconds = float(c.duration) / av.time_base
    assert 595 <= seconds <= 605


@pytest.mark.parametrize(
    "key,codec",
    [
        ("wav", "pcm_s16le"),
        ("flac", "flac"),
        ("mp3", "mp3"),
        ("ogg", "vorbis"),
        ("opus", "opus"),
        ("webm", "opus"),
        ("m4a", "aac"),
    ],
)
def test_format_clips_decode_with_pyav(bad_inputs: dict[str, Path], key: str, codec: str) -> None:
    p = bad_inputs[key]
    assert p.suffix == f".{key}"
    n, rate, ch, name = _decode(p)
    assert codec in name, (key, name)
    assert ch == 1
    assert n / rate >= 1.0, f"{key}: only {n / rate:.2f}s decoded"


@pytest.mark.parametrize("key", ["truncated", "rate_8k", "rate_44k_stereo", "rate_48k_6ch"])
def test_odd_but_valid_inputs_still_decode(bad_inputs: dict[str, Path], key: str) -> None:
    n, rate, _, _ = _decode(bad_inputs[key])
    assert n / rate >= 1.0
