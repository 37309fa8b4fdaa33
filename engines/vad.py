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
    """Push float32 16 kHz audio, get back only the speech samples, in order."""

    def __init__(self, aggressiveness: int = 3) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._pending = np.zeros(0, np.float32)  # < one frame, not yet classified
        self._frames: deque[np.ndarray] = deque()  # classified raw, awaiting look-ahead
        self._raw: deque[bool] = deque()  # raw decisions, aligned with history below
        self._history: deque[bool] = deque(maxlen=2 * LOOKAHEAD + 1)
        self._smoothed: deque[bool] = deque()
        self._emitted = 0
        self._seen = 0

    def push(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.concatenate([self._pending, np.asarray(pcm, np.float32).reshape(-1)])
        n = len(pcm) // FRAME
        self._pending = pcm[n * FRAME :].copy()
        out: list[np.ndarray] = []
        for i in range(n):
            frame = pcm[i * FRAME : (i + 1) * FRAME]
            self._ingest(frame, self._is_voiced(frame))
            out.extend(self._drain(final=False))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """End of stream: decide the held-back frames as if silence followed."""
        out = list(self._drain(final=True))
        self._pending = np.zeros(0, np.float32)
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _is_voiced(self, frame: np.ndarray) -> bool:
        rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
        if rms <= 0 or 20 * np.log10(rms) < MIN_RMS_DBFS:
            return False
        pcm16 = (np.clip(frame, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        return bool(self._vad.is_speech(pcm16, SAMPLE_RATE))

    def _ingest(self, frame: np.ndarray, voiced: bool) -> None:
        self._frames.append(frame)
        self._raw.append(voiced)
        self._seen += 1

    def _drain(self, final: bool):
        # Smoothed decision for frame k needs raw[k-SMOOTH..k+SMOOTH]; the dilated decision for
        # frame k needs smoothed[k-DILATE..k+DILATE]. Frames are emitted once both are known.
        raw = list(self._raw)
        base = self._seen - len(raw)  # stream index of raw[0]
        total = base + len(raw)

        def raw_at(k: int) -> bool:
            return base <= k < total and raw[k - base]

        def smooth_at(k: int) -> bool:
            votes = sum(raw_at(j) for j in range(k - SMOOTH, k + SMOOTH + 1))
            return votes * 2 > (2 * SMOOTH + 1)

        limit = total if final else total - LOOKAHEAD
        while self._emitted < limit:
            k = self._emitted
            keep = any(smooth_at(j) for j in range(k - DILATE, k + DILATE + 1))
            frame = self._frames.popleft()
            self._emitted += 1
            if keep:
                yield frame
        # keep enough raw history behind the emission point for the windows above
        while len(self._raw) > (self._seen - self._emitted) + 2 * LOOKAHEAD:
            self._raw.popleft()


def speech_only(pcm: np.ndarray) -> np.ndarray:
    vad = StreamingVad()
    return np.concatenate([vad.push(pcm), vad.flush()])
