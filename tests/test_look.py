"""Colours that read as ethnicity never come from the voice: only the user's choice or look seed.

The decoder is driven over hundreds of voices (random embeddings and voice profiles spanning
children to deep male voices) and over the synthetic voices through the whole pipeline; with
one seed the look parameters must be bit-identical for all of them.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.backends import make_backend
from engines.decoder import FEATURE_INDEX
from engines.face import PARAM_INDEX, SPECS_BY_NAME
from engines.identity import identity_basis
from engines.look import DEFAULT_LOOK, LOOK_PARAMS, apply_look, check_seed, look_values
from engines.pipeline import AvatarEngine
from engines.profile import N_FEATURES

LOOK_IDX = [PARAM_INDEX[k] for k in LOOK_PARAMS]


def _random_voices(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    emb = np.abs(rng.standard_normal((n, 256))).astype(np.float32) + rng.random((n, 1)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    feats = np.zeros((n, N_FEATURES), np.float32)
    feats[:, FEATURE_INDEX["f0_median_st"]] = rng.uniform(5, 35, n)  # ~67 Hz … 380 Hz
    feats[:, FEATURE_INDEX["f0_p25_st"]] = feats[:, FEATURE_INDEX["f0_median_st"]] - rng.uniform(0, 3, n)
    feats[:, FEATURE_INDEX["f0_spread_st"]] = rng.uniform(2, 20, n)
    feats[:, FEATURE_INDEX["vtl_cm"]] = rng.uniform(9, 19, n)
    feats[:, FEATURE_INDEX["hnr_db"]] = rng.uniform(3, 20, n)
    feats[:, FEATURE_INDEX["perturbation"]] = rng.uniform(0.005, 0.04, n)
    feats[:, FEATURE_INDEX["voiced_s"]] = rng.uniform(0.5, 30, n)
    feats[:, FEATURE_INDEX["speech_s"]] = feats[:, FEATURE_INDEX["voiced_s"]] * rng.uniform(1.1, 2, n)
    return emb, feats


def _decode(emb: np.ndarray, feats: np.ndarray, seed: str | None, privacy: str = "stable", mask_look: bool = True):
    ident = identity_basis(privacy, salt="room-x" if privacy == "room" else None)
    n = len(emb)
    values, mask = np.zeros(len(PARAM_INDEX), np.float32), np.zeros(len(PARAM_INDEX), np.float32)
    if mask_look:
        values, mask = apply_look(values, mask, seed)
    out = make_backend("onnx").decode(
        {
            "embedding": emb,
            "features": feats,
            "basis": ident.basis,
            "center": ident.center,
            "code_scale": ident.code_scale,
            "override_values": np.tile(values, (n, 1)),
            "override_mask": np.tile(mask, (n, 1)),
        }
    )
    return out["params"]


@pytest.mark.parametrize("privacy", ["stable", "room", "random"])
def test_same_seed_same_colours_for_every_voice(privacy):
    emb, feats = _random_voices(400, np.random.default_rng(7))
    for seed in ("alice", "a different seed", None):
        params = _decode(emb, feats, seed, privacy)
        look = params[:, LOOK_IDX]
        assert np.all(look == look[0]), f"look varies with the voice for seed {seed!r}"
        assert look[0] == pytest.approx([look_values(seed)[k] for k in LOOK_PARAMS], abs=1e-6)
        # the shape of the face does follow the voice (so the test above is not vacuous)
        assert params[:, PARAM_INDEX["jaw_width"]].std() > 0.05 and params[:, PARAM_INDEX["femininity"]].std() > 0.1


def test_the_decoder_itself_never_reads_colours_from_the_voice():
    """Even with no look override at all, the decoder emits the fixed defaults."""
    emb, feats = _random_voices(300, np.random.default_rng(11))
    look = _decode(emb, feats, None, mask_look=False)[:, LOOK_IDX]
    assert np.all(look == look[0])
    assert look[0] == pytest.approx([look_values(None)[k] for k in LOOK_PARAMS], abs=1e-6)


def test_seeds_spread_over_the_palettes_and_defaults_are_documented():
    looks = [look_values(f"seed-{i}") for i in range(300)]
    for k in ("skin_tone", "hair_colour", "eye_colour"):
        cats = {SPECS_BY_NAME[k].category(v[k]) for v in looks}
        assert cats == set(SPECS_BY_NAME[k].categories), k  # every colour is reachable
    share = np.mean([v["freckles"] > 0.7 for v in looks])
    assert 0.05 < share < 0.3
    assert look_values("alice") == look_values("alice") != look_values("bob")
    d = look_values(None)
    assert {k: SPECS_BY_NAME[k].category(d[k]) for k in ("skin_tone", "hair_colour", "eye_colour")} == {
        k: v for k, v in DEFAULT_LOOK.items() if k != "freckles"
    }
    with pytest.raises(ValueError, match="at most"):
        check_seed("x" * 1000)
    with pytest.raises(ValueError, match="string"):
        check_seed(42)


def test_pipeline_look_is_the_seed_for_synthetic_voices_and_a_choice_wins(voice_corpus):
    engine = AvatarEngine("onnx")
    clips = [paths[0] for paths in voice_corpus.values()][:12]
    from engines.audio import decode_audio

    looks = set()
    for path in clips:
        pcm = decode_audio(path).pcm
        u = engine.analyze(pcm, seed="my look")
        looks.add(tuple(u.params.vector[LOOK_IDX].tolist()))
        chosen = engine.analyze(pcm, seed="my look", overrides={"skin_tone": "deep"})
        assert chosen.params.category("skin_tone") == "deep"
        assert chosen.params["hair_colour"] == u.params["hair_colour"]
    assert len(looks) == 1
    # the neutral face before any speech already wears the seed's colours (no change mid-call)
    pipe = engine.pipeline(seed="my look")
    assert tuple(pipe.current.params.vector[LOOK_IDX].tolist()) in looks
