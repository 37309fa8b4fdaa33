"""The fitted trait constants and the decoder's use of them (the child pitch boundary); eval folds."""

from __future__ import annotations

import numpy as np
import torch

from engines.decoder import AGE_BANDS, FEATURE_INDEX, FaceDecoder
from engines.face import N_PARAMS
from engines.identity import identity_basis
from engines.profile import N_FEATURES, hz_to_st
from engines.traits import CHILD_F0_MARGIN_ST, TraitConstants, fit_child_f0, load_traits
from speech2face.evaluate import ClipResult, folds


def _decode(f0_hz: list[float], vtl_cm: float = 15.5, traits: TraitConstants | None = None, embedding=None):
    n = len(f0_hz)
    feats = np.zeros((n, N_FEATURES), np.float32)
    feats[:, FEATURE_INDEX["f0_median_st"]] = hz_to_st(np.array(f0_hz))
    feats[:, FEATURE_INDEX["vtl_cm"]] = vtl_cm
    feats[:, FEATURE_INDEX["hnr_db"]] = 12.0
    feats[:, FEATURE_INDEX["perturbation"]] = 0.01
    feats[:, FEATURE_INDEX["voiced_s"]] = 8.0
    feats[:, FEATURE_INDEX["speech_s"]] = 12.0
    ident = identity_basis()
    emb = embedding if embedding is not None else np.tile(ident.center, (n, 1))
    with torch.no_grad():
        params, p_female, age_probs, _ = FaceDecoder(traits or load_traits())(
            torch.as_tensor(emb, dtype=torch.float32),
            torch.as_tensor(feats),
            torch.as_tensor(ident.basis),
            torch.as_tensor(ident.center),
            torch.as_tensor(ident.code_scale),
            torch.zeros(n, N_PARAMS),
            torch.zeros(n, N_PARAMS),
        )
    return params.numpy(), p_female.numpy(), age_probs.numpy()


def test_child_boundary_is_fitted_above_every_adult():
    adults = hz_to_st(np.array([110.0, 205.0, 258.0]))
    assert fit_child_f0(adults) == float(adults.max()) + CHILD_F0_MARGIN_ST


def test_pitch_far_above_every_adult_gives_a_child_with_a_neutral_presentation():
    boundary_hz = 260.0
    traits = TraitConstants(w_f0=3.0, child_f0_st=float(hz_to_st(boundary_hz)))
    _, p_female, age = _decode([210.0, 250.0, 330.0], traits=traits)
    bands = [AGE_BANDS[i] for i in age.argmax(1)]
    assert bands == ["adult", "adult", "child"]
    assert abs(p_female[2] - 0.5) < 0.15 < abs(p_female[0] - 0.5)  # the child is pulled to neutral, the woman is not
    # the shipped boundary sits above every trusted adult of the calibration data
    assert 255.0 < 50.0 * 2 ** (load_traits().child_f0_st / 12) < 320.0


def test_folds_never_split_a_speaker():
    def clip(speaker: str, source: str) -> ClipResult:
        return ClipResult(f"{speaker}-{source}.wav", speaker, source, None, None)

    results = [clip("a", "pkg1"), clip("a", "pkg2"), clip("b", "pkg3"), clip("c", "pkg2")]
    f = folds(results)
    assert f[0] == f[1] == f[3] != f[2]
