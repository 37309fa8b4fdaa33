"""GE2E speaker encoder: the network and the weights that ship inside the resemblyzer wheel.

The wheel is installed for its ``pretrained.pt`` only: importing the resemblyzer package
would pull librosa and webrtcvad at import time, so the file is located through the
import system without executing the package. Nothing is ever fetched from a model hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from .mel import N_MELS

EMBEDDING_SIZE = 256
HIDDEN_SIZE = 256
NUM_LAYERS = 3
PARTIAL_FRAMES = 160  # 1.6 s of 10 ms mel frames
PARTIAL_SAMPLES = PARTIAL_FRAMES * 160  # 25 600 samples at 16 kHz
PARTIAL_HOP_SAMPLES = PARTIAL_SAMPLES // 2  # 50 % overlap


class WeightsMissing(RuntimeError):
    pass


def weights_path() -> Path:
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissing(
            "the GE2E weights come from the 'resemblyzer' wheel, which is not installed: pip install --no-deps resemblyzer==0.1.4"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise WeightsMissing(f"resemblyzer is installed but {path} is missing")
    return path


@lru_cache(maxsize=1)
def weights_sha256() -> str:
    return hashlib.sha256(weights_path().read_bytes()).hexdigest()


class SpeakerEncoder(nn.Module):
    """3-layer LSTM over power mels; last hidden state → linear → ReLU → L2 norm."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN_SIZE, NUM_LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN_SIZE, EMBEDDING_SIZE)
        self.relu = nn.ReLU()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = self.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


@lru_cache(maxsize=1)
def load_encoder() -> SpeakerEncoder:
    model = SpeakerEncoder()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
    own = {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}
    missing = model.load_state_dict(own, strict=False).missing_keys
    if missing:
        raise WeightsMissing(f"the GE2E checkpoint lacks {missing}")
    return model.eval()
