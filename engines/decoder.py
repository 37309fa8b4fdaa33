"""Face decoder: (speaker embedding, voice profile, user overrides) → FaceParams + beliefs.

Written as one small torch module so the same graph runs under torch, ONNX Runtime and
TensorRT. Two parts, kept apart on purpose:

1. Traits — what voice really predicts, each soft and each with its source:
   * Gender presentation from the *lower quartile* of F0 (p25), a logistic around 165 Hz.
     Adult speaking F0 is about 120 Hz for men and 210 Hz for women (Titze 1994, *Principles
     of Voice Production*; Hillenbrand et al. 1995, JASA 97:3099 measured 131/220 Hz on
     vowels). Loud or acted speech raises F0 (Lombard effect: Summers et al. 1988, JASA
     84:917), and it raises the peaks far more than the floor, so the p25 is the robust cue.
     The midpoint (165 Hz) and slope were calibrated on the real-speech dev set (2 numbers;
     see README "Real speech"); the slope is deliberately shallow (0.55 per semitone) so
     voices near the boundary stay near 0.5, and the logit is shrunk by the amount of voiced
     speech heard (n/(n+1.5 s)), so the first second never yields a confident guess.
   * Age band: children have F0 near 250–300 Hz *and* short vocal tracts (Lee, Potamianos &
     Narayanan 1999, JASA 105:1455). Formant-based tract length proved too noisy on real
     recordings (dev set), so a child needs a high F0 floor (p25 above ~250 Hz) and a steady
     pitch; children get a neutral gender presentation. Seniors: perturbation (jitter) rises
     and HNR falls with age (Ferrand 2002, J Voice 16:480); a weak cue, so the senior
     posterior stays near its prior unless both agree.
   * Size from apparent vocal-tract length, shrunk hard toward the mean (noisy cue).
2. Identity — a fixed seeded projection of the centred embedding onto the remaining params,
   so the same voice gets the same face and different voices differ. The projection basis is
   an input: the ``room`` privacy mode passes a salted basis, ``random`` a random code.

Skin tone is never inferred: it is an identity channel (or the user's choice).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .face import N_PARAMS, PARAM_INDEX, FaceParams
from .profile import FEATURE_NAMES, ST_REF

FEATURE_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
N_CODES = 32  # identity channels taken from the embedding
AGE_BANDS = ("child", "adult", "senior")

# --- calibrated constants (see module docstring; README "Real speech" has the figures) ---
GENDER_MID_HZ = 165.0
GENDER_F0_MAX_LOGIT = 2.2  # F0 alone never says more than ~90 %
GENDER_F0_WIDTH_ST = 4.0  # semitones over which the F0 evidence saturates
GENDER_TIMBRE_WEIGHT = 0.6  # logit per spread of the embedding's synthetic gender direction
EVIDENCE_HALF_S = 1.5  # voiced seconds at which the evidence weight is one half
CHILD_MID_HZ = 250.0
CHILD_SLOPE_PER_ST = 1.2
SENIOR_PRIOR_LOGIT = -2.2  # ≈ 10 %
IDENTITY_FROM_S = 1.0  # speech seconds before identity details start to show
IDENTITY_FULL_S = 4.0  # ... and when they are all shown
NEUTRAL = dict(zip(PARAM_INDEX, FaceParams.neutral().vector.tolist()))  # exact, not rounded
CHILD_PRIOR_LOGIT = -1.5  # the F0 cue enters on top of this


def _st(hz: float) -> float:
    return float(12.0 * np.log2(hz / ST_REF))


class FaceDecoder(nn.Module):
    """All inputs batched: embedding (B,256), features (B,F), basis (256,K), center (256),
    code_scale (K), override_values (B,N), override_mask (B,N) (1 where the user chose)."""

    gender_direction: torch.Tensor  # buffers, registered in __init__
    gender_mid: torch.Tensor
    gender_spread: torch.Tensor

    def __init__(self, gender_direction: np.ndarray, gender_mid: float, gender_spread: float) -> None:
        super().__init__()
        self.register_buffer("gender_direction", torch.as_tensor(gender_direction, dtype=torch.float32))
        self.register_buffer("gender_mid", torch.tensor(float(gender_mid)))
        self.register_buffer("gender_spread", torch.tensor(float(gender_spread)))

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
        f0_p25 = f[:, FEATURE_INDEX["f0_p25_st"]]
        spread = f[:, FEATURE_INDEX["f0_spread_st"]]
        vtl = f[:, FEATURE_INDEX["vtl_cm"]]
        hnr = f[:, FEATURE_INDEX["hnr_db"]]
        perturb = f[:, FEATURE_INDEX["perturbation"]]
        voiced = f[:, FEATURE_INDEX["voiced_s"]]

        evidence = voiced / (voiced + EVIDENCE_HALF_S)
        # unstable pitch (wide p10–p90 spread) in the first seconds → less trust
        steadiness = 1.0 / (1.0 + torch.relu(spread - 14.0) / 10.0)
        trust = evidence * steadiness

        # gender presentation: F0 floor (saturating: an extreme F0 is not "more female", it is
        # more likely a child or a shout) plus a small timbre term from the embedding
        f0_term = GENDER_F0_MAX_LOGIT * torch.tanh((f0_p25 - _st(GENDER_MID_HZ)) / GENDER_F0_WIDTH_ST) * trust
        timbre = torch.clamp((embedding @ self.gender_direction - self.gender_mid) / self.gender_spread, -2.5, 2.5)
        gender_logit = f0_term + GENDER_TIMBRE_WEIGHT * timbre * evidence

        # age band (softmax over child / adult / senior logits)
        child_logit = CHILD_PRIOR_LOGIT + trust * CHILD_SLOPE_PER_ST * (f0_p25 - _st(CHILD_MID_HZ))
        senior_logit = SENIOR_PRIOR_LOGIT + trust * (
            torch.clamp((perturb - 0.018) / 0.006, -1.5, 2.0) + torch.clamp((9.0 - hnr) / 4.0, -1.0, 1.0)
        )
        age_logits = torch.stack([child_logit, torch.zeros_like(child_logit), senior_logit], dim=1)
        age_probs = torch.softmax(age_logits, dim=1)
        p_child, p_senior = age_probs[:, 0], age_probs[:, 2]
        # a child's voice is an age band, not a gender: the posterior is pulled to 0.5
        p_female = 0.5 + (torch.sigmoid(gender_logit) - 0.5) * (1.0 - p_child)

        # identity codes: centred embedding on a fixed basis, scaled to ~N(0,1), squashed to (0,1)
        codes = torch.sigmoid(1.7 * ((embedding - center) @ basis) / code_scale)
        # traits first, then identity: the identity offsets fade in between 1 and 4 s of
        # speech (a 1 s embedding is mostly noise), and the categorical identity channels
        # (hair style and colour, skin tone, eye colour) keep the neutral face's choice until
        # then and change once, rather than walking through buckets while the user watches
        speech = f[:, FEATURE_INDEX["speech_s"]]
        reveal = torch.clamp((speech - IDENTITY_FROM_S) / (IDENTITY_FULL_S - IDENTITY_FROM_S), 0.0, 1.0)
        j = (codes - 0.5) * reveal[:, None]
        shown = 0.5 + j
        revealed = reveal >= 1.0

        def categorical(name: str, k: int) -> torch.Tensor:
            return torch.where(revealed, codes[:, k], torch.full_like(reveal, NEUTRAL[name]))

        # --- traits, with overrides applied before anything derives from them ---
        def pick(name: str, value: torch.Tensor) -> torch.Tensor:
            i = PARAM_INDEX[name]
            m = override_mask[:, i]
            return m * override_values[:, i] + (1.0 - m) * value

        femininity = pick("femininity", p_female)
        age = pick("age", 0.04 * p_child + 0.32 * (1.0 - p_child - p_senior) + 0.85 * p_senior + 0.06 * j[:, 0])
        vtl_z = torch.where(vtl > 0, (vtl - 16.0) / 2.0, torch.zeros_like(vtl))
        size = pick("size", 0.5 + 0.12 * torch.tanh(vtl_z) * trust + 0.15 * (0.5 - femininity) - 0.25 * p_child + 0.1 * j[:, 1])

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
            "head_width": c(0.45 + 0.12 * masc + 0.12 * child + 0.08 * (size - 0.5) + 0.3 * j[:, 2]),
            "face_length": c(0.55 + 0.1 * masc * adult - 0.25 * child + 0.3 * j[:, 3]),
            "jaw_width": c(0.3 + 0.45 * masc * adult + 0.1 * (size - 0.5) + 0.25 * j[:, 4]),
            "chin_shape": c(0.25 + 0.45 * masc * adult + 0.3 * j[:, 5]),
            "cheek_fullness": c(0.35 + 0.4 * child + 0.15 * (size - 0.5) + 0.3 * j[:, 6]),
            "nose_width": c(0.4 + 0.2 * masc * adult - 0.15 * child + 0.35 * j[:, 7]),
            "nose_length": c(0.5 + 0.15 * masc * adult - 0.3 * child + 0.1 * old + 0.3 * j[:, 8]),
            "lip_fullness": c(0.35 + 0.3 * femininity - 0.1 * old + 0.35 * j[:, 9]),
            "mouth_width": c(0.5 + 0.1 * masc - 0.1 * child + 0.3 * j[:, 10]),
            "eye_size": c(0.42 + 0.35 * child + 0.1 * femininity - 0.08 * old + 0.25 * j[:, 11]),
            "eye_spacing": c(0.5 + 0.35 * j[:, 12]),
            "eye_tilt": c(0.5 + 0.08 * femininity - 0.1 * old + 0.35 * j[:, 13]),
            "eye_shape": c(0.45 + 0.2 * femininity * adult - 0.25 * child + 0.4 * j[:, 14]),
            "brow_thickness": c(0.3 + 0.45 * masc * adult + 0.3 * j[:, 15]),
            "brow_arch": c(0.3 + 0.45 * femininity + 0.3 * j[:, 16]),
            "ear_size": c(0.45 + 0.2 * old - 0.1 * child + 0.3 * j[:, 17]),
            "neck_width": c(0.3 + 0.4 * masc * adult + 0.2 * (size - 0.5) - 0.2 * child + 0.2 * j[:, 18]),
            "eyelashes": c(1.6 * (femininity - 0.45)),
            "age_lines": c(2.0 * (age - 0.5) + 0.15 * j[:, 19]),
            "greying": c(2.2 * (age - 0.55) + 0.4 * j[:, 20]),
            "baldness": c(masc * adult * (2.0 * (age - 0.45) + 0.8 * j[:, 21])),
            "hair_length": c(0.12 + 0.75 * femininity * (1 - 0.5 * child) + 0.25 * child + 0.5 * j[:, 22]),
            "facial_hair": c(masc * masc * adult * (0.35 + 1.2 * j[:, 23]) * (1.0 - child)),
            "hair_style": categorical("hair_style", 24),
            "hair_colour": categorical("hair_colour", 25),
            "hair_volume": shown[:, 26],
            "facial_hair_style": categorical("facial_hair_style", 27),
            "skin_tone": categorical("skin_tone", 28),
            "eye_colour": categorical("eye_colour", 29),
            "glasses": c(0.2 + 0.9 * j[:, 30] + 0.25 * old),
            "background_hue": NEUTRAL["background_hue"] + (codes[:, 31] - NEUTRAL["background_hue"]) * reveal,
            "shirt_hue": NEUTRAL["shirt_hue"] + (0.5 * (codes[:, 0] + codes[:, 5]) - NEUTRAL["shirt_hue"]) * reveal,
            "freckles": codes[:, 3] * (1.0 - old) * reveal,
            "identity_jitter": shown[:, 7],
        }
        params = torch.stack([out[name] for name in PARAM_INDEX], dim=1)
        params = override_mask * override_values + (1.0 - override_mask) * params

        gender_certainty = torch.abs(2.0 * p_female - 1.0) * (1.0 - p_child)
        decisiveness = torch.maximum(gender_certainty, p_child)
        confidence = evidence * (0.25 + 0.75 * decisiveness)
        return params, p_female, age_probs, confidence


assert N_PARAMS == len(PARAM_INDEX)
