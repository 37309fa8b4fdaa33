"""Admission control, a vanishing caller, and SIGTERM: the server protects live calls and
cleans up after every way a call can end."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from server.config import ServerConfig
from tests.server_helpers import ArrayAudioTrack, Caller, read_wav_16k, serving, to_48k, use_loopback, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def voice48k(speech_wav):
    return to_48k(read_wav_16k(speech_wav["female"]))


@pytest_asyncio.fixture
async def server(onnx_engine):
    async with serving(onnx_engine, ServerConfig(port=0, session_budget=2, retry_after=7)) as served:
        yield served


@pytest.mark.asyncio
async def test_budget_two_third_gets_503_and_live_calls_keep_fps(server, voice48k):
    url, state = server
    callers = [Caller(url, ArrayAudioTrack(voice48k, loop=True)) for _ in range(2)]
    async with aiohttp.ClientSession() as session:
        for c in callers:
            assert (await c.connect(session)).status == 200
        assert await wait_for(lambda: all(c.first_frame_at for c in callers), 5.0)
        third = Caller(url, ArrayAudioTrack(voice48k, loop=True))
        resp = await third.connect(session)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "7"
        assert "full" in (await resp.json())["error"]
        await third.close()
        # the two live calls keep their frame rate
        counts = [len(c.result.video_times) for c in callers]
        await asyncio.sleep(3.0)
        fps = [(len(c.result.video_times) - n) / 3.0 for c, n in zip(callers, counts)]
        assert all(f >= 12.0 for f in fps), fps
        metrics = await (await session.get(url + "/metrics")).text()
        assert "s2f_rejected_sessions_total 1.0" in metrics
        assert "s2f_live_sessions 2.0" in metrics
        # a slot frees when a caller leaves
        await callers[0].close()
        assert await wait_for(lambda: len(state.calls) == 1, 5.0)
        again = Caller(url, ArrayAudioTrack(voice48k, loop=True))
        assert (await again.connect(session)).status == 200
        assert await wait_for(lambda: again.first_frame_at is not None, 5.0)
        await again.close()
    await callers[1].close()
    assert await wait_for(lambda: not state.calls and state.admission.in_use == 0, 5.0)


@pytest.mark.asyncio
async def test_vanishing_caller_is_freed_within_5s(server, voice48k):
    url, state = server
    caller = Caller(url, ArrayAudioTrack(voice48k, loop=True))
    async with aiohttp.ClientSession() as session:
        assert (await caller.connect(session)).status == 200
        assert await wait_for(lambda: caller.first_frame_at is not None, 5.0)
        assert await wait_for(lambda: caller.result.status, 3.0)
        (call,) = state.calls.values()
        pc_ref, track_ref, call_ref = weakref.ref(call.pc), weakref.ref(call.video), weakref.ref(call)
        call_id = call.id
        del call
        await caller.vanish()
        t0 = time.monotonic()
        assert await wait_for(lambda: not state.calls, 5.0), "vanished caller still holds a call after 5 s"
        freed_after = time.monotonic() - t0
        assert call_ref().close_reason == "idle"
        assert pc_ref().connectionState == "closed"
        assert track_ref().readyState == "ended"
        assert state.admission.in_use == 0
        leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith(f"call-{call_id}")]
        assert not leftover, leftover
        metrics = await (await session.get(url + "/metrics")).text()
        assert "s2f_live_sessions 0.0" in metrics
    await caller.close()
    await asyncio.sleep(0.2)
    gc.collect()
    assert call_ref() is None, f"call object still referenced: {gc.get_referrers(call_ref())[:3]}"
    assert freed_after < 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.asyncio
async def test_sigterm_closes_peers_and_exits_cleanly(voice48k):
    use_loopback()
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", S2F_SESSION_BUDGET="3", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        # one process here; two workers and SIGTERM: tests/test_server_workers.py
        [sys.executable, "-m", "server.serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    caller = Caller(url, ArrayAudioTrack(voice48k, loop=True))
    try:
        async with aiohttp.ClientSession() as session:

            async def healthy() -> bool:
                try:
                    return (await session.get(url + "/healthz")).status == 200
                except aiohttp.ClientError:
                    return False

            deadline = time.monotonic() + 90  # the engine loads while other work shares two cores
            while not await healthy():
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not become healthy"
                await asyncio.sleep(0.2)
            assert (await caller.connect(session)).status == 200
            assert await wait_for(lambda: caller.first_frame_at is not None, 5.0)
        proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(None, proc.wait, 15)
        out = proc.stdout.read().decode()
        assert code == 0, out
        assert "closing: shutdown" in out, out
        assert "Traceback" not in out, out
        # the peer saw the server hang up (DTLS close), not a silent drop
        assert await wait_for(lambda: caller.pc.connectionState in ("closed", "failed"), 5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await caller.close()
