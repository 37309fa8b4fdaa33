"""Per-client rate limits: one client cannot spend the server on offers or uploads.

A token bucket per client address and kind of request: ``per_minute`` tokens refill
evenly, up to a burst of a quarter minute's worth, and each request takes one. An empty
bucket answers 429 with the seconds until the next token as ``Retry-After``. Failed
requests cost a token too: a client fuzzing ``/offer`` is slowed like one flooding it.

Clients are told apart by their address, so everyone behind one proxy shares a bucket;
raise the limits (``--offers-per-minute``, ``--uploads-per-minute``; 0 turns a limit off)
for such deployments. The table is bounded: past ``max_clients`` the stalest entries go
(a forgotten client starts with a full bucket, which is what it would have by now anyway).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable

from .errors import HttpError


class RateLimiter:
    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic, max_clients: int = 4096) -> None:
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = max(1.0, per_minute / 4.0)
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, client: str, what: str = "requests") -> None:
        """Spend one token of ``client``'s, or raise HttpError(429) with Retry-After."""
        if not self.enabled:
            return
        now = self._clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._remember(client, tokens, now)
            wait = max(1, math.ceil((1.0 - tokens) / self.rate))
            raise HttpError(f"too many {what} from this client; retry in {wait} s", 429, {"Retry-After": str(wait)})
        self._remember(client, tokens - 1.0, now)

    def _remember(self, client: str, tokens: float, now: float) -> None:
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
