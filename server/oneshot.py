"""One-shot requests (an uploaded clip's analysis and picture, a call's PNG/SVG download) run in
a worker process of their own, behind the calls.

Live calls refine their faces every 0.5 s of speech and a person watching notices a late
refinement. An upload of a minute of audio costs seconds of CPU: queued in the calls' model
executor, twenty of them stalled every call's refinements, and a second thread in the
server process is no better — a CPU-bound Python thread holds the GIL in 5 ms slices, and
the event loop that moves every call's packets waits for it at each of its many syscalls
(measured: refinement p95 5 s during a burst, from 0.29 s quiet). So one-shot work leaves
the process: one worker process with its own engine (the same backend), at a lower OS
scheduling priority (nice +10) so the kernel runs the calls first whenever both want a core.

Admission is bounded: past ``capacity`` requests running or waiting, a new one gets 503 +
Retry-After at once instead of a place at the end of a long queue. Each request is one job
(decode, analyse and render together), so uploads finish one after another rather than all
at the end of the burst. The worker starts on first use (or ``warm()``); one worker per
backend is shared by every app in the process, and ``shutdown_workers()`` stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, TypeVar

from .errors import HttpError

log = logging.getLogger("speech2face.oneshot")

T = TypeVar("T")
NICE = 10

_workers: dict[str, ProcessPoolExecutor] = {}
_engine: Any = None  # in the worker process


def _exit_with_parent() -> None:
    """The worker ends when the server that started it is gone, however it went (a crashed or
    killed server, a test process that exited): an orphan would hold an engine's memory forever.
    A poll, not PR_SET_PDEATHSIG: that fires when the *thread* that spawned us exits."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(backend: str) -> None:
    global _engine
    _exit_with_parent()
    try:
        os.nice(NICE)
    except OSError:  # not allowed: still correct, just not favoured
        pass
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    from engines.pipeline import AvatarEngine

    torch.set_num_threads(1)
    _engine = AvatarEngine(backend=backend)


def _ping() -> int:
    return os.getpid()


def _worker(backend: str) -> ProcessPoolExecutor:
    pool = _workers.get(backend)
    if pool is None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_init_worker, initargs=(backend,))
        _workers[backend] = pool
    return pool


def shutdown_workers() -> None:
    """Stop every worker now: a job in flight is for a client that is being disconnected anyway,
    and a worker still loading its engine must not hold up a SIGTERM."""
    while _workers:
        _, pool = _workers.popitem()
        procs = list(getattr(pool, "_processes", {}).values())  # 3.11 has no terminate_workers()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(5)
        # now that its processes are gone, let the pool's manager thread finish, and drop its
        # wake-up pipe from the exit hook's list: Python 3.11's hook writes to every pipe there,
        # closed or not, and printed a traceback at SIGTERM (3.12 checks; private table)
        pool.shutdown(wait=True)
    from concurrent.futures import process as _process

    _process._threads_wakeups.clear()  # every process pool in this server was stopped above


class OneShotQueue:
    def __init__(self, capacity: int, retry_after: int, backend: str) -> None:
        self.capacity = capacity
        self.backend = backend
        self._retry_after = retry_after
        self._admitted = 0
        self.ready = False  # the worker has loaded its engine (warm() finished)

    @property
    def admitted(self) -> int:
        return self._admitted

    def busy(self) -> HttpError:
        return HttpError(
            f"busy with {self._admitted} one-shot requests; retry shortly", 503, {"Retry-After": str(self._retry_after)}
        )

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Admit one request for the duration of the block, or raise HttpError(503)."""
        if self._admitted >= self.capacity:
            raise self.busy()
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the worker process (``fn`` and its arguments must pickle)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(_worker(self.backend), fn, *args)
        except BrokenProcessPool:  # the worker died (killed, out of memory): start afresh next time
            log.error("the one-shot worker process died; restarting it")
            pool = _workers.pop(self.backend, None)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise self.busy() from None

    async def warm(self) -> None:
        """Start the worker and load its engine now rather than on the first upload."""
        await self.run(_ping)
        self.ready = True


# --- jobs (run in the worker: module-level so they pickle by name) ---
def avatar_job(
    data: bytes, max_seconds: float, overrides: dict | None, fmt: str, size: int, seed: str | None = None
) -> tuple[dict, bytes | None]:
    """Decode, analyse and (unless ``fmt`` is json) draw one clip: (``Update.to_json()``, picture)."""
    from engines.audio import AudioError, decode_audio

    try:
        decoded = decode_audio(data, max_seconds=max_seconds)
    except AudioError as exc:
        raise HttpError(str(exc), 415) from None
    except Exception as exc:  # FFmpeg can fail in ways the decoder does not wrap
        raise HttpError(f"cannot decode the audio: {type(exc).__name__}", 415) from None
    if getattr(decoded, "truncated_at_cap", False):
        raise HttpError(f"audio longer than the {max_seconds:g} s limit", 413)
    pcm = getattr(decoded, "pcm", decoded)
    if len(pcm) == 0:
        raise HttpError("the audio is empty", 400)
    try:
        update = _engine.analyze(pcm, overrides=overrides, seed=seed)  # seed: the look (engines/look.py)
    except ValueError as exc:  # e.g. no speech found: the engine's message is for the user
        raise HttpError(str(exc), 422) from None
    return update.to_json(), None if fmt == "json" else render_job(update.params, size, fmt)


def render_job(params: Any, size: int, fmt: str) -> bytes:
    """A face as PNG or SVG bytes."""
    from engines.render import render_png, render_svg

    return render_png(params, size) if fmt == "png" else render_svg(params, size).encode()
