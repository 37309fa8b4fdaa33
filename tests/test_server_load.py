"""Bounded load on loopback: N callers (S2F_LOAD_PEERS, default 10; 50 for the long run)
talk for S2F_LOAD_SECONDS (default 30) to a server in its own process. All get frames, and
the server's RSS returns near its baseline after they leave (no per-call leak).

    S2F_LOAD_PEERS=50 S2F_LOAD_SECONDS=30 pytest tests/test_server_load.py
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.server_helpers import ArrayAudioTrack, Caller, read_wav_16k, rss_bytes, to_48k, use_loopback, wait_for

ROOT = Path(__file__).resolve().parent.parent
PEERS = int(os.environ.get("S2F_LOAD_PEERS", "10"))
SECONDS = float(os.environ.get("S2F_LOAD_SECONDS", "30"))


async def _healthy(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url + "/healthz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def _metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")


def _log_tail(path: Path, lines: int = 40) -> str:
    """The server's last log lines, for a failure message (calls that began closing and never finished show here)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no server log: {exc})"


@pytest.mark.asyncio
async def test_load_n_peers(speech_wav, tmp_path):
    use_loopback()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    # port 0: the server binds a free port and prints it, so no other process can answer in its place;
    # all callers come from 127.0.0.1, so the per-client offer limit is off for this test
    log_path = Path(os.environ.get("S2F_LOAD_LOG") or tmp_path / "server.log")
    flags = ["--port", "0", "--session-budget", str(PEERS + 2), "--no-frame-events", "--offers-per-minute", "0"]
    proc = subprocess.Popen(
        # one process: its RSS is what is measured (two workers: tests/test_server_workers.py)
        [sys.executable, "-m", "server.serve", *flags, "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log_path, "w"),
    )
    line = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline), 90)
    url = line.decode().strip().rsplit(" ", 1)[-1].rstrip("/")
    assert url.startswith("http://127.0.0.1:"), line
    voices = [to_48k(read_wav_16k(p)) for p in (speech_wav["female"], speech_wav["male"])]
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while not await _healthy(session, url):
                assert proc.poll() is None, "server exited"
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            # warm-up wave of PEERS short calls: codec/model first-use allocations and the
            # allocator's per-thread arenas reach their plateau before the baseline is taken
            # (measured: RSS after a wave sits 35-60 MiB over a one-call baseline and stays
            # there wave after wave - a plateau, not a leak; a leak grows with every wave)
            warm = [Caller(url, ArrayAudioTrack(voices[i % 2], loop=True), frame_events=False) for i in range(PEERS)]
            for c in warm:
                assert (await c.connect(session)).status == 200
            assert await wait_for(lambda: all(c.first_frame_at for c in warm), 15.0)
            await asyncio.sleep(5.0)
            for c in warm:
                await c.close()
            deadline = time.monotonic() + 20 + PEERS  # hang-ups queue behind every call's teardown on a busy loop
            while await _metric(session, url, "s2f_live_sessions") > 0:
                assert time.monotonic() < deadline, "warm-up calls not released\n" + _log_tail(log_path)
                await asyncio.sleep(0.25)
            await asyncio.sleep(2.0)
            baseline = rss_bytes(proc.pid)

            callers = [Caller(url, ArrayAudioTrack(voices[i % 2], loop=True), frame_events=False) for i in range(PEERS)]
            for c in callers:  # staggered joins, as real callers arrive
                assert (await c.connect(session)).status == 200
                await asyncio.sleep(0.05)
            assert await wait_for(lambda: all(c.first_frame_at for c in callers), 15.0), [
                c.first_frame_at is not None for c in callers
            ]
            t0 = time.monotonic()
            counts = [len(c.result.video_times) for c in callers]
            peak = baseline
            while time.monotonic() - t0 < SECONDS:
                await asyncio.sleep(1.0)
                peak = max(peak, rss_bytes(proc.pid))
            elapsed = time.monotonic() - t0
            fps = np.array([(len(c.result.video_times) - n) / elapsed for c, n in zip(callers, counts)])
            async with session.get(url + "/healthz") as r:
                health = await r.json()
            live = health["sessions"]
            connected = sum(c.pc.connectionState == "connected" for c in callers)
            gauge = await _metric(session, url, "s2f_live_sessions")
            for c in callers:
                await c.close()
            released_t0 = time.monotonic()
            deadline = released_t0 + 20 + PEERS  # generous: callers and server share two busy cores here
            while await _metric(session, url, "s2f_live_sessions") > 0:
                assert time.monotonic() < deadline, "calls not released\n" + _log_tail(log_path)
                await asyncio.sleep(0.25)
            released = time.monotonic() - released_t0
            await asyncio.sleep(2.0)
            after = rss_bytes(proc.pid)
        print(
            f"\n{PEERS} peers × {elapsed:.0f} s: fps min {fps.min():.1f} mean {fps.mean():.1f}; "
            f"RSS baseline {baseline / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB, after {after / 2**20:.0f} MiB; "
            f"all released {released:.1f} s after hang-up; live during load {live} (gauge {gauge}), "
            f"client peers connected {connected}"
        )
        # The peer counts are printed, not asserted: on the shared 2-core box the callers'
        # own process (PEERS VP8 decoders) is starved as well and aiortc client peers were
        # seen flapping their reported state; what is asserted is that every caller kept
        # receiving frames at a usable rate for the whole window.
        assert fps.min() > 3.0, fps  # every caller gets frames (the 2-core CI box is shared with the callers)
        # near baseline: allocator arenas keep a little, a per-call leak would keep ~(peak-baseline)
        assert after - baseline < max(40 * 2**20, 0.25 * (peak - baseline)), (baseline, peak, after)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
