"""Mouth shape (viseme) from the last ~40 ms of the speaker's own audio: no text, no model.

Why it is built this way:
- A talking cartoon reads as speech when it uses a handful of mouth shapes, not one shape
  that opens and closes (the animators' "mouth chart"). Five cover most of it: closed
  (M, B, P and silence), open (A), spread with teeth (E, I, and the sibilants S, Z),
  round (O, U, W) and lip-under-teeth (F, V).
- Those classes are acoustically coarse, so coarse cues suffice, and they run per audio
  packet in pure numpy (~0.07 ms): loudness against the talker's own recent peak (silence
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

import functools
import math
from collections import deque

import numpy as np
from scipy.linalg.lapack import dgeev as _dgeev
from scipy.linalg.lapack import dposv as _dposv

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
BAND_EDGES_HZ = (80, 500, 1500, 3500, 4500, 8000)


def _lpc(x: np.ndarray, order: int) -> np.ndarray | None:
    """LPC coefficients a[1:] (a[0] = 1) from the autocorrelation normal equations: one FFT and
    one Cholesky solve (LAPACK directly: in a loaded server each numpy call's fixed cost, not
    its arithmetic, is what a frame pays). None when the frame is silent or degenerate.

    The autocorrelation matrix is Toeplitz and, with the 1e-6 ridge on its diagonal, positive
    definite, so a direct solve gives Levinson-Durbin's answer without its Python loop.
    """
    n = len(x)
    spec = np.fft.rfft(x, 1 << (n + order).bit_length())
    power = spec.real * spec.real
    power += spec.imag * spec.imag
    r = np.fft.irfft(power)[: order + 1]
    if r[0] <= 1e-12:
        return None
    r[0] *= 1.0 + 1e-6
    _, a, info = _dposv(r[_TOEPLITZ[order]], -r[1:], overwrite_a=1, overwrite_b=1)
    return a if info == 0 else None


#: index of r[|i - j|] in the normal equations, per order
_TOEPLITZ = {k: np.abs(np.subtract.outer(np.arange(k), np.arange(k))) for k in range(1, 33)}


def formants(x: np.ndarray, rate: int = RATE, order: int = LPC_ORDER) -> list[float]:
    """Formant frequencies (Hz, ascending) of a short voiced frame from the LPC roots."""
    if len(x) < order * 2:
        return []
    y = np.empty(len(x))
    y[0] = x[0]
    np.subtract(x[1:], 0.63 * x[:-1], out=y[1:])
    y *= _hamming(len(x))
    a = _lpc(y, order)
    if a is None or not a.any():
        return []
    roots = _roots(a)
    if roots is None:
        return []
    re, im = roots
    up = im > 0.01  # one of each conjugate pair
    re, im = re[up], im[up]
    freqs = np.arctan2(im, re) * (rate / (2 * math.pi))
    bw = np.log(np.hypot(re, im) + 1e-12) * (-0.5 * rate / math.pi)
    keep = (freqs > 200) & (freqs < 4000) & (bw < 500)
    return sorted(freqs[keep].tolist())


def _roots(tail: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Real and imaginary parts of the roots of the monic polynomial [1, *tail]: ``np.roots``'
    companion-matrix eigenvalues from LAPACK directly (the same numbers in half the time; this
    runs once per video frame). None if LAPACK fails."""
    comp = _companion(len(tail)).copy(order="F")
    np.negative(tail, out=comp[0, :])
    wr, wi, _, _, info = _dgeev(comp, compute_vl=0, compute_vr=0, overwrite_a=1)
    return (wr, wi) if info == 0 else None


@functools.lru_cache(maxsize=8)
def _companion(n: int) -> np.ndarray:
    c = np.eye(n, k=-1, order="F")
    c.setflags(write=False)
    return c


@functools.lru_cache(maxsize=8)
def _hamming(n: int) -> np.ndarray:
    w = np.hamming(n)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=8)
