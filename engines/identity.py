"""Identity projection: which fixed directions of the speaker embedding drive shape, hair style, glasses…

GE2E embeddings are non-negative and L2-normalised, so every voice shares a large common
component; centring on a population mean and dividing each projected channel by its
population spread turns small speaker differences into full-range parameter changes.

The basis is the top principal axes of real speakers' *mean* embeddings: a random direction
in 256-d is mostly clip-to-clip noise, while these axes carry the most "who" per channel, so
the same person gets the same face from different clips and different people differ. Centre, basis and
spread are measured by ``scripts/calibrate.py`` on real speech only and shipped as
``identity_stats.npz`` (256 + 256×32 + 32 numbers; no audio, no embedding of any one
speaker). The colours that read as ethnicity never come from here (engines/look.py).

Privacy modes only change the basis:

* ``stable`` — the shipped basis: same voice → same face, everywhere.
* ``room``   — a rotation of it derived from a salt (the room name + server secret): stable
  inside a room, unlinkable across rooms, just as speaker-discriminative.
* ``random`` — a rotation from fresh OS randomness: stable during one session only.
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
    basis: np.ndarray  # (256, K) float32
    center: np.ndarray  # (256,) float32
    code_scale: np.ndarray  # (K,) float32


def _seeded_rng(seed: int | bytes) -> np.random.Generator:
    raw = str(seed).encode() if isinstance(seed, int) else seed
    return np.random.default_rng(int.from_bytes(hashlib.sha256(raw).digest()[:8], "little"))


def _orthonormal(seed: int | bytes, n: int = EMBEDDING_SIZE) -> np.ndarray:
    q, _ = np.linalg.qr(_seeded_rng(seed).standard_normal((n, N_CODES if n == EMBEDDING_SIZE else n)))
    return q.astype(np.float32)


@lru_cache(maxsize=1)
def _stats() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if STATS_PATH.exists():
        data = np.load(STATS_PATH)
        if "basis" in data:
            return data["center"].astype(np.float32), data["basis"].astype(np.float32), data["code_scale"].astype(np.float32)
    # before calibration: the centre of the positive orthant of the unit sphere, a random basis
    return (
        np.full(EMBEDDING_SIZE, EMBEDDING_SIZE**-0.5, np.float32),
        _orthonormal(STABLE_SEED),
        np.full(N_CODES, 0.05, np.float32),
    )


def identity_basis(privacy: str = "stable", salt: str | None = None) -> IdentityBasis:
    center, basis, scale = _stats()
    if privacy == "stable":
        return IdentityBasis(basis, center, scale)
    if privacy == "room":
        if not salt:
            raise ValueError("privacy mode 'room' needs a room name")
        rotation = _orthonormal(b"speech2face-room\0" + salt.encode(), N_CODES)
    elif privacy == "random":
        rotation = _orthonormal(os.urandom(32), N_CODES)
    else:
        raise ValueError(f"unknown privacy mode {privacy!r}; choose one of {', '.join(PRIVACY_MODES)}")
    # standardised channels, rotated: each new channel is again ~N(0, 1) over the population
    return IdentityBasis((basis / scale[None, :]) @ rotation, center, np.ones(N_CODES, np.float32))


def measure_stats(embeddings: np.ndarray, speakers: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, basis (256, K) and per-channel spread of a population of clips.

    The basis is the principal axes of the *speaker means* (one point per speaker, however many
    clips it has): the directions in which people differ most. Whitening by the within-speaker
    scatter first (an LDA basis) was measured too and held up worse on held-out sources
    (README "What is fitted on what").
    """
    spk = np.array(speakers)
    ids = sorted(set(speakers))
    center = embeddings.mean(axis=0)
    means = np.stack([embeddings[spk == s].mean(0) for s in ids])
    _, _, vt = np.linalg.svd(means - center, full_matrices=False)
    axes = vt[: min(N_CODES, len(ids) - 1)].T
    if axes.shape[1] < N_CODES:  # fewer speakers than channels: fill up with fixed random axes
        extra = _orthonormal(STABLE_SEED)
        extra -= axes @ (axes.T @ extra)
        q, _ = np.linalg.qr(extra)
        axes = np.concatenate([axes, q[:, : N_CODES - axes.shape[1]]], axis=1)
    basis = axes * np.where(axes[np.abs(axes).argmax(0), np.arange(N_CODES)] < 0, -1.0, 1.0)[None, :]  # fixed signs
    scale = ((embeddings - center) @ basis).std(axis=0) + 1e-6
    return center.astype(np.float32), basis.astype(np.float32), scale.astype(np.float32)
