"""Identity projection: which fixed directions of the speaker embedding pick hair, colours, glasses…

GE2E embeddings are non-negative and L2-normalised, so every voice shares a large common
component; centring on a population mean and dividing each projected channel by its
population spread turns small speaker differences into full-range parameter changes. The
centre/spread were measured once over the synthetic test voices plus the real-speech dev set
by ``scripts/calibrate.py`` and are shipped as constants (``identity_stats.npz``: 256 + 32
numbers, plus the decoder's timbre direction; no audio, no embedding of any one speaker). Privacy modes only change the basis:

* ``stable`` — the shipped seeded basis: same voice → same face, everywhere.
* ``room``   — a basis derived from a salt (the room name + server secret): stable inside a
  room, unlinkable across rooms.
* ``random`` — a basis from fresh OS randomness: stable during one session only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .choices import PRIVACY_MODES
from .decoder import N_CODES
from .encoder import EMBEDDING_SIZE

STATS_PATH = Path(__file__).with_name("identity_stats.npz")
STABLE_SEED = 20190601  # the Speech2Face paper's CVPR year/month; any fixed value works


@dataclass(frozen=True)
class IdentityBasis:
    basis: np.ndarray  # (256, K) float32, orthonormal columns
    center: np.ndarray  # (256,) float32
    code_scale: np.ndarray  # (K,) float32


def _orthonormal(seed: int | bytes) -> np.ndarray:
    rng = np.random.default_rng(
        int.from_bytes(hashlib.sha256(str(seed).encode() if isinstance(seed, int) else seed).digest()[:8], "little")
    )
    q, _ = np.linalg.qr(rng.standard_normal((EMBEDDING_SIZE, N_CODES)))
    return q.astype(np.float32)


@lru_cache(maxsize=1)
def _stats() -> tuple[np.ndarray, np.ndarray]:
    if STATS_PATH.exists():
        data = np.load(STATS_PATH)
        return data["center"].astype(np.float32), data["code_scale"].astype(np.float32)
    # before calibration: the centre of the positive orthant of the unit sphere, unit spread
    return np.full(EMBEDDING_SIZE, EMBEDDING_SIZE**-0.5, np.float32), np.full(N_CODES, 0.05, np.float32)


def gender_timbre() -> tuple[np.ndarray, float, float]:
    """The synthetic voices' female-minus-male embedding direction, its midpoint and spread."""
    if STATS_PATH.exists():
        d = np.load(STATS_PATH)
        return d["gender_direction"].astype(np.float32), float(d["gender_mid"]), float(d["gender_spread"])
    return np.zeros(EMBEDDING_SIZE, np.float32), 0.0, 1.0  # uncalibrated: the timbre term is off


def identity_basis(privacy: str = "stable", salt: str | None = None) -> IdentityBasis:
    center, scale = _stats()
    if privacy == "stable":
        return IdentityBasis(_orthonormal(STABLE_SEED), center, scale)
    if privacy == "room":
        if not salt:
            raise ValueError("privacy mode 'room' needs a room name")
        basis = _orthonormal(b"speech2face-room\0" + salt.encode())
    elif privacy == "random":
        basis = _orthonormal(os.urandom(32))
    else:
        raise ValueError(f"unknown privacy mode {privacy!r}; choose one of {', '.join(PRIVACY_MODES)}")
    # a fresh basis sees the population spread averaged over directions
    return IdentityBasis(basis, center, np.full(N_CODES, float(np.sqrt(np.mean(scale**2))), np.float32))


def measure_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and per-channel spread of a population of embeddings (used to write STATS_PATH)."""
    center = embeddings.mean(axis=0).astype(np.float32)
    codes = (embeddings - center) @ _orthonormal(STABLE_SEED)
    return center, codes.std(axis=0).astype(np.float32) + 1e-6
