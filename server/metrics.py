"""Prometheus metrics, one registry per app so tests can run several servers in a process.

Under ``--workers`` each worker runs prometheus_client's multiprocess mode (the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` before the worker imports it): values live in memory-mapped files
in that directory and whichever worker answers ``/metrics`` collects them all. Counters and
histograms add up over workers (dead ones included, so totals never go back); gauges say how
they combine: live sessions add up, the budget is the shared one, and ``s2f_fps_delivered``
is the *lowest* worker's mean (the one whose callers stutter first).
"""

from __future__ import annotations

import os
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self._fps: Callable[[], float] | None = None
        r = self.registry
        self.live_sessions = Gauge(
            "s2f_live_sessions", "Calls admitted and not yet closed", registry=r, multiprocess_mode="livesum"
        )
        self.session_budget = Gauge(
            "s2f_session_budget", "Configured concurrent call budget", registry=r, multiprocess_mode="livemax"
        )
        self.sessions_total = Counter("s2f_sessions", "Calls admitted", registry=r)
        self.rejected_sessions = Counter("s2f_rejected_sessions", "Offers refused with 503 (budget full)", registry=r)
        self.frames_sent = Counter("s2f_frames_sent", "Avatar video frames handed to the encoder", registry=r)
        self.frames_held = Counter(
            "s2f_frames_held", "Frame slots whose picture was already on screen (not sent again)", registry=r
        )
        self.fps_delivered = Gauge(
            "s2f_fps_delivered",
            "Mean frame slots served per second per live call over the last window (held pictures included)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.refinement_latency = Histogram(
            "s2f_refinement_latency_seconds",
            "Wall time of a pipeline push that produced a refinement (queue + compute)",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.first_frame_seconds = Histogram(
            "s2f_first_frame_seconds",
            "Offer received → first video frame produced",
            buckets=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.mouth_age_seconds = Histogram(
            "s2f_mouth_age_seconds",
            "Age of the newest audio behind a frame's mouth when the frame is made",
            buckets=(0.005, 0.01, 0.02, 0.04, 0.067, 0.087, 0.12, 0.25),
            registry=r,
        )
        self.loop_lag = Histogram(
            "s2f_event_loop_lag_seconds",
            "How late a 250 ms timer fires on the event loop (signalling, pacing and audio all share it)",
            buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.encoder_batch = Histogram(
            "s2f_encoder_batch_partials",
            "Partials per batched encoder run (calls' partials run together; each waits for its refinement)",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
            registry=r,
        )
        self.encoder_cpu = Counter("s2f_encoder_cpu_seconds", "Thread CPU of the batched encoder runs", registry=r)
        self.assistant_sessions = Gauge(
            "s2f_live_assistant_sessions", "Assistant websocket sessions open", registry=r, multiprocess_mode="livesum"
        )
        self.assistant_sessions_total = Counter("s2f_assistant_sessions", "Assistant websocket sessions admitted", registry=r)
        self.assistant_frames_sent = Counter("s2f_assistant_frames_sent", "Frames sent on assistant websockets", registry=r)
        self.avatar_requests = Counter("s2f_avatar_requests", "POST /v1/avatar by outcome", ["outcome"], registry=r)
        self.closed_sessions = Counter("s2f_closed_sessions", "Calls closed, by reason", ["reason"], registry=r)

    def encoded(self, batch: int, cpu_seconds: float) -> None:
        """One encoder run (called from the model executor; prometheus_client is thread-safe)."""
        self.encoder_batch.observe(batch)
        self.encoder_cpu.inc(cpu_seconds)

    def bind_fps(self, fn: Callable[[], float]) -> None:
        if self._multiprocess_dir:  # a function is not a value another worker can read
            self._fps = fn
        else:
            self.fps_delivered.set_function(fn)

    def refresh(self) -> None:
        """Write the computed gauges where the other workers can read them (multiprocess mode)."""
        if self._fps is not None:
            self.fps_delivered.set(self._fps())

    def render(self) -> bytes:
        if self._multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self._multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)
