"""Mouth openness from the loudness of the last ~40 ms of incoming audio.

Lip-sync here is an envelope follower, not a viseme model: a cartoon mouth that opens
with loudness reads as "talking" and, above all, is never late. The envelope is computed
on the 48 kHz frames as they come off the jitter buffer, before resampling, so the
resampler's delay never reaches the mouth; every video frame reads the newest value, so a
frame never shows a mouth older than one frame period plus one 20 ms audio packet.

Loudness is mapped in dB above an adaptive noise floor, so room hum keeps the mouth shut
and a quiet talker still moves it; when audio stops arriving the mouth closes.

A mouth is (openness, shape): ``MouthState``. The shape is a viseme (``engines.viseme``)
estimated from the same last ~40 ms of audio; packets are only held on arrival, and their
loudness and the spectral analysis are worked out once per video frame, in ``reading``. ``toward``/``mix`` name the
second-heaviest shape and its share: while the lips close toward an M or a pause, the
closed shape's share closes the mouth part way (the estimator smooths its weights over
~35 ms, so shapes change smoothly).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .viseme import VisemeEstimator, held_packet

WINDOW_S = 0.040
#: The mouth opens from GATE_DB above the noise floor (or RANGE_DB below the recent peak,
#: whichever is higher) and is fully open HEADROOM_DB below the recent peak: an automatic
#: gain on the *picture*, so quiet and loud talkers both get the full mouth range.
GATE_DB = 8.0
RANGE_DB = 32.0
HEADROOM_DB = 4.0
MIN_SPAN_DB = 14.0
FLOOR_MIN_DB, FLOOR_MAX_DB = -72.0, -40.0
FLOOR_RISE_DB_PER_S = 0.5  # the floor follows quieter input at once, louder input slowly
PEAK_MIN_DB = -45.0  # a peak tracker never believes speech is quieter than this
PEAK_DECAY_DB_PER_S = 2.0  # the peak follows louder input at once, quieter input slowly
MAX_PENDING = 64  # packets held unread at most (1.3 s of 20 ms packets) before they are folded anyway
STALE_S = 0.12  # no audio this long → mouth closes (the caller paused sending or vanished)
NEUTRAL_SHAPE = "neutral"  # no viseme information (the renderer draws its generic open mouth)


@dataclass(frozen=True)
class MouthState:
    """What the picture shows of the mouth: openness 0 (closed) … 1 (wide) and a shape name."""

    open: float = 0.0
    shape: str = NEUTRAL_SHAPE
    toward: str = ""  # the second shape ("rest" while the lips close)
    mix: float = 0.0  # its share, 0 … 0.5


@dataclass(frozen=True)
class MouthReading:
    value: float  # 0 closed … 1 wide open
    audio_t: float  # media time (s since the first received sample) of the newest sample used
    age: float  # seconds between that sample's arrival and now
    level_db: float  # dBFS of the window
    shape: str = NEUTRAL_SHAPE  # heaviest viseme of the window
    toward: str = ""  # second-heaviest viseme
    mix: float = 0.0  # its share of the two


_INT16_POWER = 2.0**-30  # (1 / 32768) ** 2: int16 full scale squared


class MouthEnvelope:
    """Feed raw audio frames with :meth:`push`; read :meth:`reading` at frame time."""

    def __init__(self, window_s: float = WINDOW_S, clock=time.monotonic, visemes: bool = True) -> None:
        self._window_s = window_s
        self._visemes = VisemeEstimator(window_s) if visemes else None
        self._clock = clock
        self._chunks: deque[tuple[float, int]] = deque()  # (sum of squares, n) per packet
        self._window_sum = 0.0
        self._window_n = 0
        self._rate = 48_000
        self._samples = 0  # total received per channel
        self._last_arrival: float | None = None  # of the newest packet pushed
        self._folded_arrival: float | None = None  # ... and of the newest folded into the envelope
        self._pending: deque[tuple[np.ndarray, int, int, float]] = deque()  # pushed, not yet folded
        self._level_db = -120.0
        self._floor_db = FLOOR_MIN_DB
        self._peak_db = PEAK_MIN_DB
        self._value = 0.0

    def push(self, samples: np.ndarray, rate: int, channels: int = 1, arrival: float | None = None) -> None:
        """Add one packet (int16 or float, interleaved if ``channels`` > 1).

        The packet is only checked and held: its loudness is folded into the envelope when a
        frame reads it (``reading``), packet by packet in arrival order, so the readings are
        what they would be if each packet were folded on arrival. A call's 50 packets a second
        each paid a round of small numpy calls, which in a loaded server cost 5-8x what they
        cost warm; a frame folds its 3-4 packets in one go.
        """
        arrival = self._clock() if arrival is None else arrival
        x = held_packet(samples, rate, channels)
        if x.size == 0:
            return
        self._pending.append((x, rate, channels, arrival))
        self._samples += x.size // channels
        self._rate = rate
        self._last_arrival = arrival
        if len(self._pending) >= MAX_PENDING:  # nobody reads frames (yet): keep the memory bounded
            self._fold()

    def _fold(self) -> None:
        """Fold the held packets into the envelope (and hand them to the viseme window)."""
        pending = self._pending
        while pending:
            x, rate, channels, arrival = pending.popleft()
            f = x.astype(np.float32, copy=False)
            ss = float(np.dot(f, f))
            if x.dtype == np.int16:
                ss *= _INT16_POWER  # exact: scaling by a power of two commutes with the float rounding
            if self._visemes is not None:
                self._visemes.hold(x, rate, channels)
            n = x.size
            self._chunks.append((ss, n))
            self._window_sum += ss
            self._window_n += n
            limit = int(self._window_s * rate * channels)
            while len(self._chunks) > 1 and self._window_n - self._chunks[0][1] >= limit:
                old_ss, old_n = self._chunks.popleft()
                self._window_sum -= old_ss
                self._window_n -= old_n
            prev = self._folded_arrival
            self._folded_arrival = arrival
            rms = math.sqrt(max(self._window_sum, 0.0) / max(self._window_n, 1))
            self._level_db = 20.0 * math.log10(rms) if rms > 1e-6 else -120.0
            dt = 0.0 if prev is None else max(0.0, arrival - prev)
            if self._level_db < self._floor_db:
                self._floor_db = max(FLOOR_MIN_DB, self._level_db)
            else:
                self._floor_db = min(FLOOR_MAX_DB, self._floor_db + FLOOR_RISE_DB_PER_S * dt)
            if self._level_db > self._peak_db:
                self._peak_db = self._level_db
            else:
                self._peak_db = max(PEAK_MIN_DB, self._peak_db - PEAK_DECAY_DB_PER_S * dt)
            self._value = openness(self._level_db, self._floor_db, self._peak_db)

    def reading(self, now: float | None = None) -> MouthReading:
        now = self._clock() if now is None else now
        self._fold()
        if self._last_arrival is None:
            return MouthReading(0.0, 0.0, 0.0, -120.0)
        age = max(0.0, now - self._last_arrival)
        value = self._value if age <= STALE_S else 0.0
        if self._visemes is None:
            return MouthReading(value, self._samples / self._rate, age, self._level_db)
        if age > STALE_S:
            return MouthReading(value, self._samples / self._rate, age, self._level_db, "rest")
        self._visemes.update()
        shape, toward, mix = self._visemes.top2()
        return MouthReading(value, self._samples / self._rate, age, self._level_db, shape, toward, mix)


def openness(level_db: float, floor_db: float, peak_db: float) -> float:
    """Linear in dB between gate and peak: loudness perception is logarithmic, so is the mouth."""
    hi = peak_db - HEADROOM_DB
    lo = min(max(floor_db + GATE_DB, peak_db - RANGE_DB), hi - MIN_SPAN_DB)
    return float(min(1.0, max(0.0, (level_db - lo) / (hi - lo))))