def _box(k: int) -> np.ndarray:
    w = np.full(k, 1.0 / k, np.float32)
    w.setflags(write=False)
    return w


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
        # packets not yet in ``_buf``, oldest first: (samples, rate, channels, scale, length at
        # 16 kHz); converted at ``update`` (once per video frame, not per 20 ms packet) and only
        # as many as the window needs
        self._held: deque[tuple[np.ndarray, int, int, float, int]] = deque()
        self._held_n = 0  # their length at 16 kHz
        self._win = np.hanning(self._n).astype(np.float32)
        freqs = np.fft.rfftfreq(self._n, 1.0 / RATE)
        # the spectrum's bins are sorted, so the bands are consecutive slices of 80-8000 Hz
        edge = [int(np.searchsorted(freqs, hz)) for hz in BAND_EDGES_HZ]
        self._span = slice(edge[0], edge[-1])
        self._starts = np.array(edge[:-1]) - edge[0]

    def reset(self) -> None:
        self._buf[:] = 0
        self._held.clear()
        self._held_n = 0
        self._pending_s = 0.0
        self.weights = {v: (1.0 if v == "rest" else 0.0) for v in VISEMES}
        self.target = dict(self.weights)

    @property
    def shape(self) -> str:
        """The heaviest viseme now."""
        return max(self.weights, key=self.weights.get)

    def push(self, pcm: np.ndarray, rate: int = RATE, analyse: bool = True, channels: int = 1) -> dict[str, float]:
        """Add samples (float in [-1, 1] or int16, interleaved if ``channels`` > 1); returns the smoothed weights.

        With ``analyse=False`` the samples are only buffered (cheap, per audio packet) and the
        analysis waits for :meth:`update`, which a frame loop calls once per video frame.
        """
        x = held_packet(pcm, rate, channels)
        if x.size == 0:
            return self.weights
        self.hold(x, rate, channels)
        return self.update() if analyse else self.weights

    def hold(self, x: np.ndarray, rate: int, channels: int = 1) -> None:
        """Buffer a packet ``held_packet`` already checked (the mouth's path: it checks on
        arrival and hands packets over when a frame reads them)."""
        scale = 1.0 / 32768.0 if x.dtype == np.int16 else 1.0  # int16 is scaled after the downmix
        n = _length_16k(x.size, rate, channels)
        self._pending_s += n / RATE
        self._held.append((x, rate, channels, scale, n))
        self._held_n += n
        while len(self._held) > 1 and self._held_n - self._held[0][4] >= self._n:
            self._held_n -= self._held.popleft()[4]  # entirely overwritten by newer audio

    def _take_held(self) -> None:
        """Shift the held packets into the window, converted as each would be on arrival: in
        one product when they share a format whose every packet converts without a remainder
        (WebRTC's 20 ms packets), else one by one."""
        held = self._held
        if not held:
            return
        x, rate, channels, scale, _ = held[0]
        k = (rate // RATE) * channels if rate % RATE == 0 else 0
        if len(held) > 1 and k and all(p[1] == rate and p[2] == channels and p[3] == scale and p[0].size % k == 0 for p in held):
            x = np.concatenate([p[0] for p in held])
            held.clear()
            self._shift_in(x, rate, channels, scale)
        else:
            while held:
                x, rate, channels, scale, _ = held.popleft()
                self._shift_in(x, rate, channels, scale)
        self._held_n = 0

    def _shift_in(self, x: np.ndarray, rate: int, channels: int, scale: float) -> None:
        if rate != RATE or channels > 1:
            x = _to_16k(x, rate, channels)
        x = x.astype(np.float32, copy=False)
        if scale != 1.0:
            x = x * np.float32(scale)
        if x.size >= self._n:
            self._buf[:] = x[-self._n :]
        elif x.size:
            self._buf[: -x.size] = self._buf[x.size :].copy()
            self._buf[-x.size :] = x

    def update(self) -> dict[str, float]:
        """Analyse the newest window (if audio arrived since the last call) and smooth toward it."""
        dt = self._pending_s
        if dt <= 0:
            return self.weights
        self._pending_s = 0.0
        self._take_held()
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
        x64 = x.astype(np.float64)
        rms = math.sqrt(float(np.dot(x64, x64)) / max(1, x64.size))
        level = 20 * math.log10(rms) if rms > 1e-6 else -120.0
        if level > self._peak_db:
            self._peak_db = level
        else:
            self._peak_db = max(-45.0, self._peak_db - PEAK_DECAY_DB_PER_S * dt)
        out = {v: 0.0 for v in VISEMES}
        if self._peak_db - level >= SILENCE_DB or level < FLOOR_DB:
            out["rest"] = 1.0
            return out
        spec = np.fft.rfft(x * self._win)[self._span]
        power = spec.real * spec.real
        power += spec.imag * spec.imag
        # energy in 80-500, 500-1500, 1500-3500, 3500-4500 and 4500-8000 Hz
        low, mid, upper, high, top = np.add.reduceat(power, self._starts).tolist()
        total = low + mid + upper + high + top + 1e-12
        fric = _ramp((high + top) / total, *FRICATIVE_HF)
        sib = _ramp(top / (upper + high + 1e-12), *SIBILANT)
        nasal = (1.0 - fric) * _ramp(-(mid + upper) / (low + 1e-12), -NASAL_MID[0], -NASAL_MID[1])
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


def held_packet(pcm: np.ndarray, rate: int, channels: int = 1) -> np.ndarray:
    """One packet of audio checked and safe to hold until a frame reads it: flat, finite (int16,
    what a decoder gives, always is) and read-only (a copy when the caller could reuse its buffer).
    An empty packet comes back as it is."""
    x = np.asarray(pcm).reshape(-1)
    if x.size == 0:
        return x
    if x.dtype != np.int16 and not np.isfinite(np.dot(x, x)):  # one pass instead of a mask
        raise ValueError("audio contains NaN or infinity")
    _check_format(rate, channels)
    if x.flags.writeable:
        x = x.copy()
        x.setflags(write=False)
    return x


def _check_format(rate: int, channels: int) -> None:
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")


def _length_16k(size: int, rate: int, channels: int = 1) -> int:
    """How many 16 kHz samples ``_to_16k`` makes of ``size`` interleaved values (checks the format)."""
    _check_format(rate, channels)
    if rate == RATE and channels == 1:
        return size
    if rate % RATE == 0:
        return size // ((rate // RATE) * channels)
    m = (size // channels) if channels > 1 else size
    return math.ceil(m / (rate / RATE))  # the length of np.arange(0, m, rate / RATE)


def _to_16k(x: np.ndarray, rate: int, channels: int = 1) -> np.ndarray:
    """Cheap downmix and rate conversion for features only (not for listening): box filter + pick.

    At 48 kHz stereo (what aiortc's Opus decoder gives) both happen in one product with a box
    of six samples, a tenth of the cost of a downmix and a decimation with ``mean``.
    """
    _check_format(rate, channels)
    if rate % RATE == 0:
        k = (rate // RATE) * channels
        n = (x.size // k) * k
        return x[:n].reshape(-1, k) @ _box(k)
    if channels > 1:
        x = x[: (x.size // channels) * channels].reshape(-1, channels) @ _box(channels)
    t = np.arange(0, x.size, rate / RATE)
    return np.interp(t, np.arange(x.size), x).astype(np.float32)
