"""The face vocabulary shared by the decoder, the renderer and the server.

Every parameter is a float in [0, 1] so that the decoder (a torch module exported to
ONNX/TensorRT) can emit one flat vector, the renderer can interpolate two faces by a
plain lerp, and the JSON contract stays a flat ``{name: value}`` map. Categorical
parameters (hair style, colours, ...) are a float whose bucket ``floor(v * n)`` picks the
category, so they still lerp (they snap at the bucket edge).

Where a value comes from is part of the contract:
- ``TRAIT``: predicted from the voice (gender presentation, age, body size).
- ``SHAPE``: a soft function of the traits plus a small identity offset.
- ``IDENTITY``: a seeded projection of the speaker embedding (or a salt/random draw in the
  ``room``/``random`` privacy modes); these carry "who", never a demographic inference.
Skin tone is IDENTITY or a user override: it is never inferred from voice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping

import numpy as np


class Source(str, Enum):
    TRAIT = "trait"
    SHAPE = "shape"
    IDENTITY = "identity"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    source: Source
    doc: str
    categories: tuple[str, ...] = ()

    def category(self, value: float) -> str:
        """The bucket a categorical value falls in (``floor(v * n)``, clamped)."""
        if not self.categories:
            raise ValueError(f"{self.name} is not categorical")
        n = len(self.categories)
        return self.categories[min(n - 1, max(0, int(value * n)))]

    def value_of(self, category: str) -> float:
        """The bucket centre for a category name (used by user overrides)."""
        n = len(self.categories)
        return (self.categories.index(category) + 0.5) / n


#: ordered by texture (straight, wavy, curly, coily) so the renderer's nearest-allowed-style
#: fallback for a hair length keeps an identity's texture; receding/bald follow baldness
HAIR_STYLES = (
    "buzz",
    "crew",
    "side_part",
    "quiff",
    "undercut",
    "bob",
    "long_straight",
    "ponytail",
    "bun",
    "long_wavy",
    "wavy_short",
    "curly_short",
    "long_curly",
    "afro",
    "coily_short",
    "braids",
    "receding",
    "bald",
)
HAIR_COLOURS = ("black", "dark_brown", "brown", "auburn", "light_brown", "blond", "ginger")
SKIN_TONES = ("porcelain", "light", "beige", "tan", "brown", "deep")
EYE_COLOURS = ("brown", "dark_brown", "hazel", "green", "blue", "grey")
FACIAL_HAIR_STYLES = ("stubble", "moustache", "goatee", "circle", "chinstrap", "short_beard", "full_beard")

PARAM_SPECS: tuple[ParamSpec, ...] = (
    # --- traits (from the voice) ---
    ParamSpec(
        "femininity",
        Source.TRAIT,
        "gender presentation: 0 masculine, 0.5 androgynous, 1 feminine;"
        " the calibrated p_female shrunk toward 0.5 by the decoder's uncertainty",
    ),
    ParamSpec(
        "age", Source.TRAIT, "apparent age: 0 child (~6 y), 0.3 young adult (~25 y), 0.55 middle age (~45 y), 1 senior (~80 y)"
    ),
    ParamSpec("size", Source.TRAIT, "body/head size from apparent vocal-tract length: 0 small, 1 large"),
    # --- shape (traits + small identity offset) ---
    ParamSpec("head_width", Source.SHAPE, "cranium width relative to height"),
    ParamSpec("face_length", Source.SHAPE, "forehead-to-chin length"),
    ParamSpec("jaw_width", Source.SHAPE, "width of the jaw at the gonial angle (wider when masculine)"),
    ParamSpec("chin_shape", Source.SHAPE, "0 pointed/round chin, 1 square chin"),
    ParamSpec("cheek_fullness", Source.SHAPE, "round cheeks (children, larger size)"),
    ParamSpec("nose_width", Source.SHAPE, "alar width"),
    ParamSpec("nose_length", Source.SHAPE, "nose length (shorter in children)"),
    ParamSpec("lip_fullness", Source.SHAPE, "lip thickness"),
    ParamSpec("mouth_width", Source.SHAPE, "mouth width"),
    ParamSpec("eye_size", Source.SHAPE, "eye size (larger in children)"),
    ParamSpec("eye_spacing", Source.SHAPE, "inter-ocular distance"),
    ParamSpec("eye_tilt", Source.SHAPE, "canthal tilt: 0 down, 0.5 level, 1 up"),
    ParamSpec("eye_shape", Source.SHAPE, "0 round, 1 almond"),
    ParamSpec("brow_thickness", Source.SHAPE, "eyebrow thickness (thicker when masculine)"),
    ParamSpec("brow_arch", Source.SHAPE, "eyebrow arch height (higher when feminine)"),
    ParamSpec("ear_size", Source.SHAPE, "ear size (grows with age)"),
    ParamSpec("neck_width", Source.SHAPE, "neck and shoulder breadth"),
    ParamSpec("eyelashes", Source.SHAPE, "visible eyelash strokes (feminine presentation)"),
    ParamSpec("age_lines", Source.SHAPE, "forehead/smile lines, crow's feet"),
    ParamSpec("greying", Source.SHAPE, "fraction of grey in hair and beard"),
    ParamSpec("baldness", Source.SHAPE, "receding hairline / crown loss (older masculine)"),
    ParamSpec("hair_length", Source.SHAPE, "0 cropped, 1 long; gates which hair styles are drawn"),
    ParamSpec("facial_hair", Source.SHAPE, "amount of facial hair (0 none; needs masculine adult)"),
    # --- identity (seeded projection of the embedding; never a demographic inference) ---
    ParamSpec(
        "hair_style", Source.IDENTITY, "hair style bucket (the renderer keeps it within what hair_length allows)", HAIR_STYLES
    ),
    ParamSpec("hair_colour", Source.IDENTITY, "hair colour bucket", HAIR_COLOURS),
    ParamSpec("hair_volume", Source.IDENTITY, "how much the hair stands off the head"),
    ParamSpec("facial_hair_style", Source.IDENTITY, "facial hair style bucket", FACIAL_HAIR_STYLES),
    ParamSpec(
        "skin_tone",
        Source.IDENTITY,
        "skin tone bucket: identity projection or user choice, never inferred from voice",
        SKIN_TONES,
    ),
    ParamSpec("eye_colour", Source.IDENTITY, "iris colour bucket", EYE_COLOURS),
    ParamSpec("glasses", Source.IDENTITY, "> 0.5 draws glasses; the value picks the frame shape"),
    ParamSpec("background_hue", Source.IDENTITY, "background colour hue"),
    ParamSpec("shirt_hue", Source.IDENTITY, "shirt colour hue"),
    ParamSpec("freckles", Source.IDENTITY, "> 0.7 draws freckles"),
    ParamSpec("identity_jitter", Source.IDENTITY, "spare identity channel the renderer may use for small asymmetries"),
)

PARAM_NAMES: tuple[str, ...] = tuple(s.name for s in PARAM_SPECS)
PARAM_INDEX: dict[str, int] = {n: i for i, n in enumerate(PARAM_NAMES)}
SPECS_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in PARAM_SPECS}
N_PARAMS = len(PARAM_SPECS)


@dataclass(frozen=True)
class FaceParams:
    """An immutable face: a float32 vector in PARAM_NAMES order, values in [0, 1]."""

    vector: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        v = np.asarray(self.vector, dtype=np.float32).reshape(-1)
        if v.shape != (N_PARAMS,):
            raise ValueError(f"FaceParams needs {N_PARAMS} values, got {v.shape[0]}")
        v = np.clip(v, 0.0, 1.0)
        v.setflags(write=False)
        object.__setattr__(self, "vector", v)

    def __getitem__(self, name: str) -> float:
        return float(self.vector[PARAM_INDEX[name]])

    def __getattr__(self, name: str) -> float:
        if name in PARAM_INDEX:
            return float(self.vector[PARAM_INDEX[name]])
        raise AttributeError(name)

    def category(self, name: str) -> str:
        return SPECS_BY_NAME[name].category(self[name])

    def as_dict(self) -> dict[str, float]:
        return {n: round(float(x), 6) for n, x in zip(PARAM_NAMES, self.vector)}

    def replace(self, **values: float) -> "FaceParams":
        v = self.vector.copy()
        for k, x in values.items():
            v[PARAM_INDEX[k]] = x
        return FaceParams(v)

    def lerp(self, other: "FaceParams", t: float) -> "FaceParams":
        """Straight-line morph; categorical buckets switch at the bucket edge."""
        t = float(np.clip(t, 0.0, 1.0))
        return FaceParams(self.vector * (1.0 - t) + other.vector * t)

    @classmethod
    def neutral(cls) -> "FaceParams":
        """The face shown before any speech: androgynous adult, mid values, neutral colours."""
        v = np.full(N_PARAMS, 0.5, dtype=np.float32)
        neutral = {
            "age": 0.32,
            "facial_hair": 0.0,
            "age_lines": 0.05,
            "greying": 0.0,
            "baldness": 0.0,
            "eyelashes": 0.5,
            "hair_length": 0.45,
            "glasses": 0.2,
            "freckles": 0.0,
            "hair_style": SPECS_BY_NAME["hair_style"].value_of("side_part"),
            "hair_colour": SPECS_BY_NAME["hair_colour"].value_of("brown"),
            "skin_tone": SPECS_BY_NAME["skin_tone"].value_of("beige"),
            "eye_colour": SPECS_BY_NAME["eye_colour"].value_of("brown"),
            "background_hue": 0.58,
            "shirt_hue": 0.6,
        }
        for k, x in neutral.items():
            v[PARAM_INDEX[k]] = x
        return cls(v)

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> "FaceParams":
        missing = set(PARAM_NAMES) - set(values)
        if missing:
            raise ValueError(f"missing face params: {sorted(missing)}")
        return cls(np.array([values[n] for n in PARAM_NAMES], dtype=np.float32))
