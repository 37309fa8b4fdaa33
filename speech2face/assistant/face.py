"""Where an assistant's face comes from when it is not heard: face JSON or a look seed.

An assistant keeps one face in every session, from its first frame, so it can be given up
front: the output of ``speech2face analyze --json`` (the whole line or its ``face`` part),
a ``{name: value}`` mapping of face params, or a look seed — any text the owner keeps — that
always draws the same face. A seeded face is drawn from a sha256-seeded generator: the
identity params (hair style and colour, skin tone, eye colour, glasses, background, shirt)
uniformly, gender presentation across its range, age among adults, and the other shape
params near the neutral face; nothing in it depends on a voice.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from engines.face import PARAM_INDEX, PARAM_NAMES, PARAM_SPECS, FaceParams, Source
from engines.look import look_values

MAX_SEED_CHARS = 256
SHAPE_JITTER = 0.15


def face_params(face: FaceParams | Mapping[str, Any]) -> FaceParams:
    """FaceParams from any of the shapes face JSON comes in; ValueError says what is wrong.

    Accepted: an ``analyze --json`` object (``{"face": {...}, ...}``), its ``face`` part
    (``{"params": {...}}`` or ``{"vector": [...]}``), or ``{name: value}``. Params left out
    keep their neutral value; unknown names and values outside [0, 1] are errors.
    """
    if isinstance(face, FaceParams):
        return face
    if not isinstance(face, Mapping):
        raise ValueError("face must be an object: analyze --json output, its face part, or {param: value}")
    if "face" in face and isinstance(face["face"], Mapping):
        face = face["face"]
    if "params" in face:
        face = face["params"]
        if not isinstance(face, Mapping):
            raise ValueError('face "params" must be an object {param: value}')
    elif "vector" in face:
        vec = face["vector"]
        if not isinstance(vec, list) or len(vec) != len(PARAM_NAMES):
            raise ValueError(f'face "vector" must be a list of {len(PARAM_NAMES)} numbers')
        face = dict(zip(PARAM_NAMES, vec))
    unknown = sorted(k for k in face if k not in PARAM_INDEX)
    if unknown:
        raise ValueError(f"unknown face params: {unknown[:5]}; see engines/face.py PARAM_SPECS")
    v = FaceParams.neutral().vector.copy()
    for name, value in face.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"face param {name!r} must be a number in [0, 1], got {value!r}")
        v[PARAM_INDEX[name]] = float(value)
    return FaceParams(v)


def face_from_seed(seed: str) -> FaceParams:
    """The one face a look seed stands for (same seed, same face, on every machine)."""
    if not isinstance(seed, str) or not 0 < len(seed) <= MAX_SEED_CHARS:
        raise ValueError(f"seed must be a string of 1..{MAX_SEED_CHARS} characters")
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(b"speech2face-look\0" + seed.encode()).digest()[:8], "little"))
    v = FaceParams.neutral().vector.astype(np.float64)
    draws = rng.uniform(0.0, 1.0, len(PARAM_SPECS))  # one draw per param, in a fixed order
    for i, spec in enumerate(PARAM_SPECS):
        if spec.source == Source.IDENTITY:
            v[i] = draws[i]
        elif spec.source == Source.SHAPE:
            v[i] = np.clip(v[i] + (draws[i] * 2 - 1) * SHAPE_JITTER, 0.0, 1.0)

    def put(name: str, value: float) -> None:
        v[PARAM_INDEX[name]] = value

    fem = 0.1 + 0.8 * draws[PARAM_INDEX["femininity"]]
    put("femininity", fem)
    put("age", 0.25 + 0.3 * draws[PARAM_INDEX["age"]])
    put("size", 0.3 + 0.4 * draws[PARAM_INDEX["size"]])
    put("hair_length", 0.05 + 0.9 * draws[PARAM_INDEX["hair_length"]])
    put("eyelashes", fem)
    put(
        "facial_hair",
        0.5 + 0.4 * draws[PARAM_INDEX["facial_hair"]] if fem < 0.35 and draws[PARAM_INDEX["greying"]] < 0.5 else 0.0,
    )
    put("greying", 0.0)
    put("baldness", 0.0)
    put("age_lines", 0.05)
    for name, value in look_values(seed).items():  # the same colours a caller with this seed wears
        put(name, value)
    return FaceParams(v.astype(np.float32))
