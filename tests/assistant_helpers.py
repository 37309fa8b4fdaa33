"""Shared by the assistant plugin tests: a speech-like test signal and lip-sync measures.

The signal is syllable-like bursts (a 150 Hz buzz with harmonics, 180 ms on, 120 ms off)
so the mouth has an envelope to follow that no constant or random mouth could fake.
"""

from __future__ import annotations

import numpy as np

BURST_S = 0.18
GAP_S = 0.12


def syllables(seconds: float, rate: int, lead_silence_s: float = 0.0) -> np.ndarray:
    """int16 mono: bursts of a harmonic buzz separated by silence."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    period = BURST_S + GAP_S
    phase = (t - lead_silence_s) % period
    on = (phase < BURST_S) & (t >= lead_silence_s)
    # 10 ms raised-cosine edges: syllables, not clicks
    ramp = np.clip(np.minimum(phase, BURST_S - phase) / 0.01, 0.0, 1.0)
    env = np.where(on, 0.5 - 0.5 * np.cos(np.pi * ramp), 0.0)
    return (0.35 * 32767 * buzz / 2.3 * env).astype(np.int16)


def energy_at(pcm: np.ndarray, rate: int, positions: np.ndarray, window_s: float) -> np.ndarray:
    """RMS of the ``window_s`` of audio starting at each position (seconds into ``pcm``): a
    frame's ``audio_pos`` is the first sample of the frame period's audio it shows."""
    x = pcm.astype(np.float64) / 32768.0
    w = int(round(window_s * rate))
    out = np.zeros(len(positions))
    for i, p in enumerate(positions):
        start = int(round(p * rate))
        seg = x[start : start + w]
        out[i] = float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def best_lag(mouth: np.ndarray, energy: np.ndarray, max_lag: int = 5) -> int:
    """The frame lag (mouth behind energy when positive) that correlates best."""
    scores = {}
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            m, e = mouth[lag:], energy[: len(energy) - lag]
        else:
            m, e = mouth[:lag], energy[-lag:]
        scores[lag] = correlation(m, e)
    return max(scores, key=scores.get)


def assert_paced(walls: list[float], indices: list[int], fps: float) -> None:
    """Pictures follow the avatar's clock: the slot clock runs at ``fps`` ± 10 % of wall time, no
    second holds more than ``fps`` + 2 pictures (late ones are skipped, never burst out), and few
    slots are skipped (a loaded machine makes the avatar skip a picture rather than queue it;
    its audio still plays)."""
    w = np.asarray(walls) - walls[0]
    idx = np.asarray(indices) - indices[0]
    assert (np.diff(idx) >= 1).all(), "slots out of order or repeated"
    slot_rate = idx[-1] / w[-1]
    assert abs(slot_rate - fps) <= 0.1 * fps, slot_rate
    per_second = max(int(np.searchsorted(w, x + 1.0) - i) for i, x in enumerate(w) if x + 1.0 <= w[-1])
    assert per_second <= fps + 2, f"{per_second} pictures within one second: a burst"
    delivered = len(idx) / (idx[-1] + 1)
    assert delivered >= 0.8, f"only {delivered:.0%} of the slots became pictures"
