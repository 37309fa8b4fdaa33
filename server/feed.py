"""SpeechFeed: a call's incoming audio on its way to the model, collected and resampled in chunks.

Why chunks: PyAV's resampler costs about the same per call whatever the length, so
resampling every 20 ms frame on its own cost 4.1 ms per second of audio against 0.9 ms in
0.2 s chunks and 0.7 ms in 1 s chunks (measured on this machine) — per caller, for the whole
call. Why a plan: the model needs audio only as often as a refinement can fall, and the
pipeline says how much speech is still to come before the next one (the adaptive cadence
spaces them up to 8 s apart), so the feeder pushes once that much audio (plus the VAD's
look-ahead) has arrived, at least every ``PUSH_MAX_SECONDS`` to bound the backlog. Why a gate:
a chunk whose every frame is below -60 dBFS is silence to the VAD (its gate is -55 dBFS RMS),
so it is handed over as zeros without resampling, and only the first such chunk after sound
is handed over at all (it lets the VAD release the speech it holds back for look-ahead; more
zeros would change nothing): when nobody speaks the model path costs nothing.
"""

from __future__ import annotations

import av
import numpy as np

from engines.pipeline import PUSH_SECONDS as PUSH_MIN_SECONDS
from engines.pipeline import SAMPLE_RATE as MODEL_RATE

PUSH_MAX_SECONDS = 1.0  # the longest audio waits for the model (bounds memory and VAD lag)
VAD_LOOKAHEAD_SECONDS = 0.2  # the VAD holds back 150 ms plus part of a 30 ms frame
QUIET_PEAK = 10 ** (-60 / 20)  # full scale = 1; below this a frame cannot hold speech


def packet_samples(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame's samples shaped as ``to_ndarray()`` shapes them; for packed 16-bit
    audio (what aiortc's Opus decoder gives, 50 times a second per caller) a view of the
    frame's own buffer instead of ``to_ndarray``'s copy through ``vstack``."""
    if frame.format.name == "s16":
        n = frame.samples * frame.layout.nb_channels
        view = np.frombuffer(frame.planes[0], np.int16, count=n).reshape(1, n)
        view.flags.writeable = False  # it is the frame's memory; read-only also spares the mouth a copy
        return view
    return frame.to_ndarray()


class SpeechFeed:
    """Not thread-safe: the call's event loop adds and takes."""

    def __init__(self) -> None:
        self._done: list[np.ndarray] = []  # 16 kHz pieces already converted (a format change)
        self._frames: list[np.ndarray] = []
        self._samples = 0  # at the input rate
        self._rate = 48_000
        self._format: tuple[str, str] | None = None
        self._quiet_sent = False  # the last chunk handed over was silence
        self._resampler: av.AudioResampler | None = None
        self.push_seconds = PUSH_MIN_SECONDS

    def add(self, raw: np.ndarray, frame: av.AudioFrame) -> bool:
        """Queue one decoded frame (``raw`` is its samples, as ``packet_samples`` gives them);
        True when a push is due. Only bookkeeping: the frames are looked at once per chunk."""
        fmt = (frame.format.name, frame.layout.name)
        if self._format is not None and (fmt != self._format or frame.sample_rate != self._rate):
            self._done.append(self._convert()[0])  # the sender renegotiated: convert what came before
            self._resampler = None
        self._format, self._rate = fmt, frame.sample_rate
        self._frames.append(raw)
        self._samples += frame.samples
        return self._samples >= self.push_seconds * self._rate

    def take(self) -> np.ndarray | None:
        """Everything queued, as 16 kHz mono float32 (zeros for a silent chunk); None when
        there is nothing the model needs (no audio, or silence after silence)."""
        if not self._frames and not self._done:
            return None
        converted, quiet = self._convert()
        quiet = quiet and not self._done
        pieces, self._done = [*self._done, converted], []
        if quiet and self._quiet_sent:
            return None
        self._quiet_sent = quiet
        return np.concatenate(pieces)

    def _convert(self) -> tuple[np.ndarray, bool]:
        """The queued frames at 16 kHz, and whether they were all quiet (then zeros)."""
        if not self._frames or self._format is None:
            return np.zeros(0, np.float32), True
        frames, samples = self._frames, self._samples
        self._frames, self._samples = [], 0
        data = frames[0] if len(frames) == 1 else np.concatenate(frames, axis=1)
        full_scale = 32768.0 if data.dtype.kind == "i" else 1.0
        if not data.size or max(float(data.max()), -float(data.min())) < QUIET_PEAK * full_scale:
            self._resampler = None  # speech after the silence starts a fresh filter
            return np.zeros(samples * MODEL_RATE // self._rate, np.float32), True
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=MODEL_RATE)
        chunk = av.AudioFrame.from_ndarray(data, format=self._format[0], layout=self._format[1])
        chunk.sample_rate = self._rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(chunk)]
        return (np.concatenate(out) if out else np.zeros(0, np.float32)), False

    def plan(self, seconds_until_refinement: float) -> None:
        """Push next when the coming refinement can be reached, within [min, max]."""
        self.push_seconds = min(PUSH_MAX_SECONDS, max(PUSH_MIN_SECONDS, seconds_until_refinement + VAD_LOOKAHEAD_SECONDS))

    def clear(self) -> None:
        self._done.clear()
        self._frames.clear()
        self._samples = 0
