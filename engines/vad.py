"""Voice-activity detection that gives the same answer however the audio is chunked.

WebRTC's VAD (the ``webrtcvad-wheels`` build: the original needs ``pkg_resources``) runs on
fixed 30 ms frames of the stream, with a small energy gate so a near-silent line never
counts as speech. Its decisions are smoothed over a 5-frame window and dilated by 3 frames;
both need 5 frames of look-ahead, which the streaming detector holds back, so the live path
and the one-shot path keep exactly the same samples.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import webrtcvad

from .choices import SAMPLE_RATE

FRAME = 480  # 30 ms
SMOOTH = 2  # frames each side of the moving vote
DILATE = 3  # frames of hangover each side
LOOKAHEAD = SMOOTH + DILATE
MIN_RMS_DBFS = -55.0


class StreamingVad:
    """Push float32 16 kHz audio, get back only the speech samples, in order.

    Per 30 ms frame the work is constant (a 5-vote window and a 7-wide dilation kept in short
    deques) and the energy gate and int16 conversion run once per push over all its frames:
    the detector runs on every call's whole audio stream, so its cost is a per-caller cost.
    """

    def __init__(self, aggressiveness: int = 3) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._pending = np.zeros(0, np.float32)  # < one frame, not yet classified
        self._frames: deque[np.ndarray] = deque()  # classified, awaiting look-ahead
        self._raw: deque[bool] = deque([False] * (2 * SMOOTH + 1), maxlen=2 * SMOOTH + 1)  # raw[t-4..t]
        self._smoothed: deque[bool] = deque([False] * (2 * DILATE + 1), maxlen=2 * DILATE + 1)  # smoothed[t-8..t-2]
        self._seen = 0  # frames classified (index of the next)
        self._emitted = 0  # frames decided (emitted or dropped)

    def push(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.concatenate([self._pending, np.asarray(pcm, np.float32).reshape(-1)])
        n = len(pcm) // FRAME
        self._pending = pcm[n * FRAME :].copy()
        if n == 0:
            return np.zeros(0, np.float32)
        frames = pcm[: n * FRAME].reshape(n, FRAME)
        out: list[np.ndarray] = []
        for frame, voiced in zip(frames, self._classify(frames)):
            self._frames.append(frame)
            self._step(bool(voiced), out)
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """End of stream: decide the held-back frames as if silence followed."""
        out: list[np.ndarray] = []
        while self._frames:
            self._step(False, out)
        self._pending = np.zeros(0, np.float32)
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _classify(self, frames: np.ndarray) -> np.ndarray:
        """Raw decisions: below the energy gate a frame is silence without asking webrtcvad."""
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
        with np.errstate(divide="ignore"):
            loud = (rms > 0) & (20 * np.log10(np.maximum(rms, 1e-300)) >= MIN_RMS_DBFS)
        voiced = np.zeros(len(frames), bool)
        if loud.any():
            pcm16 = (np.clip(frames[loud], -1.0, 1.0) * 32767).astype("<i2")
            voiced[loud] = [self._vad.is_speech(f.tobytes(), SAMPLE_RATE) for f in pcm16]
        return voiced

    def _step(self, voiced: bool, out: list[np.ndarray]) -> None:
        # Smoothed decision for frame k needs raw[k-SMOOTH..k+SMOOTH]; the dilated decision for
        # frame k needs smoothed[k-DILATE..k+DILATE]. With raw[t] known, smoothed[t-2] is, and
        # so is the decision for frame t-5, which is emitted (or dropped) now. Before the stream
        # and after its end (virtual steps) every raw decision is silence.
        t = self._seen
        self._seen += 1
        self._raw.append(voiced)
        self._smoothed.append(sum(self._raw) * 2 > (2 * SMOOTH + 1))
        if self._frames and self._emitted <= t - LOOKAHEAD:
            frame = self._frames.popleft()
            self._emitted += 1
            if any(self._smoothed):
                out.append(frame)


def speech_only(pcm: np.ndarray) -> np.ndarray:
    vad = StreamingVad()
    return np.concatenate([vad.push(pcm), vad.flush()])
