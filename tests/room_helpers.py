"""The real server app with its rooms on an ephemeral loopback port, Janus started by the
server from our config (the same path as ``make run``), and the voices the room tests use."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from server import ice
from server.config import ServerConfig
from tests import voices
from tests.server_helpers import read_wav_16k, start_app, to_48k, use_loopback


@contextlib.asynccontextmanager
async def serving_rooms(engine: Any, config: ServerConfig) -> AsyncIterator[tuple[str, Any, Any]]:
    """Yields (base_url, ServerState, RoomService) once Janus is up."""
    from server.app import create_app
    from server.rooms import ROOMS
    from server.state import STATE

    use_loopback()
    app = create_app(config, engine=engine)
    runner, url = await start_app(app, config.header_timeout)
    try:
        svc = app[ROOMS]
        assert await svc.supervisor.wait_up(15.0), svc.supervisor.status()
        yield url, app[STATE], svc
    finally:
        await runner.cleanup()


#: eight different synthetic voices (four female, four male), one per participant
ROOM_VOICES = (
    "espeak-en-us-f3",
    "mbrola-us2",
    "espeak-en-m3",
    "mbrola-us1",
    "espeak-en-f2",
    "mbrola-de2",
    "espeak-fr-m3",
    "mbrola-fr4",
)


def voice_48k(name: str, sentence: int = voices.LONG_SENTENCE_INDEX):
    """A synthetic voice's sentence as 48 kHz mono float (what a microphone would give)."""
    return to_48k(read_wav_16k(voices.synthesize(voices.voice_by_name(name), sentence)))


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every process below ``pid`` (from /proc; Linux)."""
    from pathlib import Path

    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm_end = stat.rindex(")")
        names[int(d.name)] = stat[stat.index("(") + 1 : comm_end]
        ppid = int(stat[comm_end + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append((p, names.get(p, "?")))
        todo += children.get(p, [])
    return out


def descendant_names(pid: int) -> list[str]:
    """The command names of every process below ``pid``."""
    return [name for _, name in descendants(pid)]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def server_process(*args: str, log_path: str | None = None) -> AsyncIterator[tuple[str, Any]]:
    """``speech2face serve`` in its own process (as ``make run`` starts it), rooms and Janus
    included; yields (base_url, Popen) once its engine is loaded and its Janus is up.

    Room sizes of 8 need this: one process serving eight avatars *and* hosting eight
    participants' 112 incoming streams would measure the test's own GIL, not the server.
    """
    import asyncio
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import aiohttp

    use_loopback()  # our participants gather 127.0.0.1 like the server does
    ice.use_patient_consent()  # and, like it, tolerate a peer that answers consent checks late
    ice.use_large_receive_buffers()  # and queue what arrives while its loop is busy
    root = Path(__file__).resolve().parent.parent
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    log = open(log_path or os.devnull, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.serve", "--port", str(port), "--no-frame-events", *args],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 180  # engines load in every worker, on a busy machine
            while True:
                assert proc.poll() is None, "server exited"
                assert time.monotonic() < deadline, "server not ready within 180 s"
                try:
                    async with http.get(url + "/healthz") as r:
                        body = await r.json()
                        workers_ready = all(w["ready"] for w in body.get("workers", []))  # --workers: every one
                        if r.status == 200 and workers_ready and body.get("rooms", {}).get("janus", {}).get("state") == "up":
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
