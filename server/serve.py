"""``speech2face serve``: run the app until SIGTERM/SIGINT, then close every peer and exit 0.

With ``--workers N`` (default: one per core) this process is a small supervisor and each
worker is this same command in a child process (server/workers.py says how they share the
port, the budget and the metrics). Thread counts are pinned before the engine imports
torch/onnxruntime: on a small shared machine two inference threads per process collapse
throughput and steal the encoder's CPU.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Sequence

from .config import ServerConfig, parse_args
from .errors import install_log_filter
from .workers import WorkerGroup, default_workers, die_with_supervisor, supervise

log = logging.getLogger("speech2face.serve")


def pin_threads() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def fix_mmap_threshold(threshold: int = 64 * 1024) -> None:
    """Serve every video/audio buffer over 64 KiB from mmap, returned to the OS on free.

    glibc raises its mmap threshold each time a large block is freed, after which per-frame
    buffers (a 256 px RGB frame is 192 KiB) come from the heap and fragment it, so RSS
    stays high after callers leave. A fixed threshold turns that adaptation off.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


async def serve(
    config: ServerConfig,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    group: WorkerGroup | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives; always cleans up."""
    from aiohttp import web

    from .app import create_app
    from .runner import make_runner

    app = create_app(config, group=group)
    runner = make_runner(app, header_timeout=config.header_timeout)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, shutdown_timeout=5.0, reuse_port=group is not None)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else config.port  # the real one when --port 0
    if group is not None:  # last: the supervisor reads this socket's existence as "ready"
        await web.UnixSite(runner, str(group.socket_path(group.index)), shutdown_timeout=5.0).start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    log.info(
        "serving on http://%s:%d/ (budget %d calls, %d px @ %g fps)",
        config.host,
        port,
        config.session_budget,
        config.size,
        config.fps,
    )
    if group is None:  # the supervisor says it once for all workers
        print(f"speech2face: serving on http://{config.host}:{port}/", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        log.info("shutting down: closing every peer")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
        await runner.cleanup()  # on_shutdown closes the calls; on_cleanup stops the executor


def _log_setup(config: ServerConfig) -> None:
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    install_log_filter()


def run(config: ServerConfig, argv: Sequence[str] = ()) -> int:
    """Blocking entry for the CLI; returns the process exit code."""
    _log_setup(config)
    group = WorkerGroup.from_env()
    workers = config.workers or default_workers()
    if group is None and workers > 1:
        return supervise(argv, config.host, config.port, workers, config.janus)
    if group is not None:
        die_with_supervisor()
    pin_threads()
    fix_mmap_threshold()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    from .oneshot import shutdown_workers

    try:
        asyncio.run(serve(config, group=group))
    finally:
        shutdown_workers()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = parse_args(argv)
    except ValueError as exc:
        print(f"speech2face serve: error: {exc}", file=sys.stderr)
        return 2
    return run(config, argv)


if __name__ == "__main__":
    raise SystemExit(main())
