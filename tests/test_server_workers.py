"""``speech2face serve --workers 2``: two processes, one port, one budget, one /metrics, and
SIGTERM stops both. Real worker processes, real aiortc callers on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from tests.server_helpers import ArrayAudioTrack, Caller, read_wav_16k, to_48k, use_loopback, wait_for

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _health(url: str) -> dict | None:
    """One /healthz on a fresh connection (so SO_REUSEPORT may pick either worker)."""
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async with s.get(url + "/healthz") as r:
                return await r.json() if r.status == 200 else None
    except aiohttp.ClientError:
        return None


def _worker_pids(supervisor: int) -> dict[int, int]:
    """Worker index → pid, from the supervisor's children and the slot each was given."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != supervisor:
                    continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except (OSError, ValueError):
            continue
        slot = env.get(b"_S2F_WORKER")
        if slot:
            out[int(slot.rsplit(b":", 2)[1])] = int(entry)
    return out


async def _answering(url: str, n: int = 2, tries: int = 60) -> set[int]:
    """The worker indices that answer /healthz on the shared port."""
    seen: set[int] = set()
    for _ in range(tries):
        h = await _health(url)
        if h is not None:
            seen.add(h["worker"]["index"])
        if len(seen) == n:
            break
    return seen


async def _read_all(ws) -> None:
    async for _ in ws:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.asyncio
async def test_two_workers_share_port_budget_and_metrics_and_stop_together(speech_wav, tmp_path):
    use_loopback()
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "server.serve", "--workers", "2", "--port", str(port), "--session-budget", "3"]
    log = (tmp_path / "server.log").open("w+")  # the server's output: printed by pytest if the test fails
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    voice = to_48k(read_wav_16k(speech_wav["female"]))
    callers: list[Caller] = []
    try:
        deadline = time.monotonic() + 180  # two engines load on a busy machine
        while len(seen := await _answering(url, tries=8)) < 2:  # both answer on the one port
            assert proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, f"both workers did not become healthy: {seen}"
            await asyncio.sleep(0.3)
        pids = _worker_pids(proc.pid)
        assert sorted(pids) == [0, 1] and pids[0] != pids[1], pids

        async with aiohttp.ClientSession() as session:  # keep-alive: every offer reaches the same worker
            # calls spread across both workers, whichever one the offers reach
            for _ in range(2):
                c = Caller(url, ArrayAudioTrack(voice, loop=True))
                assert (await c.connect(session)).status == 200
                callers.append(c)
            h = await _health(url)
            assert [w["sessions"] for w in h["workers"]] == [1, 1], h
            owners = {c.call_id[:2] for c in callers}
            assert owners == {"00", "01"}, owners  # a call id names its worker
            # the websocket twin: a third call, the budget (3) is the machine's
            async with session.ws_connect(url + "/ws") as ws:
                ws_caller = Caller(url, ArrayAudioTrack(voice, loop=True))
                await ws_caller.pc.setLocalDescription(await ws_caller.pc.createOffer())
                await ws.send_json({"type": "offer", "sdp": ws_caller.pc.localDescription.sdp})
                reply = await ws.receive_json()
                assert reply["type"] == "answer", reply
                ws_caller.call_id = reply["call_id"]
                reader = asyncio.ensure_future(_read_all(ws))  # answers the server's heartbeat pings
                await ws_caller.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
                callers.append(ws_caller)
                assert await wait_for(lambda: all(c.first_frame_at for c in callers), 10.0)
                fourth = Caller(url, ArrayAudioTrack(voice, loop=True))
                resp = await fourth.connect(session)
                assert resp.status == 503 and "full" in (await resp.json())["error"]
                await fourth.close()
                # each call's face is reachable whichever worker the request lands on
                for c in callers:
                    for _ in range(3):
                        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                            r = await s.get(f"{url}/v1/calls/{c.call_id}/avatar?format=png")
                            body = await r.read()
                            assert r.status == 200 and r.content_type == "image/png" and body[:4] == b"\x89PNG", (
                                c.call_id,
                                body[:80],
                            )
                # /metrics aggregates the workers
                text = await (await session.get(url + "/metrics")).text()
                assert "s2f_live_sessions 3.0" in text, text
                assert "s2f_session_budget 3.0" in text and "s2f_rejected_sessions_total 1.0" in text
                sent = [float(line.split()[1]) for line in text.splitlines() if line.startswith("s2f_frames_sent_total")]
                assert sent and sent[0] > 0
                reader.cancel()
            # closing the websocket hangs up its call, in whichever worker it lives
            assert await wait_for(lambda: ws_caller.pc.connectionState in ("closed", "failed"), 10.0)
            h = await _health(url)
            assert sum(w["sessions"] for w in h["workers"]) == 2, h

            # a worker that dies is replaced; its calls died with it and its budget slot is freed
            os.kill(pids[1], signal.SIGKILL)
            deadline = time.monotonic() + 180
            while True:
                fresh = _worker_pids(proc.pid)
                if fresh.get(1) not in (None, pids[1]) and 1 in await _answering(url, tries=10):
                    break
                assert proc.poll() is None and time.monotonic() < deadline, "worker 1 was not restarted"
                await asyncio.sleep(0.5)
            h = await _health(url)
            assert [w["sessions"] for w in h["workers"]] == [1, 0], h
            pids = fresh

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        out = (tmp_path / "server.log").read_text()
        assert code == 0, out
        assert not any(_alive(p) for p in pids.values()), "a worker outlived the supervisor"
        assert "2 workers serving on" in out and "closing: shutdown" in out, out
        assert "Traceback" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in callers:
            await c.close()
        log.close()
        print((tmp_path / "server.log").read_text()[-6000:])


def test_workers_flag_is_validated():
    run = subprocess.run(
        [sys.executable, "-m", "server.serve", "--workers", "0"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "workers must be within 1..64" in run.stderr
    assert "Traceback" not in run.stderr
