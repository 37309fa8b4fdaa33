"""Benchmark assistant avatars (``/v1/assistant``) against a bare aiortc stream and our live call, in one run.

Three servers run side by side as separate processes: ours serving N assistant websocket
sessions (TTS speech in, JPEG frames out), ours serving N live calls (WebRTC, VP8), and the
bare aiortc server of ``bench_server.py`` (drains audio, sends a trivial frame), all at the
same size and fps. Server CPU is read from /proc over the same window, so load on the
machine hits all three alike. Then one more assistant session, alone (the load's own
clients share this process and would delay its event loop), measures what a voice agent
feels:

- latency from the first PCM message to the first frame whose mouth is open (target ≤ one
  frame period + 20 ms);
- the audio/video offset at the consumer: the client "plays" the audio from the moment
  ``playback_started`` arrives, and the mouth of each frame, placed at its arrival time, is
  cross-correlated with the energy of the audio playing then (target within ±1 frame);
- interruption: ``clear`` → ``playback_finished`` (interrupted) and → the first closed-mouth
  frame, p95.

    python bench/bench_assistant.py --sessions 4 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bench.bench_server import cpu_seconds, free_port, speech_16k, speech_48k, stop_servers, wait_healthy  # noqa: E402

RATE = 24_000


def tts_audio() -> np.ndarray:
    """The bench speech as a TTS engine hands it over: int16 mono at 24 kHz, leading silence cut."""
    from tests.server_helpers import to_rate

    pcm = to_rate(speech_16k(), RATE)
    loud = np.flatnonzero(np.abs(pcm) > 0.05 * 32768)
    return pcm[loud[0] :]


def energy_db(pcm: np.ndarray, starts: np.ndarray, window: float) -> np.ndarray:
    from tests.server_helpers import envelope_db

    return envelope_db(pcm, np.asarray(starts) + window, window=window, rate=RATE)


class Assistant:
    """One websocket client: sends TTS in segments like a voice agent, records what comes back."""

    def __init__(self, ws, speech: np.ndarray, fps: float) -> None:
        self.ws = ws
        self.speech = speech
        self.period = 1.0 / fps
        self.frames: list[float] = []
        self.events: list[tuple[float, dict]] = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        import aiohttp

        async for msg in self.ws:
            now = time.monotonic()
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.frames.append(now)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append((now, json.loads(msg.data)))

    async def talk(self, segment_s: float = 4.0, pause_s: float = 1.0, offset: float = 0.0) -> None:
        """Speak segment after segment (audio sent in 200 ms pieces, a little ahead of real time)."""
        n, piece = int(segment_s * RATE), int(0.2 * RATE)
        pos = int(offset * RATE) % (len(self.speech) - n)
        while True:
            seg = self.speech[pos : pos + n]
            pos = (pos + n) % (len(self.speech) - n)
            for i in range(0, len(seg), piece):
                await self.ws.send_bytes(seg[i : i + piece].tobytes())
                await asyncio.sleep(0.15)
            await self.ws.send_json({"type": "end"})
            await asyncio.sleep(segment_s - 0.15 * (len(seg) / piece) + pause_s)

    def wait_event(self, kind: str, after: float, pred=lambda e: True):
        return next(((t, e) for t, e in self.events if t >= after and e["type"] == kind and pred(e)), None)


async def until(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.002)
    return bool(pred())


async def probe(session, url: str, speech: np.ndarray, fps: float, rounds: int) -> dict:
    """Latency to an open mouth, A/V offset at the consumer, interruption — on one fresh session."""
    ws = await session.ws_connect(url.replace("http://", "ws://") + "/v1/assistant")
    await ws.send_json({"type": "start", "sample_rate": RATE, "fps": fps, "seed": "bench-probe", "frame_events": True})
    a = Assistant(ws, speech, fps)
    period = 1.0 / fps
    await until(lambda: len(a.frames) > 10, 10.0)
    open_ms, clear_ms, closed_ms, offsets, label_offsets = [], [], [], [], []
    lags = np.arange(-5, 6)
    rng = np.random.default_rng(0)

    def best_lag(mouth: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> float:
        scores = [np.corrcoef(mouth, np.clip(energy_db(seg, starts + k * period, period), -60, 0))[0, 1] for k in lags]
        return float(lags[int(np.nanargmax(scores))]) * period * 1000

    def talking(e: dict) -> bool:
        return e["t"] is not None and e["mouth"] > 0

    def shut(e: dict) -> bool:
        return e["t"] is None and e["mouth"] == 0

    async def first(kind: str, after: float, pred=lambda e: True):
        await until(lambda: a.wait_event(kind, after, pred) is not None, 5.0)
        return a.wait_event(kind, after, pred)

    # utterances that start with speech, as a TTS segment does: cut just before a loud sample
    loud = np.flatnonzero(np.abs(speech[: len(speech) - int(2.5 * RATE)]) > 0.1 * 32768)
    for r in range(rounds):
        s0 = max(0, int(loud[np.searchsorted(loud, (r * 0.7 * RATE) % loud[-1])]) - int(0.005 * RATE))
        seg = speech[s0 : s0 + int(2.5 * RATE)]
        await asyncio.sleep(0.5 + rng.uniform(0.0, period))  # idle; a random phase against the frame clock
        sent = time.monotonic()
        await ws.send_bytes(seg.tobytes())  # the whole utterance at once, as a fast TTS would
        opened = await first("frame", sent, talking)
        if opened:
            open_ms.append(1000 * (opened[0] - sent))
        await asyncio.sleep(1.8)
        cleared = time.monotonic()
        await ws.send_json({"type": "clear"})
        fin = await first("playback_finished", cleared)
        closed = await first("frame", cleared, shut)
        if fin and closed:
            clear_ms.append(1000 * (fin[0] - cleared))
            closed_ms.append(1000 * (closed[0] - cleared))
        # A/V offset at the consumer: audio plays from playback_started; each frame shows at its arrival
        started = a.wait_event("playback_started", sent)
        frames = [(t, e) for t, e in a.events if e["type"] == "frame" and started and started[0] <= t < cleared]
        labelled = [(t, e) for t, e in frames if e["t"] is not None]
        if len(labelled) > 20:
            mouth = np.array([e["mouth"] for _, e in labelled])
            offsets.append(best_lag(mouth, np.array([t - started[0] for t, _ in labelled]), seg))
            # and by the frames' own labels (t, counted from this utterance's first sample): must be 0
            pos = np.array([e["t"] for _, e in labelled])
            label_offsets.append(best_lag(mouth, pos - pos[0], seg))
    await ws.close()
    a.reader.cancel()

    def stats(v: list[float]) -> dict | None:
        return (
            {
                "p50": round(float(np.median(v)), 1),
                "p95": round(float(np.percentile(v, 95)), 1),
                "max": round(max(v), 1),
                "n": len(v),
            }
            if v
            else None
        )

    return {
        "first_pcm_to_open_mouth_ms": stats(open_ms),
        "open_mouth_target_ms": round(1000 * period + 20, 1),
        "av_offset_at_consumer_ms": stats(offsets),
        "av_offset_by_frame_labels_ms": stats(label_offsets),
        "clear_to_playback_finished_ms": stats(clear_ms),
        "clear_to_closed_mouth_ms": stats(closed_ms),
    }


async def measure(args: argparse.Namespace) -> dict:
    import aiohttp

    from tests.server_helpers import ArrayAudioTrack, Caller, use_loopback

    use_loopback()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    ports = {"assistant": free_port(), "call": free_port(), "bare": free_port()}

    def ours(port: int, extra: list[str]) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "server.serve", "--port", str(port), "--size", str(args.size), "--fps", str(args.fps)]
        cmd += ["--session-budget", str(args.sessions + 2), "--log-level", "warning", *extra]
        cmd += ["--workers", "1"]  # one process against the one bare process (CPU is read from this pid)
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)

    procs = {
        "assistant": ours(ports["assistant"], []),
        # the call's face settles before the window, as an assistant's fixed face is settled
        "call": ours(ports["call"], ["--max-speech-seconds", "2"]),
        "bare": subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "bench_server.py"), "--bare-server", "--port", str(ports["bare"])]
            + ["--size", str(args.size), "--fps", str(args.fps)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        ),
    }
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    tasks: list[asyncio.Task] = []
    try:
        for n in urls:
            await wait_healthy(urls[n], procs[n])
        speech = tts_audio()
        voice48 = speech_48k()
        async with aiohttp.ClientSession() as session:
            assistants: list[Assistant] = []
            callers: dict[str, list[Caller]] = {"call": [], "bare": []}
            for i in range(args.sessions):
                ws = await session.ws_connect(urls["assistant"].replace("http://", "ws://") + "/v1/assistant")
                await ws.send_json(
                    {"type": "start", "sample_rate": RATE, "size": args.size, "fps": args.fps, "seed": f"bench-{i}"}
                )
                a = Assistant(ws, speech, args.fps)
                assistants.append(a)
                tasks.append(asyncio.ensure_future(a.talk(offset=1.3 * i)))
                for name in ("call", "bare"):
                    c = Caller(urls[name], ArrayAudioTrack(voice48, loop=True, lead_silence=0.02 * i))
                    resp = await c.connect(session)
                    if resp.status != 200:
                        raise RuntimeError(f"{name} refused a caller: {resp.status} {await resp.text()}")
                    callers[name].append(c)
            ok = await until(
                lambda: all(a.frames for a in assistants) and all(c.first_frame_at for cs in callers.values() for c in cs), 20
            )
            if not ok:
                raise RuntimeError("not every session got a first frame within 20 s")
            await asyncio.sleep(args.warmup)
            cpu0 = {n: cpu_seconds(p.pid) for n, p in procs.items()}
            n0 = {
                "assistant": [len(a.frames) for a in assistants],
                **{n: [len(c.result.video_times) for c in cs] for n, cs in callers.items()},
            }
            t0 = time.monotonic()
            await asyncio.sleep(args.seconds)
            wall = time.monotonic() - t0
            cpu = {n: cpu_seconds(p.pid) - cpu0[n] for n, p in procs.items()}
            got = {
                "assistant": [len(a.frames) for a in assistants],
                **{n: [len(c.result.video_times) for c in cs] for n, cs in callers.items()},
            }
            fps = {n: float(np.mean([(b - a) / wall for a, b in zip(n0[n], got[n])])) for n in got}
            for t in tasks:
                t.cancel()
            for a in assistants:
                await a.ws.close()
            for cs in callers.values():
                for c in cs:
                    await c.close()
            # the probe runs alone: on a small shared machine the load's own clients (VP8 decoders
            # in this process) would delay its event loop more than the server delays the frames
            probed = await probe(session, urls["assistant"], speech, args.fps, args.rounds)
    finally:
        for t in tasks:
            t.cancel()
        stop_servers(procs.values())
    per = {n: cpu[n] / wall / args.sessions for n in cpu}
    return {
        "size": args.size,
        "fps": args.fps,
        "sessions_per_server": args.sessions,
        "seconds": round(wall, 1),
        "cpu_per_stream_core_fraction": {n: round(v, 4) for n, v in per.items()},
        "ratio_assistant_vs_bare": round(per["assistant"] / per["bare"], 3),
        "ratio_assistant_vs_call": round(per["assistant"] / per["call"], 3),
        "streams_per_core": {n: round(1.0 / v, 1) for n, v in per.items()},
        "fps_delivered_mean": {n: round(v, 2) for n, v in fps.items()},
        **probed,
        "machine": {"cpus": os.cpu_count(), "loadavg_after": open("/proc/loadavg").read().split()[:3]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=4, help="sessions per server (assistants, calls, bare streams)")
    p.add_argument("--seconds", type=float, default=20.0, help="CPU measurement window")
    p.add_argument("--warmup", type=float, default=6.0)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--rounds", type=int, default=8, help="latency / interruption probes")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    res = asyncio.run(measure(args))
    c = res["cpu_per_stream_core_fraction"]
    print(f"{args.sessions} sessions per server, {args.size} px @ {args.fps:g} fps, {res['seconds']} s window")
    print(
        f"  CPU per stream: assistant {100 * c['assistant']:.1f} % of a core, live call {100 * c['call']:.1f} %, "
        f"bare aiortc {100 * c['bare']:.1f} % → assistant/bare {res['ratio_assistant_vs_bare']:.2f}×, "
        f"assistant/call {res['ratio_assistant_vs_call']:.2f}×"
    )
    print(f"  streams per core: {res['streams_per_core']}")
    print(f"  fps delivered: {res['fps_delivered_mean']}")
    print(f"  first PCM → open mouth (ms): {res['first_pcm_to_open_mouth_ms']} (target ≤ {res['open_mouth_target_ms']})")
    print(f"  A/V offset at the consumer (ms): {res['av_offset_at_consumer_ms']} (target within ±{1000 / args.fps:.0f})")
    print(f"  A/V offset by frame labels (ms): {res['av_offset_by_frame_labels_ms']}")
    print(f"  clear → playback_finished (ms): {res['clear_to_playback_finished_ms']}")
    print(f"  clear → closed mouth (ms): {res['clear_to_closed_mouth_ms']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
