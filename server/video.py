"""The avatar video track: paced frames from the call's ``FaceAnimator``.

Pacing drops, never bursts: aiortc's ``VideoStreamTrack.next_timestamp`` catches up after
a stall by sending frames back to back, and a talking face would then replay stale mouths.
Here a late track skips timestamps and shows the present. Everything about the picture —
mouth, blinks, morph, cache — is the animator's; the track only asks it for the frame of
the moment, in yuv420p (what the VP8 encoder takes).

A picture that did not change is not sent again (a variable frame rate, as screen sharing
does): a silent or listening face is the same cached picture slot after slot, and encoding,
packetising and encrypting it 15 times a second cost more than everything else a silent
call does. The viewer's decoder keeps showing it, so what a viewer sees is the same. Every
slot still asks the animator for its frame, so a change (a mouth, a blink, a morph) goes
out at the very slot it happens; the held picture is sent again at least every
``HOLD_MAX_S`` (a keep-alive for receivers and SFUs), and at once when a receiver asks
for a keyframe (``refresh_on_keyframe_request``).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass
from typing import Callable

import av
import numpy as np
from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from engines.animator import AnimatedFrame, FaceAnimator

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
HOLD_MAX_S = 1.0  # an unchanged picture is sent again after this long


def yuv_frame(image: np.ndarray) -> av.VideoFrame:
    """A yuv420p frame reading the animator's picture in place.

    The animator keeps each finished picture (read-only) and returns the same array for every
    frame that shows it, so copying it into a fresh frame 15 times a second per call was pure
    overhead (42 µs warm against 4.7 µs for the wrapper). The frame holds a reference to the
    array, and the encoder only reads it. An older PyAV without yuv420p here, or an array that
    is not C-contiguous, gets the copy.
    """
    try:
        return av.VideoFrame.from_numpy_buffer(image, format="yuv420p")
    except ValueError:
        return av.VideoFrame.from_ndarray(image, format="yuv420p")


@dataclass(frozen=True)
class FrameInfo:
    """One sent frame, as the call's telemetry reports it."""

    seq: int
    pts: int
    t: float  # seconds since the track started
    frame: AnimatedFrame
    slots: int = 0  # frame slots served so far, this one included (sent or held)

    def to_json(self) -> dict:
        f = self.frame
        return {
            "type": "frame",
            "seq": self.seq,
            "slots": self.slots,
            "pts": self.pts,
            "t": round(self.t, 4),
            "mouth": round(f.mouth.open, 4),
            "shape": f.mouth.shape,
            "audio_t": round(f.audio_t, 4),
            "mouth_age_ms": round(f.mouth_age * 1000, 2),
            "blink": round(f.blink, 3),
            "morph": round(f.morph, 3),
            "version": f.version,
        }


class AvatarVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(
        self,
        animator: FaceAnimator,
        fps: float,
        on_frame: Callable[[FrameInfo], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.animator = animator
        self._period = 1.0 / fps
        self._on_frame = on_frame
        self._clock = clock
        self._start: float | None = None
        self._index = 0  # frame slot number since start (pts = index * period)
        self._seq = 0
        self._sent: tuple[object, float] | None = None  # (picture, clock time) of the last frame sent
        self.frames_sent = 0
        self.frames_held = 0  # slots whose picture was the one already sent (not sent again)
        self.first_frame_at: float | None = None

    @property
    def slots(self) -> int:
        """Frame slots served: sent or held (what a starved track falls behind on)."""
        return self.frames_sent + self.frames_held

    def refresh(self) -> None:
        """Send the next slot's picture even if it did not change (a receiver lost it)."""
        self._sent = None

    async def _next_slot(self) -> tuple[int, float]:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
            return 0, now
        self._index += 1
        due = self._start + self._index * self._period
        if now - due > self._period:  # fell behind: skip slots, do not burst
            self._index = int((now - self._start) / self._period)
            due = self._start + self._index * self._period
        wait = due - now
        if wait > 0:
            await asyncio.sleep(wait)
        if self.readyState != "live":
            raise MediaStreamError
        return self._index, self._clock()

    async def recv(self) -> av.VideoFrame:
        while True:
            index, now = await self._next_slot()
            shown = self.animator.frame(now, "yuv420p")
            sent = self._sent
            if sent is None or shown.image is not sent[0] or now - sent[1] >= HOLD_MAX_S:
                break
            self.frames_held += 1  # the cached picture already on the viewer's screen
        self._sent = (shown.image, now)
        frame = yuv_frame(shown.image)
        pts = int(round(index * self._period * VIDEO_CLOCK_RATE))
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        if self._on_frame is not None:
            self._on_frame(FrameInfo(self._seq, pts, now - self._start, shown, self.slots))
        self._seq += 1
        return frame


def refresh_on_keyframe_request(sender: RTCRtpSender, track: AvatarVideoTrack) -> None:
    """Make a keyframe request (an RTCP PLI: a receiver lost the picture, or an SFU has a new
    subscriber) also send the held picture at the next slot, not up to ``HOLD_MAX_S`` later.

    aiortc answers a PLI in ``RTCRtpSender._send_keyframe`` by marking the next encoded frame
    a keyframe, and has no event for it, so this wraps that method on the one sender.
    """
    request = sender._send_keyframe

    def send_keyframe() -> None:
        request()
        track.refresh()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]
