"""Mouth shape (viseme) from the last ~40 ms of the speaker's own audio: no text, no model.

Why it is built this way:
- A talking cartoon reads as speech when it uses a handful of mouth shapes, not one shape
  that opens and closes (the animators' "mouth chart"). Five cover most of it: closed
  (M, B, P and silence), open (A), spread with teeth (E, I, and the sibilants S, Z),
  round (O, U, W) and lip-under-teeth (F, V).
- Those classes are acoustically coarse, so coarse cues suffice, and they run per audio
  packet in pure numpy (~0.1 ms): loudness against the talker's own recent peak (silence
  and stop closures → closed), the share of energy above 3.5 kHz (fricatives), the share
  below 500 Hz in a quiet voiced sound (the nasal murmur of M → closed) and, for vowels,
  the first two formants from a short LPC fit: a high F1 is an open jaw (A), a low F1 with
  a high F2 is spread lips (E), a low F1 with a low F2 is rounded lips (O).
- Vowel prototypes are compared in log-frequency, where a shorter vocal tract (women,
  children: formants ~15-20 % higher) shifts every vowel by about the same small step, and
  the prototypes sit far apart (open /a/, front /i/, back /u/ corners of the vowel space).
- Fricatives are told apart by spectral shape, not loudness: a sibilant (S, Z, SH) has
  most of its energy above 4.5 kHz, F/V/TH is flat; the nasal murmur of M has almost no
  energy between 0.5 and 3.5 kHz (the lips are closed and the nose radiates the sound).
- The output is a weight per viseme, smoothed with a ~35 ms time constant so shapes blend
  rather than snap; the renderer blends the two heaviest.
- Constants were set by looking at espeak-ng sustained vowels, fricatives and nasals
  (tests/test_render.py synthesises them) and checked by eye on the dev-set speech
  (docs/speaking.png); they are few and round on purpose.
"""

from __future__ import annotations

import math

import numpy as np

from .choices import SAMPLE_RATE

#: mouth shapes: rest/closed (M, B, P, silence), open (A), spread (E, I, S, Z), round (O, U, W),
#: lip under the upper teeth (F, V); the renderer draws one mouth per shape
VISEMES = ("rest", "A", "E", "O", "F")

WINDOW_S = 0.040
RATE = SAMPLE_RATE
LPC_ORDER = 14
SMOOTH_S = 0.035  # time constant of the weight smoothing
SILENCE_DB = 28.0  # this far below the recent peak is silence (or a stop closure)
FLOOR_DB = -55.0  # and anything quieter than this is silence whatever the peak
PEAK_DECAY_DB_PER_S = 3.0
FRICATIVE_HF = (0.25, 0.45)  # share of energy above 3.5 kHz: from vowel-like to fricative
SIBILANT = (1.0, 3.0)  # energy 4.5-8 kHz over 1.5-4.5 kHz: from F/V to S/SH
NASAL_MID = (0.14, 0.08)  # energy 0.5-3.5 kHz over < 0.5 kHz: from vowel to nasal murmur
# vowel prototypes (F1, F2) in Hz: the open, front and back corners of the vowel space
PROTOTYPES = {"A": (680.0, 1400.0), "E": (350.0, 2200.0), "O": (360.0, 1000.0)}
PROTO_WIDTH = 0.3  # in natural-log units


def _lpc(x: np.ndarray, order: int) -> np.ndarray:
    """LPC coefficients by Levinson-Durbin on the autocorrelation."""
    n = len(x)
    r = np.array([float(np.dot(x[: n - k], x[k:])) for k in range(order + 1)])
    if r[0] <= 1e-12:
        return np.zeros(order + 1)
    r[0] *= 1.0 + 1e-6
    a = np.zeros(order + 1)
    a[0] = 1.0
    e = r[0]
    for i in range(1, order + 1):
        acc = r[i] + float(np.dot(a[1:i], r[i - 1 : 0 : -1]))
        k = -acc / e
        a[1 : i + 1] = a[1 : i + 1] + k * a[i - 1 :: -1][:i]
        e *= 1.0 - k * k
        if e <= 0:
            break
    return a


def formants(x: np.ndarray, rate: int = RATE, order: int = LPC_ORDER) -> list[float]:
    """Formant frequencies (Hz, ascending) of a short voiced frame from the LPC roots."""
    if len(x) < order * 2:
        return []
    y = np.append(x[0], x[1:] - 0.63 * x[:-1]) * np.hamming(len(x))
    a = _lpc(y, order)
    if not np.any(a[1:]):
        return []
    roots = np.roots(a)
    roots = roots[np.imag(roots) > 0.01]
    freqs = np.angle(roots) * rate / (2 * math.pi)
    bw = -0.5 * rate / math.pi * np.log(np.abs(roots) + 1e-12)
    keep = (freqs > 200) & (freqs < 4000) & (bw < 500)
    return sorted(float(f) for f in freqs[keep])


