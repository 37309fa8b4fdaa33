"""The participant's own voice in their room feed, paced by us and optionally delayed.

A room member's feed carries two tracks from our server: the avatar video and the caller's
voice. The video is late by construction: a frame's mouth reads the newest audio when the
frame is made (up to one frame period plus one packet after the sound arrived), then it is
encoded. Receivers play one feed's audio and video in sync by RTP time, which Janus maps to
the moment it relayed each packet, so what they see is roughly what we send together; the
design therefore sends the voice ``delay`` later than it arrived.

Measured at a receiving Chromium (``bench/bench_rooms.py``, README "Rooms"), its own
lip-sync holds the voice back more than our mouth lag: with no delay the voice already
plays ~50 ms after the mouth in a settled call (~90 ms in the first half minute), inside
ITU-R BT.1359 (audio at most 45 ms early, 125 ms late); 60 ms of delay pushed it to
95–150 ms late. So the delay defaults to 0 (``--audio-delay-ms``) and the track's job is
the pacing:

Pacing is the track's own 20 ms clock, never the caller's packet arrival: a late packet is
played late rather than stretching the stream, a gap is filled with silence, a backlog
(after the caller's jitter buffer releases a burst) is dropped down to the target delay,
and send slots missed by a stalled loop are skipped so RTP time stays wall-clock time (the
receiver's lip-sync maps it to Janus's clock): the voice never drifts behind its face.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from typing import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

AUDIO_RATE = 48_000
PTIME = 0.020
SAMPLES = int(AUDIO_RATE * PTIME)
TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
MAX_BACKLOG_S = 0.060  # queued beyond the target delay: drop the oldest
MAX_QUEUE = 100  # 2 s of packets while nobody reads (Janus down): then drop
MAX_LATE_S = 0.1  # a send slot this late is skipped, not caught up


class DelayedAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.delay = delay_s
        self._clock = clock
        self._queue: deque[tuple[float, av.AudioFrame]] = deque()
        self._start: float | None = None
        self._n = 0
        self.frames_sent = 0
        self.silent_frames = 0
        self.dropped = 0

    def push(self, frame: av.AudioFrame, arrival: float) -> None:
        """One decoded 20 ms frame from the caller (aiortc gives 48 kHz stereo s16)."""
        if self.readyState != "live":
            return
        self._queue.append((arrival, frame))
        while len(self._queue) > MAX_QUEUE:
            self._queue.popleft()
            self.dropped += 1

    def _silence(self) -> av.AudioFrame:
        frame = av.AudioFrame(format="s16", layout="stereo", samples=SAMPLES)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = AUDIO_RATE
        return frame

    def _take(self, now: float) -> av.AudioFrame | None:
        q = self._queue
        # a backlog beyond the target delay (a burst, or nobody read for a while): catch up
        while len(q) > 1 and now - q[0][0] > self.delay + MAX_BACKLOG_S:
            q.popleft()
            self.dropped += 1
        if q and now - q[0][0] >= self.delay - PTIME / 2:
            return q.popleft()[1]
        return None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            self._n += 1
            due = self._start + self._n * PTIME
            if now - due > MAX_LATE_S:
                # fell behind (a stalled loop, nobody reading while the publisher reconnects):
                # skip the slots rather than burst, so RTP time stays wall-clock time, the
                # receiver's lip-sync (RTP time ↔ Janus's clock) stays right
                self._n = int((now - self._start) / PTIME + 1e-6)
                due = self._start + self._n * PTIME
            wait = due - now
            if wait > 0:
                await asyncio.sleep(wait)
            if self.readyState != "live":
                raise MediaStreamError
            now = self._clock()
        frame = self._take(now)
        if frame is None:
            frame = self._silence()
            self.silent_frames += 1
        frame.pts = self._n * SAMPLES
        frame.time_base = TIME_BASE
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
