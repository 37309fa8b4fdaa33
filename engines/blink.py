"""Natural blinks: a pure function of time from a seeded schedule.

People blink 10–20 times a minute at irregular intervals, sometimes twice in a row, and a
blink closes fast and reopens more slowly (~70 ms down, ~30 ms shut, ~110 ms up). A face
that blinks on a metronome looks robotic; one that never blinks looks dead. The schedule
is drawn lazily from a seeded generator so a call (and a test) is reproducible.
"""

from __future__ import annotations

import random

CLOSE_S, HOLD_S, OPEN_S = 0.07, 0.03, 0.11
BLINK_S = CLOSE_S + HOLD_S + OPEN_S
MEAN_INTERVAL_S = 4.0
MIN_INTERVAL_S = 1.2
DOUBLE_BLINK_P = 0.12


class Blinker:
    def __init__(self, seed: int | None = None, first_after: float = 1.5) -> None:
        self._rng = random.Random(seed)
        self._next = first_after
        self._start = -1.0  # start of the current/last blink

    def value(self, t: float) -> float:
        """Eyelid closure at time ``t`` (seconds, non-decreasing across calls): 0 open, 1 shut."""
        if t >= self._next:
            self._start = self._next
            if self._rng.random() < DOUBLE_BLINK_P:
                gap = BLINK_S + self._rng.uniform(0.08, 0.2)
            else:
                gap = max(MIN_INTERVAL_S, self._rng.gammavariate(3.0, MEAN_INTERVAL_S / 3.0))
            self._next = self._start + gap
            if t >= self._next:  # a long stall: skip ahead rather than blink in a burst
                self._next = t + MIN_INTERVAL_S
        return closure(t - self._start)


def closure(dt: float) -> float:
    if dt < 0 or dt >= BLINK_S:
        return 0.0
    if dt < CLOSE_S:
        return dt / CLOSE_S
    if dt < CLOSE_S + HOLD_S:
        return 1.0
    return 1.0 - (dt - CLOSE_S - HOLD_S) / OPEN_S