class VisemeEstimator:
    """Feed audio with :meth:`push` (any rate, mono); read :attr:`weights` for the current shape."""

    def __init__(self, window_s: float = WINDOW_S, smooth_s: float = SMOOTH_S) -> None:
        self._n = int(window_s * RATE)
        self._buf = np.zeros(self._n, np.float32)
        self._smooth_s = smooth_s
        self._peak_db = -45.0
        self.weights: dict[str, float] = {v: (1.0 if v == "rest" else 0.0) for v in VISEMES}
        self.target: dict[str, float] = dict(self.weights)
        self._pending_s = 0.0
        self._win = np.hanning(self._n).astype(np.float32)
        self._freqs = np.fft.rfftfreq(self._n, 1.0 / RATE)

    def reset(self) -> None:
        self._buf[:] = 0
        self._pending_s = 0.0
        self.weights = {v: (1.0 if v == "rest" else 0.0) for v in VISEMES}
        self.target = dict(self.weights)

    @property
    def shape(self) -> str:
        """The heaviest viseme now."""
        return max(self.weights, key=self.weights.get)

    def push(self, pcm: np.ndarray, rate: int = RATE, analyse: bool = True) -> dict[str, float]:
        """Add mono samples (float in [-1, 1] or int16); returns the smoothed weights.

        With ``analyse=False`` the samples are only buffered (cheap, per audio packet) and the
        analysis waits for :meth:`update`, which a frame loop calls once per video frame.
        """
        x = np.asarray(pcm)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        x = x.astype(np.float32, copy=False).reshape(-1)
        if x.size == 0:
            return self.weights
        if not np.all(np.isfinite(x)):
            raise ValueError("audio contains NaN or infinity")
        if rate != RATE:
            x = _to_16k(x, rate)
        self._pending_s += x.size / RATE
        if x.size >= self._n:
            self._buf[:] = x[-self._n :]
        else:
            self._buf[: -x.size] = self._buf[x.size :].copy()
            self._buf[-x.size :] = x
        return self.update() if analyse else self.weights

    def update(self) -> dict[str, float]:
        """Analyse the newest window (if audio arrived since the last call) and smooth toward it."""
        dt = self._pending_s
        if dt <= 0:
            return self.weights
        self._pending_s = 0.0
        self.target = self.classify(self._buf, dt)
        k = 1.0 - math.exp(-dt / self._smooth_s) if self._smooth_s > 0 else 1.0
        self.weights = {v: self.weights[v] + (self.target[v] - self.weights[v]) * k for v in VISEMES}
        return self.weights

    def top2(self) -> tuple[str, str, float]:
        """(heaviest shape, second shape, the second's share of the two): what a frame blends."""
        (a, wa), (b, wb) = sorted(self.weights.items(), key=lambda kv: -kv[1])[:2]
        return a, b, (wb / (wa + wb) if wa + wb > 0 else 0.0)

    def classify(self, x: np.ndarray, dt: float = 0.02) -> dict[str, float]:
        """Unsmoothed viseme weights of one window (updates the loudness peak tracker)."""
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        level = 20 * math.log10(rms) if rms > 1e-6 else -120.0
        if level > self._peak_db:
            self._peak_db = level
        else:
            self._peak_db = max(-45.0, self._peak_db - PEAK_DECAY_DB_PER_S * dt)
        out = {v: 0.0 for v in VISEMES}
        if self._peak_db - level >= SILENCE_DB or level < FLOOR_DB:
            out["rest"] = 1.0
            return out
        spec = np.abs(np.fft.rfft(x * self._win)) ** 2
        f = self._freqs

        def band(lo: float, hi: float) -> float:
            return float(spec[(f >= lo) & (f < hi)].sum())

        total = band(80, 8000) + 1e-12
        low = band(80, 500)
        fric = _ramp(band(3500, 8000) / total, *FRICATIVE_HF)
        sib = _ramp(band(4500, 8000) / (band(1500, 4500) + 1e-12), *SIBILANT)
        nasal = (1.0 - fric) * _ramp(-band(500, 3500) / (low + 1e-12), -NASAL_MID[0], -NASAL_MID[1])
        out["E"] += fric * sib  # sibilants show the teeth
        out["F"] += fric * (1.0 - sib)
        out["rest"] += nasal  # M: lips closed
        vowel = max(0.0, 1.0 - fric - nasal)
        if vowel > 0:
            fs = formants(x)
            f1 = next((v for v in fs if 220 <= v <= 1100), None)
            f2 = next((v for v in fs if f1 is not None and f1 + 200 < v < 3200), None)
            if f1 is None or f2 is None:
                out["A"] += vowel  # voiced but no clear formants: the generic open mouth
            else:
                scores = {}
                for v, (p1, p2) in PROTOTYPES.items():
                    d2 = math.log(f1 / p1) ** 2 + math.log(f2 / p2) ** 2
                    scores[v] = math.exp(-0.5 * d2 / PROTO_WIDTH**2)
                s = sum(scores.values())
                for v, sc in scores.items():
                    out[v] += vowel * (sc / s if s > 1e-6 else (1.0 if v == "A" else 0.0))
        return out


def _ramp(x: float, lo: float, hi: float) -> float:
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


def _to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    """Cheap rate conversion for features only (not for listening): box filter + pick."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if rate % RATE == 0:
        k = rate // RATE
        n = (x.size // k) * k
        return x[:n].reshape(-1, k).mean(axis=1)
    t = np.arange(0, x.size, rate / RATE)
    return np.interp(t, np.arange(x.size), x).astype(np.float32)
