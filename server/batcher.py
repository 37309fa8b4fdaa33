"""One model queue for every call: pushes that arrive together run as one encoder batch.

The voice encoder is an LSTM whose cost at batch 1 is dominated by streaming its weights
through the cache at every frame; a batch of four partials costs about 2.4x less each. So
instead of each call sending its own push to the model executor, calls hand their audio to
this batcher, which waits a few milliseconds for company and runs ``engine.push_many`` once
for everyone. A call never waits more than ``window`` longer than it would alone, and a
pipeline is never in two batches at once (each call awaits its push before the next).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any, Callable

import numpy as np

log = logging.getLogger("speech2face.batcher")


class ModelBatcher:
    def __init__(
        self,
        engine: Any,
        executor: Executor,
        window: float = 0.15,
        max_batch: int = 16,
        on_encode: Callable[[int, float], None] | None = None,
    ) -> None:
        self._engine = engine
        self._on_encode = on_encode
        self._executor = executor
        self._window = window
        self._max_batch = max_batch
        self._queue: list[tuple[Any, np.ndarray, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self._task.set_name("model-batcher")

    async def push(self, pipeline: Any, pcm: np.ndarray) -> Any:
        """The pipeline's Update (or None), computed in a shared batch."""
        if self._task is None or self._task.done():
            raise RuntimeError("the model batcher is not running")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((pipeline, pcm, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if len(self._queue) < self._max_batch:
                await asyncio.sleep(self._window)  # let the other calls' pushes join
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            if not self._queue:
                self._wake.clear()
            live = [(p, pcm, f) for p, pcm, f in batch if not f.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(
                    self._executor, self._engine.push_many, [(p, pcm) for p, pcm, _ in live], self._on_encode
                )
            except asyncio.CancelledError:
                for _, _, f in live:
                    f.cancel()
                raise
            except Exception as exc:  # one bad batch must not take the batcher down
                log.exception("model batch failed")
                for _, _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            for (_, _, f), result in zip(live, results):
                if f.done():
                    continue
                if isinstance(result, Exception):  # that caller's failure only
                    f.set_exception(result)
                else:
                    f.set_result(result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for _, _, f in self._queue:
            f.cancel()
        self._queue.clear()
