"""One-shot requests (an uploaded clip's analysis and picture, a call's PNG/SVG download) queue
apart from the calls, and behind them.

Live calls refine their faces in the model executor every 0.5 s of speech; a person
watching notices a refinement that is late. An upload of a minute of audio costs seconds of
CPU, and twenty at once used to queue in that same executor in front of every call's next
refinement (3 refinements over 2 s in a burst). Here one-shot work has its own worker
thread, at a lower OS scheduling priority (nice +10 for that thread only), so the kernel
runs the calls' work first whenever both want a core, and a bounded admission count: past
``capacity`` requests running or waiting, a new one gets 503 + Retry-After at once instead
of a place at the end of a long queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, TypeVar

from .errors import HttpError

log = logging.getLogger("speech2face.oneshot")

T = TypeVar("T")
NICE = 10


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)  # Linux: this thread only
    except (OSError, AttributeError):  # not Linux, or not allowed: still correct, just not favoured
        log.debug("could not lower the one-shot worker's priority", exc_info=True)


class OneShotQueue:
    def __init__(self, capacity: int, retry_after: int, workers: int = 1) -> None:
        self.capacity = capacity
        self._retry_after = retry_after
        self._admitted = 0
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s2f-oneshot", initializer=_lower_priority)

    @property
    def admitted(self) -> int:
        return self._admitted

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Admit one request for the duration of the block, or raise HttpError(503)."""
        if self._admitted >= self.capacity:
            raise HttpError(
                f"busy with {self._admitted} one-shot requests; retry shortly", 503, {"Retry-After": str(self._retry_after)}
            )
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
