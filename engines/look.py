"""The look: the colours that read as ethnicity, which the voice must never decide.

GE2E embeddings cluster by language and accent, so any function of the embedding — even a
"random" projection of it — turns colours into an ethnicity guess. Skin tone, hair colour,
eye colour and freckles therefore come from, in order:

1. the user's explicit choice (an override such as ``skin_tone="tan"``);
2. a *look seed* the user owns (``--seed TEXT``, ``seed`` on the REST/offer APIs, a random
   value the browser keeps in localStorage): a hash of the seed picks each colour, so the
   same seed gives the same colours for every voice, and "new look" is just a new seed;
3. fixed documented defaults (:data:`DEFAULT_LOOK`: beige skin, brown hair, brown eyes, no
   freckles) — the neutral face's colours.

The look enters the decoder as an override, so it holds from the very first (neutral) frame
and never changes while a person talks.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .face import PARAM_INDEX, SPECS_BY_NAME

#: The parameters the look owns; the decoder never derives them from the voice.
LOOK_PARAMS = ("skin_tone", "hair_colour", "eye_colour", "freckles")
#: Without a seed or a choice: the neutral face's colours.
DEFAULT_LOOK: dict[str, str | float] = {"skin_tone": "beige", "hair_colour": "brown", "eye_colour": "brown", "freckles": 0.0}
FRECKLE_SHARE = 0.15  # share of seeds that draw freckles
MAX_SEED_CHARS = 200


def check_seed(seed: object) -> str | None:
    """A seed as given by a user: None/"" mean no seed; raises ValueError for anything else odd."""
    if seed is None or seed == "":
        return None
    if not isinstance(seed, str):
        raise ValueError("seed must be a string")
    if len(seed) > MAX_SEED_CHARS:
        raise ValueError(f"seed must be at most {MAX_SEED_CHARS} characters")
    return seed


def look_values(seed: str | None) -> dict[str, float]:
    """{param: value} for every LOOK_PARAMS entry: the seed's colours, or the defaults."""
    if seed is None:
        return {k: _value(k, v) for k, v in DEFAULT_LOOK.items()}
    digest = hashlib.sha256(b"speech2face-look\0" + seed.encode("utf-8")).digest()
    u = [int.from_bytes(digest[4 * i : 4 * i + 4], "little") / 2**32 for i in range(len(LOOK_PARAMS) + 1)]
    out = {}
    for k, x in zip(LOOK_PARAMS[:3], u):
        cats = SPECS_BY_NAME[k].categories
        out[k] = _value(k, cats[min(len(cats) - 1, int(x * len(cats)))])
    out["freckles"] = 0.75 + 0.25 * u[4] if u[3] < FRECKLE_SHARE else 0.0
    return out


def _value(name: str, v: str | float) -> float:
    return SPECS_BY_NAME[name].value_of(v) if isinstance(v, str) else float(v)


def apply_look(values: np.ndarray, mask: np.ndarray, seed: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Fill every look parameter the user did not choose (mask 0) from the seed or defaults."""
    values, mask = values.copy(), mask.copy()
    for name, v in look_values(seed).items():
        i = PARAM_INDEX[name]
        if mask[i] == 0.0:
            values[i], mask[i] = v, 1.0
    return values, mask
