"""Shared pytest fixtures: the synthetic voice corpus and bad-input files.

Thread limits are set first, before anything imports torch or numpy's BLAS:
the CI machine has two busy cores and torch's default of one thread per core
(plus OpenMP spinning) makes inference collapse rather than speed up.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MKL_NUM_THREADS", "1")
# before any import of onnxruntime (piper-tts imports it too): see engines/__init__.py
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("ORT_TELEMETRY_DISABLED", "1")

import importlib.util  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

if importlib.util.find_spec("torch") is not None:
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set by someone who imported torch earlier
        pass

# ``tests`` has no __init__.py and pytest may run in importlib mode, so make the
# repository root importable to reach ``tests.voices`` the same way the CLI does.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests import voices  # noqa: E402


def _require_tools() -> None:
    """Local convenience only: CI installs espeak-ng, so there these always run."""
    if not voices.espeak_available():
        pytest.skip("espeak-ng and/or sox not installed (apt-get install espeak-ng sox libsox-fmt-all mbrola mbrola-us1 ...)")


@pytest.fixture(scope="session")
def voice_corpus() -> dict[str, list[Path]]:
    """Plain voice name -> 16 kHz mono WAVs, one per sentence (index 3 is the ~12 s one).

    Labels live in ``voices.VOICES`` (look up with ``voices.voice_by_name``).
    """
    _require_tools()
    return voices.generate_corpus()


@pytest.fixture(scope="session")
def pitch_sweep() -> list[tuple[voices.Voice, Path]]:
    """(Voice, WAV) for the same speakers at espeak-ng -p 0..99, labelled with the base gender."""
    _require_tools()
    return voices.generate_pitch_sweep()


@pytest.fixture(scope="session")
def bad_inputs() -> dict[str, Path]:
    """Name -> file for bad-input tests; see ``voices.make_bad_inputs`` for the keys.

    Shared, cached files: tests must not modify them (copy to tmp_path first).
    """
    _require_tools()
    return voices.make_bad_inputs(voices.bad_inputs_dir())


@pytest.fixture(scope="session")
def speech_wav() -> dict[str, Path]:
    """One clean ~6.6 s clip per label: ``{"female": Path, "male": Path}`` (16 kHz mono WAV)."""
    _require_tools()
    return {
        g: voices.synthesize(voices.voice_by_name(name), voices.SPEECH_WAV_SENTENCE)
        for g, name in voices.SPEECH_WAV_VOICES.items()
    }


@pytest.fixture(scope="session")
def tts24k(speech_wav) -> dict:
    """The speech clips as a TTS engine hands them to an assistant avatar: int16 mono at 24 kHz,
    leading silence cut (the first sample is the start of speech). ``{"female": ..., "male": ...}``."""
    import numpy as np

    from tests.server_helpers import read_wav_16k, to_rate

    out = {}
    for g, path in speech_wav.items():
        pcm = to_rate(read_wav_16k(path), 24_000)
        loud = np.flatnonzero(np.abs(pcm) > 0.05 * 32768)
        out[g] = pcm[max(0, loud[0] - 240) :]
    return out


@pytest.fixture(scope="session")
def onnx_engine():
    """One engine (ONNX Runtime sessions) shared by every test that needs the real models."""
    from engines.pipeline import AvatarEngine

    return AvatarEngine("onnx")
