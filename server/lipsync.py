"""The participant's own voice, sent a fixed delay late so it leaves with the avatar that mouths it.

A room member's feed carries two tracks from our server: the avatar video and the caller's
voice. The video is necessarily late: a frame's mouth reads the newest audio when the frame
is made (up to one frame period plus one packet after the sound arrived) and then it is
encoded. Receivers play audio and video of one feed in sync by their RTP clocks, which
Janus maps to the moment it relayed each packet, so what they see is what we *send*
together. Sending the voice ``delay`` later than it arrived puts it back beside its frame:
ITU-R BT.1359 accepts audio up to 45 ms early and 125 ms late; the default was measured at
a receiving browser (``bench/bench_rooms.py`` prints the offset; README, Rooms).

Pacing is the track's own 20 ms clock, never the caller's packet arrival: a late packet is
played late rather than stretching the stream, a gap is filled with silence, and a backlog
(after the caller's jitter buffer releases a burst) is dropped down to the target delay, so
the voice never drifts behind its face.
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
#: measured at a receiving Chromium through Janus (bench/bench_rooms.py, README "Rooms")
DEFAULT_DELAY_S = 0.060
MAX_BACKLOG_S = 0.060  # queued beyond the target delay: drop the oldest
MAX_QUEUE = 100  # 2 s of packets while nobody reads (Janus down): then drop


class DelayedAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, delay_s: float = DEFAULT_DELAY_S, clock: Callable[[], float] = time.monotonic) -> None:
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
            due = self._start + self._n * PTIME
            if now - due > 0.2:  # nobody read for a while (publisher reconnecting): restart the clock
                self._start, self._n, due = now, 0, now
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
        frame.pts = self.frames_sent * SAMPLES
        frame.time_base = TIME_BASE
        self._n += 1
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
