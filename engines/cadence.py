"""Cadence: when a pipeline refines, which blocks Praat analyses, how far apart encoder partials start.

Why: refining every 0.5 s of speech for two minutes spends model CPU where the face no longer
moves. On six long voices (106–120 s of speech each; README "Model cadence") the face vector
moves about 0.12 per second of speech at 7 s, 0.04 at 25 s and 0.01 after 60 s — roughly as
1 / seconds heard, the way a running mean settles. So:

- **Young face** (the first ``young_seconds``, the 6 s over which the confidence ring fills): a
  refinement every 0.5 s block, Praat on every block, partials at 50 % overlap — as before, so
  every face up to 6 s is what it always was.
- **Then the measured change decides.** At each refinement the change of the face vector
  over the last ≥ 2 s of speech (``rate_span_blocks``: a 0.5 s block may hold no new partial,
  so a one-block change says nothing) gives a rate, change per second of speech. The next
  interval is the longest power-of-two number of blocks over which that rate moves the face by
  ``step_target`` (at most twice the last interval, at most ``max_interval_blocks``); a
  fast-moving face (a new speaker takes the microphone) drops straight back to 0.5 s.
  Refinements fall on multiples of the interval, so round positions (20 s, 30 s) stay
  refinement points while the interval divides them.
- **Praat on what the decoder needs.** The decoder reads running statistics (F0 histogram, HNR,
  perturbation, formant means) that have settled by then; after the young phase, and once the
  profile holds ``min_voiced_s`` of voiced frames, Praat analyses one block in ``praat_stride``
  (simulated on the six voices: the faces at 20 and 30 s moved ≤ 0.003 from analysing every
  block); the voiced and speech counts the decoder reads are scaled to all speech heard.
- **Encoder overlap goes once the embedding is stable**: when the measured rate falls below
  ``overlap_rate`` (typically after 15–25 s of speech), partials stop overlapping (1.6 s hop),
  halving the encoder's work. 0.05 was chosen over 0.15 and 0.08 on the six voices: dropping
  overlap earlier moved the faces at 20/30 s up to 0.09 further from the final face.

Confidence is not an input: it measures how decisive the voice is, not how settled the face is
(a 50/50 voice stays at low confidence with a perfectly stable face). The young phase ends
where the confidence ring fills.

Every decision is taken at a refinement, from that refinement's face, and applies only to
speech after it; the pipeline stops consuming speech at each such refinement until it is
decoded. So the decisions — and every face — depend only on the speech stream, never on how it
was chunked or when it arrived.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

BLOCK_SECONDS = 0.5


@dataclass(frozen=True)
class CadenceRule:
    """The rule's figures (module docstring). ``EVERY_BLOCK`` is the old fixed cadence, kept as
    the baseline the benchmark measures against and for offline work that wants every face."""

    young_seconds: float = 6.0  # every block refines while the face is this young
    step_target: float = 0.1  # face-vector change one refinement should carry once settled
    # 4 s of speech at most between refinements: 8 s (16) left the face shown at 30 s up to 6 s
    # old (mean +0.019 from the every-block face's distance to the final, against +0.010 with 8;
    # the six voices of bench_cadence.py, 2026-12-02); a refinement without a raster costs
    # one decoder run (0.4 ms)
    max_interval_blocks: int = 8
    praat_stride: int = 8  # after the young phase Praat analyses one block in 8 (one per 4 s)
    min_voiced_s: float = 3.0  # ... but only once the profile holds this much voiced speech
    overlap_rate: float = 0.05  # face change per second of speech below which partials stop overlapping
    rate_span_blocks: int = 4  # measure the change over at least 2 s: a 0.5 s block may hold no new partial

    @property
    def young_blocks(self) -> float:
        return self.young_seconds / BLOCK_SECONDS


ADAPTIVE = CadenceRule()
EVERY_BLOCK = CadenceRule(young_seconds=math.inf)


class Cadence:
    """The schedule of one pipeline, in completed 0.5 s blocks of its speech stream."""

    def __init__(self, partial_hop: int, partial_samples: int, rule: CadenceRule = ADAPTIVE) -> None:
        self.rule = rule
        self.interval = 1  # blocks between refinements
        self.next_refinement = 1  # block count at which the next refinement falls
        self.partial_hop = partial_hop
        self._no_overlap_hop = partial_samples
        self.rate = math.nan  # last measured face change per second of speech
        self._faces: deque[tuple[int, np.ndarray]] = deque()  # recent deciding refinements

    def refines_at(self, blocks: int) -> bool:
        return blocks >= self.next_refinement

    def decides_at(self, blocks: int) -> bool:
        """Does this refinement's face set the schedule? (From ``rate_span_blocks`` before the
        young phase ends: the first decision measures the change since then.)"""
        return self.refines_at(blocks) and blocks >= self.rule.young_blocks - self.rule.rate_span_blocks

    def analyses(self, blocks: int, voiced_seconds: float) -> bool:
        """Does Praat analyse the block that brings the count to ``blocks``?"""
        r = self.rule
        return blocks <= r.young_blocks or voiced_seconds < r.min_voiced_s or blocks % r.praat_stride == 0

    def decided(self, blocks: int, face: np.ndarray) -> None:
        """The face at a deciding refinement is known: schedule what follows it."""
        r = self.rule
        ref = self._reference(blocks)
        if ref is not None and blocks >= r.young_blocks:
            span = (blocks - ref[0]) * BLOCK_SECONDS
            self.rate = float(np.linalg.norm(face - ref[1])) / span
            if self.rate < r.overlap_rate:
                self.partial_hop = self._no_overlap_hop
            want = r.step_target / max(self.rate, 1e-9) / BLOCK_SECONDS
            n = 1
            while n * 2 <= min(want, 2 * self.interval, r.max_interval_blocks):
                n *= 2
            self.interval = n
        self.rebase(blocks, face)
        self.next_refinement = (blocks // self.interval + 1) * self.interval

    def _reference(self, blocks: int) -> tuple[int, np.ndarray] | None:
        """The newest deciding face at least ``rate_span_blocks`` older than ``blocks``."""
        ref = None
        for at, face in self._faces:
            if blocks - at >= self.rule.rate_span_blocks:
                ref = (at, face)
        return ref

    def rebase(self, blocks: int, face: np.ndarray, forget: bool = False) -> None:
        """Remember a deciding face; ``forget``: measure only from this one on (after a user
        override changed the face by hand — that change is not the voice's)."""
        if forget:
            self._faces.clear()
        self._faces.append((blocks, np.array(face, np.float64)))
        while len(self._faces) > 1 and blocks - self._faces[1][0] >= self.rule.rate_span_blocks:
            self._faces.popleft()  # the second-oldest is already old enough to be the reference
