"""Face decoder: (speaker embedding, voice profile, user overrides) → FaceParams + beliefs.

Written as one small torch module so the same graph runs under torch, ONNX Runtime and
TensorRT. Two parts, kept apart on purpose:

1. Traits — what voice really predicts, each soft and each with its source:
   * Gender presentation: a logistic over two cues, each saturating so no single cue can be
     extreme — the *median* F0 (adult speaking F0 is about 120 Hz for men and 210 Hz for
     women: Titze 1994; Hillenbrand et al. 1995, JASA 97:3099; the 165 Hz centre and 4 st
     width are those literature values, not fitted) and a linear probe of the GE2E embedding
     trained on real labelled speech (a shrunk LDA direction). The three weights (F0, probe,
     bias) are a logistic regression on real speech, i.e. Platt-calibrated; all of it is
     scaled by the voiced speech heard (n/(n+1.5 s)), so the first second never gives a
     confident guess. Fitted by ``scripts/calibrate.py`` → ``traits.npz`` (see
     :mod:`engines.traits`); ``speech2face eval`` refits them inside every held-out fold.
   * Age band: a child's voice has a high F0 *and* a short vocal tract (high formants): Lee,
     Potamianos & Narayanan 1999, JASA 105:1455 (F0 ≈ 250–300 Hz, formants 20–30 % above
     adults'). Either cue alone is usually an adult woman, so the child logit needs both (a
     soft AND: the smaller of the two cue margins) — or a median F0 so far above every
     trusted adult's in the calibration data (the margin counts from
     ``TraitConstants.child_f0_st``, half a semitone above the highest; fitted on adults only
     and refitted per fold by ``eval``) that pitch alone says child; the formant estimate is
     often adult-like on real child recordings (dev set). Children get a neutral gender
     presentation.
     Seniors: perturbation (jitter) rises and HNR falls with age (Ferrand 2002, J Voice
     16:480); a weak cue, so the senior posterior stays near its prior unless both agree.
   * Size from apparent vocal-tract length, shrunk hard toward the mean (noisy cue).
2. Identity — the centred embedding on a fixed basis (the principal axes of real speakers'
   mean embeddings, which carry the most speaker information per channel) drives *shape*
   offsets, hair style, glasses and background, so the same voice gets the same face and different voices differ.
   The basis is an input: the ``room`` privacy mode passes a salted rotation of it, ``random``
   a random one.

Colours that read as ethnicity (skin tone, hair colour, eye colour, freckles) are never
computed here: they arrive as overrides from the user's choice or look seed (engines/look.py),
and without either the decoder emits the neutral face's fixed defaults.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .face import N_PARAMS, PARAM_INDEX, FaceParams
from .profile import FEATURE_NAMES, ST_REF
from .traits import TraitConstants

FEATURE_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
N_CODES = 32  # identity channels taken from the embedding
AGE_BANDS = ("child", "adult", "senior")

# --- literature constants (see module docstring) ---
GENDER_MID_HZ = 165.0
GENDER_F0_WIDTH_ST = 4.0  # semitones over which the F0 evidence saturates
PROBE_CLAMP = 3.0  # the probe's standardised score never says more than this
EVIDENCE_HALF_S = 1.5  # voiced seconds at which the evidence weight is one half
CHILD_F0_HZ = 240.0  # a child's median F0 is above this ...
CHILD_VTL_CM = 13.0  # ... and the apparent vocal tract shorter than this (adult women ≈ 14.5)
CHILD_PRIOR_LOGIT = -2.0
CHILD_SLOPE = 1.5  # logit per unit of the smaller cue margin (semitones / cm)
SENIOR_PRIOR_LOGIT = -2.2  # ≈ 10 %
IDENTITY_FROM_S = 1.0  # speech seconds before identity details start to show
IDENTITY_FULL_S = 4.0  # ... and when they are all shown
IDENTITY_GAIN = 2.0  # scales every identity offset on the shape params
CODE_SLOPE = 1.0  # logistic slope per population spread: ±1 spread → 0.27 … 0.73
NEUTRAL = dict(zip(PARAM_INDEX, FaceParams.neutral().vector.tolist()))  # exact, not rounded
#: Which identity channel drives what. Channel 0 is the population's main axis of speaker
#: differences (engines/identity.py). The params that are always shown and move the face most
#: (hair volume, glasses, background, hair length, then the shape offsets) take the first
#: channels; the gated ones (hair and facial-hair style switch once at 4 s, facial hair needs
#: a masculine adult, greying and baldness an older one) take the last, so the strongest "who"
#: axes are never spent on a channel that is often switched off. (Order chosen on the
#: cross-validated retrieval of `speech2face eval`: README "What is fitted on what".)
SLOT = {
    name: k
    for k, name in enumerate(
        [
            "hair_volume",
            "identity_jitter",
            "glasses",
            "background_hue",
            "hair_length",
            "eye_shape",
            "lip_fullness",
            "nose_width",
            "eye_spacing",
            "eye_tilt",
            "head_width",
            "face_length",
            "chin_shape",
            "cheek_fullness",
            "nose_length",
            "mouth_width",
            "brow_thickness",
            "brow_arch",
            "ear_size",
            "jaw_width",
            "eye_size",
            "neck_width",
            "hair_style",
            "facial_hair_style",
            "facial_hair",
            "baldness",
            "greying",
            "age_lines",
            "age",
            "size",
            "shirt_hue",
            "shirt_hue_2",
        ]
    )
}


def _st(hz: float) -> float:
    return float(12.0 * np.log2(hz / ST_REF))


def gender_cues(
    embedding: torch.Tensor, features: torch.Tensor, probe: torch.Tensor, probe_mid: torch.Tensor, probe_spread: torch.Tensor
) -> torch.Tensor:
    """(B, 2) saturating cues [F0, probe] before weighting — shared by the decoder and the fit."""
    f0_med = features[:, FEATURE_INDEX["f0_median_st"]]
    voiced = features[:, FEATURE_INDEX["voiced_s"]]
    f0 = torch.where(voiced > 0, torch.tanh((f0_med - _st(GENDER_MID_HZ)) / GENDER_F0_WIDTH_ST), torch.zeros_like(f0_med))
    pr = torch.clamp((embedding @ probe - probe_mid) / probe_spread, -PROBE_CLAMP, PROBE_CLAMP) / PROBE_CLAMP
    return torch.stack([f0, pr], dim=1)


def evidence_weight(features: torch.Tensor) -> torch.Tensor:
    voiced = features[:, FEATURE_INDEX["voiced_s"]]
    return voiced / (voiced + EVIDENCE_HALF_S)


class FaceDecoder(nn.Module):
    """All inputs batched: embedding (B,256), features (B,F), basis (256,K), center (256),
    code_scale (K), override_values (B,N), override_mask (B,N) (1 where the user chose)."""

    probe: torch.Tensor  # buffers, registered in __init__
    probe_mid: torch.Tensor
    probe_spread: torch.Tensor
    gender_w: torch.Tensor
    gender_bias: torch.Tensor
    child_f0_st: torch.Tensor

    def __init__(self, traits: TraitConstants | None = None) -> None:
        super().__init__()
        t = traits or TraitConstants()
        self.register_buffer("probe", torch.as_tensor(t.probe, dtype=torch.float32))
        self.register_buffer("probe_mid", torch.tensor(float(t.probe_mid)))
        self.register_buffer("probe_spread", torch.tensor(float(t.probe_spread)))
        self.register_buffer("gender_w", torch.tensor([t.w_f0, t.w_probe], dtype=torch.float32))
        self.register_buffer("gender_bias", torch.tensor(float(t.bias)))
        self.register_buffer("child_f0_st", torch.tensor(float(t.child_f0_st)))

    def forward(
        self,
        embedding: torch.Tensor,
        features: torch.Tensor,
        basis: torch.Tensor,
        center: torch.Tensor,
        code_scale: torch.Tensor,
        override_values: torch.Tensor,
        override_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        f = features
        f0_med = f[:, FEATURE_INDEX["f0_median_st"]]
        vtl = f[:, FEATURE_INDEX["vtl_cm"]]
        hnr = f[:, FEATURE_INDEX["hnr_db"]]
        perturb = f[:, FEATURE_INDEX["perturbation"]]

        evidence = evidence_weight(f)
        cues = gender_cues(embedding, f, self.probe, self.probe_mid, self.probe_spread)
        gender_logit = evidence * (cues @ self.gender_w + self.gender_bias)

        # age band (softmax over child / adult / senior logits). Child: a soft AND of a high F0
        # and a short tract; a missing tract estimate (vtl 0) counts as no evidence for either.
        f0_margin = f0_med - _st(CHILD_F0_HZ)
        vtl_margin = torch.where(vtl > 0, CHILD_VTL_CM - vtl, torch.zeros_like(vtl))
        margin = torch.maximum(torch.minimum(f0_margin, 2.0 * vtl_margin), f0_med - self.child_f0_st)
        child_logit = CHILD_PRIOR_LOGIT + evidence * CHILD_SLOPE * torch.where(f0_med > 0, margin, torch.full_like(margin, -5.0))
        senior_logit = SENIOR_PRIOR_LOGIT + evidence * (
            torch.clamp((perturb - 0.018) / 0.006, -1.5, 2.0) + torch.clamp((9.0 - hnr) / 4.0, -1.0, 1.0)
        )
        age_logits = torch.stack([child_logit, torch.zeros_like(child_logit), senior_logit], dim=1)
        age_probs = torch.softmax(age_logits, dim=1)
        p_child, p_senior = age_probs[:, 0], age_probs[:, 2]
        # a child's voice is an age band, not a gender: the posterior is pulled to 0.5
        p_female = 0.5 + (torch.sigmoid(gender_logit) - 0.5) * (1.0 - p_child)

        # identity codes: centred embedding on a fixed basis, scaled to ~N(0,1), squashed to (0,1)
        codes = torch.sigmoid(CODE_SLOPE * ((embedding - center) @ basis) / code_scale)
        # traits first, then identity: the identity offsets fade in between 1 and 4 s of
        # speech (a 1 s embedding is mostly noise), and the categorical identity channels
        # (hair style, facial hair style) keep the neutral face's choice until then and change
        # once, rather than walking through buckets while the user watches
        speech = f[:, FEATURE_INDEX["speech_s"]]
        reveal = torch.clamp((speech - IDENTITY_FROM_S) / (IDENTITY_FULL_S - IDENTITY_FROM_S), 0.0, 1.0)
        j = IDENTITY_GAIN * (codes - 0.5) * reveal[:, None]
        shown = torch.clamp(0.5 + j, 0.0, 1.0)
        revealed = reveal >= 1.0

        def categorical(name: str) -> torch.Tensor:
            return torch.where(revealed, codes[:, SLOT[name]], torch.full_like(reveal, NEUTRAL[name]))

        # --- traits, with overrides applied before anything derives from them ---
        def pick(name: str, value: torch.Tensor) -> torch.Tensor:
            i = PARAM_INDEX[name]
            m = override_mask[:, i]
            return m * override_values[:, i] + (1.0 - m) * value

        femininity = pick("femininity", p_female)
        age = pick("age", 0.04 * p_child + 0.32 * (1.0 - p_child - p_senior) + 0.85 * p_senior + 0.06 * j[:, SLOT["age"]])
        vtl_z = torch.where(vtl > 0, (vtl - 16.0) / 2.0, torch.zeros_like(vtl))
        size = pick(
            "size",
            0.5 + 0.12 * torch.tanh(vtl_z) * evidence + 0.15 * (0.5 - femininity) - 0.25 * p_child + 0.1 * j[:, SLOT["size"]],
        )

        masc = 1.0 - femininity
        child = torch.clamp(1.6 * (0.3 - age) / 0.3, 0.0, 1.0)
        adult = 1.0 - child
        old = torch.clamp((age - 0.45) / 0.5, 0.0, 1.0)

        def c(x: torch.Tensor) -> torch.Tensor:
            return torch.clamp(x, 0.0, 1.0)

        out = {
            "femininity": femininity,
            "age": c(age),
            "size": c(size),
            "head_width": c(0.45 + 0.12 * masc + 0.12 * child + 0.08 * (size - 0.5) + 0.3 * j[:, SLOT["head_width"]]),
            "face_length": c(0.55 + 0.1 * masc * adult - 0.25 * child + 0.3 * j[:, SLOT["face_length"]]),
            "jaw_width": c(0.3 + 0.45 * masc * adult + 0.1 * (size - 0.5) + 0.25 * j[:, SLOT["jaw_width"]]),
            "chin_shape": c(0.25 + 0.45 * masc * adult + 0.3 * j[:, SLOT["chin_shape"]]),
            "cheek_fullness": c(0.35 + 0.4 * child + 0.15 * (size - 0.5) + 0.3 * j[:, SLOT["cheek_fullness"]]),
            "nose_width": c(0.4 + 0.2 * masc * adult - 0.15 * child + 0.35 * j[:, SLOT["nose_width"]]),
            "nose_length": c(0.5 + 0.15 * masc * adult - 0.3 * child + 0.1 * old + 0.3 * j[:, SLOT["nose_length"]]),
            "lip_fullness": c(0.35 + 0.3 * femininity - 0.1 * old + 0.35 * j[:, SLOT["lip_fullness"]]),
            "mouth_width": c(0.5 + 0.1 * masc - 0.1 * child + 0.3 * j[:, SLOT["mouth_width"]]),
            "eye_size": c(0.42 + 0.35 * child + 0.1 * femininity - 0.08 * old + 0.25 * j[:, SLOT["eye_size"]]),
            "eye_spacing": c(0.5 + 0.35 * j[:, SLOT["eye_spacing"]]),
            "eye_tilt": c(0.5 + 0.08 * femininity - 0.1 * old + 0.35 * j[:, SLOT["eye_tilt"]]),
            "eye_shape": c(0.45 + 0.2 * femininity * adult - 0.25 * child + 0.4 * j[:, SLOT["eye_shape"]]),
            "brow_thickness": c(0.3 + 0.45 * masc * adult + 0.3 * j[:, SLOT["brow_thickness"]]),
            "brow_arch": c(0.3 + 0.45 * femininity + 0.3 * j[:, SLOT["brow_arch"]]),
            "ear_size": c(0.45 + 0.2 * old - 0.1 * child + 0.3 * j[:, SLOT["ear_size"]]),
            "neck_width": c(0.3 + 0.4 * masc * adult + 0.2 * (size - 0.5) - 0.2 * child + 0.2 * j[:, SLOT["neck_width"]]),
            "eyelashes": c(1.6 * (femininity - 0.45)),
            "age_lines": c(2.0 * (age - 0.5) + 0.15 * j[:, SLOT["age_lines"]]),
            "greying": c(2.2 * (age - 0.55) + 0.4 * j[:, SLOT["greying"]]),
            "baldness": c(masc * adult * (2.0 * (age - 0.45) + 0.8 * j[:, SLOT["baldness"]])),
            "hair_length": c(0.12 + 0.75 * femininity * (1 - 0.5 * child) + 0.25 * child + 0.5 * j[:, SLOT["hair_length"]]),
            "facial_hair": c(masc * masc * adult * (0.35 + 1.2 * j[:, SLOT["facial_hair"]]) * (1.0 - child)),
            "hair_style": categorical("hair_style"),
            "hair_colour": torch.full_like(reveal, NEUTRAL["hair_colour"]),  # the look's (engines/look.py)
            "hair_volume": shown[:, SLOT["hair_volume"]],
            "facial_hair_style": categorical("facial_hair_style"),
            "skin_tone": torch.full_like(reveal, NEUTRAL["skin_tone"]),  # the look's
            "eye_colour": torch.full_like(reveal, NEUTRAL["eye_colour"]),  # the look's
            "glasses": c(0.2 + 0.9 * j[:, SLOT["glasses"]] + 0.25 * old),
            "background_hue": NEUTRAL["background_hue"] + (codes[:, SLOT["background_hue"]] - NEUTRAL["background_hue"]) * reveal,
            "shirt_hue": NEUTRAL["shirt_hue"]
            + (0.5 * (codes[:, SLOT["shirt_hue"]] + codes[:, SLOT["shirt_hue_2"]]) - NEUTRAL["shirt_hue"]) * reveal,
            "freckles": torch.full_like(reveal, NEUTRAL["freckles"]),  # the look's
            "identity_jitter": shown[:, SLOT["identity_jitter"]],
        }
        params = torch.stack([out[name] for name in PARAM_INDEX], dim=1)
        params = override_mask * override_values + (1.0 - override_mask) * params

        gender_certainty = torch.abs(2.0 * p_female - 1.0) * (1.0 - p_child)
        decisiveness = torch.maximum(gender_certainty, p_child)
        confidence = evidence * (0.25 + 0.75 * decisiveness)
        return params, p_female, age_probs, confidence


assert N_PARAMS == len(PARAM_INDEX)
