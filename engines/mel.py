"""Mel spectrogram with the exact parameters the GE2E encoder was trained with.

The resemblyzer weights expect librosa's defaults at 16 kHz: 25 ms Hann window (periodic),
10 ms hop, centred frames with zero padding, power spectrum, 40 Slaney-scale,
Slaney-normalised mel bands — and *no* log (the network was trained on power mels).
Any drift here silently moves every embedding, so tests compare against librosa when it is
installed. Written in numpy so every backend (torch, ONNX Runtime, TensorRT) sees identical
input features.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .choices import SAMPLE_RATE

N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    logstep = np.log(6.4) / 27.0
    mels = f / f_sp
    log_region = f >= min_log_hz
    mels = np.where(log_region, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=4)
def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft//2+1) Slaney-style triangular filters with area normalisation."""
    fft_freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    mel_pts = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_pts[2 : n_mels + 2] - mel_pts[:n_mels]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float32)  # periodic Hann


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) float32 power mel spectrogram; frames = 1 + len(wav) // 160."""
    wav = np.asarray(wav, dtype=np.float32)
    padded = np.pad(wav, (N_FFT // 2, N_FFT // 2), mode="constant")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0]), writeable=False
    )
    spec = np.fft.rfft(frames * _window(), axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    return power @ mel_filterbank().T
