"""The adaptive model cadence: fewer refinements, Praat blocks and partials once the face is
settled, and still streaming = one-shot at every face the stream shows."""

from __future__ import annotations

import numpy as np
import pytest

from engines.audio import decode_audio
from engines.cadence import ADAPTIVE, EVERY_BLOCK, Cadence, CadenceRule
from engines.encoder import PARTIAL_HOP_SAMPLES, PARTIAL_SAMPLES
from tests import voices


@pytest.fixture(scope="module")
def long_speech() -> np.ndarray:
    """About 50 s of one synthetic voice: its four sentences there and back, with short pauses."""
    if not voices.espeak_available():
        pytest.skip("espeak-ng not installed")
    voice = voices.voice_by_name("espeak-en-us-m3")
    clips = [decode_audio(voices.synthesize(voice, i)).pcm for i in range(4)]
    gap = np.zeros(4800, np.float32)
    return np.concatenate([x for c in clips + clips[::-1] for x in (c, gap)])


def _stream(engine, pcm: np.ndarray, sizes, rule: CadenceRule = ADAPTIVE):
    """Push in chunks of the given sizes (cycled); every Update as (seconds, version, vector)."""
    pipe = engine.pipeline(cadence=rule)
    out, i, k = [], 0, 0
    while i < len(pcm):
        n = sizes[k % len(sizes)]
        update = pipe.push(pcm[i : i + n])
        if update is not None:
            out.append((update.seconds_heard, update.version, update.params.vector.copy()))
        i, k = i + n, k + 1
    return pipe, out


# ---------------------------------------------------------------- the rule alone
def test_rule_thins_out_a_settled_face_and_wakes_up_for_a_new_one():
    cad = Cadence(PARTIAL_HOP_SAMPLES, PARTIAL_SAMPLES)
    young = int(ADAPTIVE.young_blocks)
    refined = []
    face = np.zeros(8)
    for blocks in range(1, 200):
        assert cad.analyses(blocks, voiced_seconds=10.0) == (blocks <= young or blocks % ADAPTIVE.praat_stride == 0)
        if not cad.refines_at(blocks):
            continue
        refined.append(blocks)
        if cad.decides_at(blocks):
            face = face + 0.002  # a face that has settled: 0.004 per second of speech
            cad.decided(blocks, face)
    assert refined[:young] == list(range(1, young + 1))  # every block while young
    gaps = np.diff(refined)
    assert gaps.max() == ADAPTIVE.max_interval_blocks and list(gaps) == sorted(gaps)  # doubling up to 4 s
    assert cad.partial_hop == PARTIAL_SAMPLES  # settled: partials no longer overlap
    # a new speaker: the face jumps, the next refinement comes one block later
    last = refined[-1]
    cad.decided(last + cad.interval, face + 1.0)
    assert cad.interval == 1
    # a voice with little voicing keeps Praat on every block until enough is heard
    assert all(cad.analyses(b, voiced_seconds=1.0) for b in range(young, young + 20))


def test_every_block_rule_is_the_old_cadence():
    cad = Cadence(PARTIAL_HOP_SAMPLES, PARTIAL_SAMPLES, EVERY_BLOCK)
    assert all(cad.refines_at(b) and not cad.decides_at(b) and cad.analyses(b, 99.0) for b in range(1, 400))
    assert cad.partial_hop == PARTIAL_HOP_SAMPLES


# ---------------------------------------------------------------- the real pipeline
def test_long_stream_thins_out_and_equals_one_shot_at_every_face(long_speech, onnx_engine):
    pipe, fine = _stream(onnx_engine, long_speech, [320])  # 20 ms chunks: every refinement seen
    heard = pipe.seconds_heard
    assert heard > 35.0
    seconds = [s for s, _, _ in fine]
    young = [s for s in seconds if s <= ADAPTIVE.young_seconds + 1e-9]
    late = [s for s in seconds if s > ADAPTIVE.young_seconds + 1e-9]
    assert np.allclose(young, np.arange(1, len(young) + 1) * 0.5)  # every block while young
    assert len(late) < 0.4 * (heard - ADAPTIVE.young_seconds) / 0.5  # far fewer afterwards
    assert max(np.diff(late)) >= 2.0
    assert pipe._analysed < 0.5 * pipe._heard  # Praat analysed under half the speech
    assert [v for _, v, _ in fine] == list(range(1, len(fine) + 1))  # a version per refinement

    # any chunking gives the same faces at the same positions (a push returns only its newest)
    _, coarse = _stream(onnx_engine, long_speech, [11_000, 27_000, 3_300])
    by_pos = {s: (v, vec) for s, v, vec in fine}
    assert len(coarse) > 10
    for s, v, vec in coarse:
        assert by_pos[s][0] == v and np.array_equal(by_pos[s][1], vec), s

    # streaming = one-shot at faces the sparse cadence shows (a version per refinement, bit for bit)
    for s, v, vec in [fine[len(young)], fine[len(young) + len(late) // 2], fine[-1]]:
        one = onnx_engine.analyze(long_speech, seconds=s)
        assert one.seconds_heard == pytest.approx(s) and one.version == v
        assert np.array_equal(one.params.vector, vec), s

    # between refinements, analyze describes exactly the speech asked for
    between = late[-1] - 0.5
    assert between not in late
    one = onnx_engine.analyze(long_speech, seconds=between)
    assert one.seconds_heard == pytest.approx(between)


def test_old_cadence_still_refines_every_block(long_speech, onnx_engine):
    pcm = long_speech[: 16_000 * 14]
    pipe, updates = _stream(onnx_engine, pcm, [320], rule=EVERY_BLOCK)
    seconds = [s for s, _, _ in updates]
    assert np.allclose(seconds, np.arange(1, len(seconds) + 1) * 0.5) and seconds[-1] > 8.0
    assert pipe._analysed == pipe._heard - len(pipe._block)


def test_batched_pushes_follow_the_same_cadence(long_speech, onnx_engine):
    clips = [long_speech, long_speech[16_000 * 3 :]]
    solo = [_stream(onnx_engine, c, [3200])[1] for c in clips]
    pipes = [onnx_engine.pipeline() for _ in clips]
    many: list[list] = [[], []]
    batches: list[int] = []
    for i in range(0, max(map(len, clips)), 3200):  # 0.2 s pushes, as the server feeds them
        items = [(p, c[i : i + 3200]) for p, c in zip(pipes, clips)]
        for k, update in enumerate(onnx_engine.push_many(items, on_encode=lambda n, cpu: batches.append(n))):
            assert not isinstance(update, Exception)
            if update is not None:
                many[k].append((update.seconds_heard, update.version, update.params.vector))
    for a, b in zip(solo, many):
        assert [(s, v) for s, v, _ in a] == [(s, v) for s, v, _ in b]
        assert max(float(np.abs(x[2] - y[2]).max()) for x, y in zip(a, b)) <= 1e-4
    # partials wait for their refinement and go in one batch with the other caller's
    assert max(batches) >= 3 and sum(batches) == sum(p._n_partials for p in pipes)


def test_a_user_override_is_not_mistaken_for_a_moving_face(long_speech, onnx_engine):
    pipe = onnx_engine.pipeline()
    pipe.push(long_speech[: 16_000 * 25])
    settled = pipe.cadence.interval
    assert settled >= 2
    pipe.set_overrides({"skin_tone": "deep", "glasses": "yes"})  # a big change, made by hand
    pipe.push(long_speech[16_000 * 25 : 16_000 * 32])
    assert pipe.cadence.interval >= settled // 2  # no return to every block
