"""Benchmark the live call server against a bare aiortc stream, side by side in one run.

Two servers run as separate processes at the same time: ours (``python -m server.serve``:
drain + resample + pipeline + renderer + lip-sync + status events) and a *bare* aiortc
server that drains audio and sends a trivial frame (grey with a moving square) of the
same size and fps. The same number of Python callers, speaking looped speech, join each.
Server CPU is read from /proc over the same window, so machine load hits both alike.

Prints: per-caller CPU (ours vs bare, ratio; target ≤ 1.25×), callers per core at the
tested size/fps, frame slots served per second (ours holds a picture already on screen instead
of sending it again: its callers receive fewer frames than it serves; the share held is
printed), time to first frame (offer POST → first decoded frame), and mouth
latency (server side: arrival of the newest audio → frame carrying its mouth; bound one
frame period + 20 ms).

    python bench/bench_server.py --callers 4 --seconds 30
    python bench/bench_server.py --json results.json

``--suite`` runs the whole table of issue 11, each row a fresh pair of servers: refining at 4
and 8 callers, settled (``--max-speech-seconds`` below the warm-up) and silent callers at 4,
and ours with ``--workers 1`` and ``--workers 2`` at ``--machine-callers``. Ours runs with
``--workers 1`` unless told (one process against the one bare process); with more, the CPU
of the supervisor and every worker is counted. Also printed: the encoder's batch sizes and
CPU per partial as the server reached them (from its /metrics), and, for the workers rows,
callers per machine estimated from the busiest process (a process cannot use more than one
core: aiortc is GIL-bound).

    python bench/bench_server.py --suite --seconds 20 --json suite.json

``--upload-burst N`` measures something else: fair sharing between calls and one-shot
uploads. Our server alone, ``--callers`` (default 2 here) callers talking; the calls'
refinement latency (the server's histogram) over a quiet window, then over a burst of N
parallel ``POST /v1/avatar`` uploads of a long clip; prints both, the uploads' outcomes and
latencies. ``--server-root DIR`` runs the server from another checkout (the "before").

    python bench/bench_server.py --upload-burst 20 --callers 2
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


# ----------------------------------------------------------------------------- bare server
def run_bare_server(port: int, size: int, fps: float) -> None:
    """A minimal aiortc server: drain audio, send a trivial frame. The baseline."""
    import av
    from aiohttp import web
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    from server import ice

    ice.use_loopback_only(True)
    pcs: set[RTCPeerConnection] = set()
    tasks: set[asyncio.Task] = set()

    class TrivialTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._start: float | None = None
            self._n = 0
            self._yuv = np.full((size * 3 // 2, size), 128, np.uint8)

        async def recv(self):
            if self._start is None:
                self._start = time.monotonic()
            else:
                self._n += 1
                wait = self._start + self._n / fps - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            yuv = self._yuv.copy()
            x = (self._n * 4) % (size - 32)
            yuv[size // 2 - 16 : size // 2 + 16, x : x + 32] = 235  # the trivial drawing
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = int(self._n * 90_000 / fps)
            frame.time_base = fractions.Fraction(1, 90_000)
            return frame

    async def drain(track) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.add(pc)

        @pc.on("track")
        def on_track(track) -> None:
            t = asyncio.ensure_future(drain(track))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                pcs.discard(pc)
                await pc.close()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
        pc.addTrack(TrivialTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer", "call_id": str(id(pc))})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "sessions": len(pcs)})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/offer", offer)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await asyncio.gather(*(pc.close() for pc in list(pcs)), return_exceptions=True)
        await runner.cleanup()

    asyncio.run(main())


# ----------------------------------------------------------------------------- driver
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_servers(procs) -> None:
    """SIGTERM every server, then wait for each (15 s) and kill the ones that do not stop."""
    procs = list(procs)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- workers, encoder
def _worker_slot(pid: int) -> str | None:
    """The ``_S2F_WORKER`` slot a supervisor gave this process, if any."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    except OSError:
        return None
    slot = env.get(b"_S2F_WORKER")
    return slot.decode() if slot else None


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of a server, by pid: the process and, under ``--workers``, its worker
    children. The one-shot worker processes (uploads; they load an engine at start-up and are
    idle in this bench) are not the calls' cost and are left out."""
    out = {pid: cpu_seconds(pid)}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            if int(parts[1]) == pid and _worker_slot(int(entry)):
                out[int(entry)] = cpu_seconds(int(entry))
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return out


async def server_counters(session, url: str) -> dict[str, float]:
    """The server's counters: the encoder's runs, partials, CPU seconds and runs by batch
    bucket; the frames sent and the frame slots held (a picture already on screen)."""
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("s2f_encoder_batch_partials_count"):
            out["runs"] = float(line.split()[-1])
        elif line.startswith("s2f_encoder_batch_partials_sum"):
            out["partials"] = float(line.split()[-1])
        elif line.startswith("s2f_encoder_cpu_seconds_total"):
            out["cpu_s"] = float(line.split()[-1])
        elif line.startswith("s2f_frames_sent_total"):
            out["frames_sent"] = float(line.split()[-1])
        elif line.startswith("s2f_frames_held_total"):
            out["frames_held"] = float(line.split()[-1])
        elif line.startswith("s2f_encoder_batch_partials_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out["le_" + le] = float(line.split()[-1])
    return out


def encoder_delta(before: dict[str, float], after: dict[str, float]) -> dict:
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    runs, partials = d.get("runs", 0.0), d.get("partials", 0.0)
    buckets = sorted((float(k[3:]) if k[3:] != "+Inf" else float("inf"), v) for k, v in d.items() if k.startswith("le_"))
    hist, prev = {}, 0.0
    for bound, cum in buckets:
        if cum - prev > 0:
            hist["≤" + (f"{bound:g}" if bound != float("inf") else "inf")] = int(cum - prev)
        prev = cum
    return {
        "runs": int(runs),
        "partials": int(partials),
        "mean_batch": round(partials / runs, 2) if runs else None,
        "cpu_ms_per_partial": round(1000 * d.get("cpu_s", 0.0) / partials, 2) if partials else None,
        "runs_by_batch": hist,
    }


async def worker_spread(url: str, supervisor: int) -> dict[str, dict]:
    """Each answering worker's calls (from /healthz on fresh connections: SO_REUSEPORT picks)
    and pid (the supervisor's child that was given that slot)."""
    import aiohttp

    pids = {}
    for pid in tree_cpu(supervisor):
        slot = _worker_slot(pid)
        if slot:
            pids[slot.rsplit(":", 2)[1]] = pid
    seen: dict[str, dict] = {}
    for _ in range(40):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async with s.get(url + "/healthz") as r:
                h = await r.json()
        if r.status != 200 or "worker" not in h:
            continue
        index = str(h["worker"]["index"])
        seen[index] = {"pid": pids.get(index), "calls": h["worker"]["sessions"]}
        if len(seen) == len(h["workers"]):
            break
    return seen


def machine_capacity(
    per_process: dict[int, float], spread: dict[str, dict], wall: float, callers: int, workers: int
) -> float | None:
    """Callers the machine could hold at this load: each process gets at most one core
    (aiortc is GIL-bound), so the busiest worker sets the pace of all of them."""
    cores = os.cpu_count() or 1
    if workers <= 1:
        busiest = max(per_process.values()) / wall
        return round(min(1, cores) * callers / max(busiest, 1e-9), 1)
    per_worker = [(v["calls"], per_process.get(v["pid"], 0.0) / wall) for v in spread.values()]
    rates = [calls / frac for calls, frac in per_worker if calls and frac > 0]
    if not rates:
        return None
    return round(min(workers, cores) * min(rates), 1)


async def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:  # a loaded machine starts slowly
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server {url} exited with {proc.returncode}")
            try:
                async with s.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {url} not healthy")
            await asyncio.sleep(0.2)


def speech_16k() -> np.ndarray:
    from tests.server_helpers import make_speech_wav, read_wav_16k

    path = Path(os.environ.get("S2F_BENCH_WAV", "/tmp/s2f_bench_speech.wav"))
    if not path.exists():
        make_speech_wav(path, "en+f3")
    return read_wav_16k(path)


def speech_48k() -> np.ndarray:
    from tests.server_helpers import to_48k

    return to_48k(speech_16k())


async def measure(args: argparse.Namespace) -> dict:
    import aiohttp

    from tests.server_helpers import ArrayAudioTrack, Caller, use_loopback

    use_loopback()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    ours_port, bare_port = free_port(), free_port()
    ours_log = tempfile.TemporaryFile("w+")  # our server's log: a traceback in it is a finding
    ours = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.serve",
            "--port",
            str(ours_port),
            "--size",
            str(args.size),
            "--fps",
            str(args.fps),
            "--session-budget",
            str(args.callers + 1),
            "--log-level",
            "warning",
            "--max-speech-seconds",
            str(args.max_speech_seconds),
            "--workers",
            str(getattr(args, "workers", 1)),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=ours_log,
    )
    bare = subprocess.Popen(
        [sys.executable, __file__, "--bare-server", "--port", str(bare_port), "--size", str(args.size), "--fps", str(args.fps)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    urls = {"ours": f"http://127.0.0.1:{ours_port}", "bare": f"http://127.0.0.1:{bare_port}"}
    procs = {"ours": ours, "bare": bare}
    try:
        for name in urls:
            await wait_healthy(urls[name], procs[name])
        workers = getattr(args, "workers", 1)
        deadline = time.monotonic() + 180
        while workers > 1 and len(await worker_spread(urls["ours"], ours.pid)) < workers:  # every worker has its engine
            if time.monotonic() > deadline or ours.poll() is not None:
                raise RuntimeError("our workers did not all become healthy")
            await asyncio.sleep(0.5)
        voice = np.zeros(48_000, np.float32) if getattr(args, "silent", False) else speech_48k()
        callers: dict[str, list[Caller]] = {name: [] for name in urls}
        async with aiohttp.ClientSession() as session:
            for i in range(args.callers):  # interleave joins so both servers warm up alike
                for name, url in urls.items():
                    # only the first caller asks for per-frame mouth telemetry (it costs datachannel
                    # traffic a real browser does not ask for); it supplies the mouth-age figures
                    c = Caller(url, ArrayAudioTrack(voice, loop=True, lead_silence=0.02 * i), frame_events=i == 0)
                    resp = await c.connect(session)
                    if resp.status != 200:
                        raise RuntimeError(f"{name} refused a caller: {resp.status} {await resp.text()}")
                    callers[name].append(c)
            deadline = time.monotonic() + 15
            while not all(c.first_frame_at for cs in callers.values() for c in cs):
                if time.monotonic() > deadline:
                    raise RuntimeError("not every caller got a first frame within 15 s")
                await asyncio.sleep(0.1)
            await asyncio.sleep(args.warmup)
            cpu0 = {n: tree_cpu(p.pid) for n, p in procs.items()}
            encoder0 = await server_counters(session, urls["ours"])
            frames0 = {n: [len(c.result.video_times) for c in cs] for n, cs in callers.items()}
            mouth0 = [len(c.result.frames) for c in callers["ours"]]
            t0 = time.monotonic()
            await asyncio.sleep(args.seconds)
            wall = time.monotonic() - t0
            cpu_by_pid = {n: tree_cpu(p.pid) for n, p in procs.items()}
            cpu = {n: sum(cpu_by_pid[n].values()) - sum(cpu0[n].values()) for n in procs}
            per_process = {pid: c - cpu0["ours"].get(pid, 0.0) for pid, c in cpu_by_pid["ours"].items()}
            counters1 = await server_counters(session, urls["ours"])
            encoder = encoder_delta(encoder0, counters1)
            sent, held = (counters1.get(k, 0.0) - encoder0.get(k, 0.0) for k in ("frames_sent", "frames_held"))
            spread = await worker_spread(urls["ours"], ours.pid) if getattr(args, "workers", 1) > 1 else {}
            fps = {n: [(len(c.result.video_times) - f) / wall for c, f in zip(cs, frames0[n])] for n, cs in callers.items()}
            ages = np.array(
                [f["mouth_age_ms"] for c, m in zip(callers["ours"], mouth0) for f in c.result.frames[m:] if f["audio_t"] > 0]
            )
            ttff = {n: [c.first_frame_at - c.offer_at for c in cs] for n, cs in callers.items()}
            for cs in callers.values():
                for c in cs:
                    await c.close()
    finally:
        stop_servers(procs.values())

    ours_log.seek(0)
    log_text = ours_log.read()
    ours_log.close()
    per_caller = {n: cpu[n] / wall / args.callers for n in cpu}  # fraction of one core
    # frame slots served per second: ours holds a picture already on screen instead of sending
    # it again, so what its callers receive is not what it kept up with; the bare one sends all
    served = {"ours": (sent + held) / wall / args.callers, "bare": float(np.mean(fps["bare"]))}
    period_ms = 1000.0 / args.fps
    return {
        "size": args.size,
        "fps_target": args.fps,
        "max_speech_seconds": args.max_speech_seconds,
        "callers_per_server": args.callers,
        "seconds": round(wall, 1),
        "cpu_per_caller_core_fraction": {n: round(v, 4) for n, v in per_caller.items()},
        "cpu_ratio_ours_vs_bare": round(per_caller["ours"] / per_caller["bare"], 3),
        # a starved server renders and encodes fewer frames: scale each by target/served fps
        # (the model's work does not shrink with fps, so for ours this is an upper bound)
        "cpu_ratio_at_full_fps": round(
            (per_caller["ours"] * args.fps / max(served["ours"], 1e-6))
            / (per_caller["bare"] * args.fps / max(served["bare"], 1e-6)),
            3,
        ),
        "callers_per_core": {n: round(1.0 / v, 1) for n, v in per_caller.items()},
        "fps_served": {n: round(v, 2) for n, v in served.items()},
        "fps_received_mean": {n: round(float(np.mean(v)), 2) for n, v in fps.items()},
        "fps_received_min": {n: round(float(np.min(v)), 2) for n, v in fps.items()},
        "frames_held_share": round(held / (sent + held), 3) if sent + held else None,
        "time_to_first_frame_s": {
            n: {"p50": round(float(np.median(v)), 3), "max": round(float(np.max(v)), 3)} for n, v in ttff.items()
        },
        "mouth_age_ms": {
            "p50": round(float(np.percentile(ages, 50)), 1),
            "p95": round(float(np.percentile(ages, 95)), 1),
            "max": round(float(ages.max()), 1),
            "bound": round(period_ms + 20, 1),
            "within_bound": round(float(np.mean(ages <= period_ms + 20)), 4),
        }
        if ages.size
        else None,
        "machine": {"cpus": os.cpu_count(), "loadavg_after": open("/proc/loadavg").read().split()[:3]},
        "server_log_tracebacks": log_text.count("Traceback"),
        "server_log_errors": [line for line in log_text.splitlines() if " ERROR " in line][:5],
        "silent": bool(getattr(args, "silent", False)),
        "workers": getattr(args, "workers", 1),
        "encoder": encoder,
        "per_process_core_fraction": {str(pid): round(c / wall, 4) for pid, c in per_process.items()},
        "calls_per_worker": spread,
        "callers_per_machine_estimate": machine_capacity(per_process, spread, wall, args.callers, getattr(args, "workers", 1)),
    }


# ----------------------------------------------------------------------------- upload burst
LATENCY_METRIC = "s2f_refinement_latency_seconds"


async def latency_buckets(session, url: str) -> dict[float, float]:
    """Cumulative counts of the refinement latency histogram, by upper bound."""
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    out = {}
    for line in text.splitlines():
        if line.startswith(LATENCY_METRIC + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def bucket_summary(before: dict[float, float], after: dict[float, float]) -> dict:
    """p50/p95 (linear within a bucket, as Prometheus's histogram_quantile) of the window's refinements."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0

    def quantile(q: float) -> float | None:
        if total <= 0:
            return None
        rank, lo, prev = q * total, 0.0, 0.0
        for b, c in zip(bounds, counts):
            if c >= rank:
                if b == float("inf"):
                    return lo
                return lo + (b - lo) * (rank - prev) / max(c - prev, 1e-9)
            lo, prev = b, c
        return lo

    within = dict(zip(bounds, counts)).get(0.5, 0.0)
    return {
        "refinements": int(total),
        "p50_s": None if total <= 0 else round(quantile(0.5), 3),
        "p95_s": None if total <= 0 else round(quantile(0.95), 3),
        "within_0.5s": round(within / total, 4) if total else None,
        "over_1s": int(total - dict(zip(bounds, counts)).get(1.0, 0.0)) if total else 0,
    }


def long_clip(seconds: float = 55.0) -> bytes:
    """About ``seconds`` of speech as a 16 kHz WAV (the bench voice, repeated)."""
    import io
    import wave

    from tests.server_helpers import make_speech_wav, read_wav_16k

    path = Path(os.environ.get("S2F_BENCH_WAV", "/tmp/s2f_bench_speech.wav"))
    if not path.exists():
        make_speech_wav(path, "en+f3")
    one = read_wav_16k(path)
    pcm = np.tile(one, int(np.ceil(seconds * 16_000 / len(one))))[: int(seconds * 16_000)]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype(np.int16).tobytes())
    return buf.getvalue()


async def measure_upload_burst(args: argparse.Namespace) -> dict:
    import aiohttp

    from tests.server_helpers import ArrayAudioTrack, Caller, use_loopback

    use_loopback()
    root = Path(args.server_root).resolve() if args.server_root else ROOT
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    flags = ["--port", str(port), "--session-budget", str(args.callers + 1), "--log-level", "warning"]
    flags += ["--max-upload-seconds", "60"]
    if root == ROOT:  # our checkout: no rate limit for the burst (it comes from one address)
        flags += ["--uploads-per-minute", "0", "--offers-per-minute", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "server.serve", *flags], cwd=root, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    clip = long_clip(args.clip_seconds)
    try:
        await wait_healthy(url, proc)
        voice = speech_48k()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            for _ in range(600):  # our one-shot worker loads its own engine: measure with it ready
                async with session.get(url + "/healthz") as r:
                    if (await r.json()).get("oneshot_worker", "ready") == "ready":
                        break
                await asyncio.sleep(0.5)
            callers = []
            for i in range(args.callers):
                c = Caller(url, ArrayAudioTrack(voice, loop=True, lead_silence=0.1 * i), frame_events=False)
                resp = await c.connect(session)
                if resp.status != 200:
                    raise RuntimeError(f"caller refused: {resp.status} {await resp.text()}")
                callers.append(c)
            await asyncio.sleep(args.warmup)
            b0 = await latency_buckets(session, url)
            await asyncio.sleep(args.seconds)
            b1 = await latency_buckets(session, url)

            async def upload() -> tuple[int, float]:
                t = time.monotonic()
                async with session.post(url + "/v1/avatar?format=png", data=clip) as r:
                    await r.read()
                    return r.status, time.monotonic() - t

            t0 = time.monotonic()
            results = await asyncio.gather(*(upload() for _ in range(args.upload_burst)))
            burst_s = time.monotonic() - t0
            b2 = await latency_buckets(session, url)
            fps = [c.fps() for c in callers]
            for c in callers:
                await c.close()
    finally:
        stop_servers([proc])
    ok = sorted(t for s, t in results if s == 200)
    statuses: dict[str, int] = {}
    for s, _ in results:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    return {
        "server_root": str(root),
        "callers": args.callers,
        "uploads": args.upload_burst,
        "clip_seconds": args.clip_seconds,
        "quiet": bucket_summary(b0, b1),
        "burst": bucket_summary(b1, b2),
        "burst_seconds": round(burst_s, 1),
        "upload_status": statuses,
        "upload_latency_s": {"min": round(ok[0], 2), "p50": round(ok[len(ok) // 2], 2), "max": round(ok[-1], 2)} if ok else None,
        "caller_fps_after": [round(f, 1) for f in fps],
        "machine": {"cpus": os.cpu_count(), "loadavg_after": open("/proc/loadavg").read().split()[:3]},
    }


def print_upload_burst(res: dict) -> None:
    q, b = res["quiet"], res["burst"]
    print(
        f"{res['callers']} callers, {res['uploads']} parallel uploads of a {res['clip_seconds']:g} s clip ({res['server_root']})"
    )
    print(f"  refinement latency, quiet: p50 {q['p50_s']} s, p95 {q['p95_s']} s over {q['refinements']} refinements")
    print(
        f"  refinement latency, burst: p50 {b['p50_s']} s, p95 {b['p95_s']} s over {b['refinements']} refinements; "
        f"within 0.5 s {b['within_0.5s']}, over 1 s {b['over_1s']} (target p95 < 0.5 s)"
    )
    print(f"  uploads: {res['upload_status']} in {res['burst_seconds']} s; latency of the 200s {res['upload_latency_s']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--callers", type=int, default=4, help="callers per server (both servers get this many)")
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds after the last first frame before measuring")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument(
        "--max-speech-seconds",
        type=float,
        default=120.0,
        help="our server refines from this much speech, then the model idles: with a value below "
        "--warmup the window measures the settled stream (lip-sync, blinks, no model work)",
    )
    p.add_argument("--workers", type=int, default=1, help="our server's --workers (the bare one is one process)")
    p.add_argument("--silent", action="store_true", help="callers send silence: what a call costs when nobody speaks")
    p.add_argument("--suite", action="store_true", help="the whole before/after table (several runs; see the docstring)")
    p.add_argument("--machine-callers", type=int, default=8, help="callers for the --workers 1 vs 2 rows of --suite")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--upload-burst", type=int, default=0, help="measure refinement latency during N parallel uploads")
    p.add_argument("--clip-seconds", type=float, default=55.0, help="length of each uploaded clip (--upload-burst)")
    p.add_argument("--server-root", help="run the server from this checkout (--upload-burst; e.g. main, for the before)")
    p.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare_server:
        run_bare_server(args.port, args.size, args.fps)
        return 0
    if args.suite:
        return run_suite(args)
    if args.upload_burst:
        if args.callers == p.get_default("callers"):
            args.callers = 2
        res = asyncio.run(measure_upload_burst(args))
        print_upload_burst(res)
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
        return 0
    res = asyncio.run(measure(args))
    print_result(args, res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


def print_result(args: argparse.Namespace, res: dict) -> None:
    c = res["cpu_per_caller_core_fraction"]
    phase = (
        "silent callers"
        if args.silent
        else "refining (model running)"
        if args.max_speech_seconds > args.warmup
        else "settled face (model idle)"
    )
    if args.workers > 1:
        phase += f", --workers {args.workers}"
    print(
        f"{args.callers} callers per server, {res['size']} px @ {res['fps_target']:g} fps, {res['seconds']} s window, "
        f"ours {phase}"
    )
    print(
        f"  CPU per caller: ours {100 * c['ours']:.1f} % of a core, bare aiortc {100 * c['bare']:.1f} % "
        f"→ ratio {res['cpu_ratio_ours_vs_bare']:.2f}× (target ≤ 1.25×)"
    )
    print(f"  callers per core: ours {res['callers_per_core']['ours']}, bare {res['callers_per_core']['bare']}")
    print(
        f"  frame slots served per second: ours {res['fps_served']['ours']}, bare {res['fps_served']['bare']}; "
        f"ours held {res['frames_held_share']} of them (the picture on screen did not change)"
    )
    print(
        f"  fps received (mean/min): ours {res['fps_received_mean']['ours']}/{res['fps_received_min']['ours']}, "
        f"bare {res['fps_received_mean']['bare']}/{res['fps_received_min']['bare']}"
    )
    print(
        f"  time to first frame p50/max: ours {res['time_to_first_frame_s']['ours']}, bare {res['time_to_first_frame_s']['bare']}"
    )
    print(f"  mouth age (audio arrival → frame): {res['mouth_age_ms']}")
    enc = res["encoder"]
    if enc["runs"]:
        print(
            f"  encoder: {enc['partials']} partials in {enc['runs']} runs, mean batch {enc['mean_batch']}, "
            f"{enc['cpu_ms_per_partial']} ms CPU per partial; runs by batch size {enc['runs_by_batch']}"
        )
    if res["calls_per_worker"]:
        print(
            f"  calls per worker: {res['calls_per_worker']}; CPU per process (core fraction): {res['per_process_core_fraction']}"
        )
    print(f"  callers per machine (estimate from the busiest process): {res['callers_per_machine_estimate']}")
    if res["server_log_tracebacks"]:
        print(f"  our server logged {res['server_log_tracebacks']} tracebacks; first errors: {res['server_log_errors']}")
    starved = [n for n, f in res["fps_served"].items() if f < 0.95 * res["fps_target"]]
    if starved:
        print(
            f"  WARNING: {' and '.join(starved)} delivered under 95 % of {res['fps_target']:g} fps: the machine is saturated "
            f"(load {' '.join(res['machine']['loadavg_after'])}), so the CPU figures understate what that server needs; "
            f"with CPU scaled to full fps the ratio would be {res['cpu_ratio_at_full_fps']:.2f}×"
        )


def run_suite(args: argparse.Namespace) -> int:
    """The issue-11 table: each row its own run, both servers side by side in it."""
    rows = [
        ("refining, 4 callers", dict(callers=4)),
        ("refining, 8 callers", dict(callers=8)),
        ("settled, 4 callers", dict(callers=4, max_speech_seconds=min(4.0, args.warmup / 2))),
        ("silent, 4 callers", dict(callers=4, silent=True)),
        (f"--workers 1, {args.machine_callers} callers", dict(callers=args.machine_callers, workers=1)),
        (f"--workers 2, {args.machine_callers} callers", dict(callers=args.machine_callers, workers=2)),
    ]
    out = {}
    for name, changes in rows:
        run_args = argparse.Namespace(**{**vars(args), "silent": False, "workers": 1, **changes})
        print(f"== {name}", flush=True)
        res = asyncio.run(measure(run_args))
        print_result(run_args, res)
        out[name] = res
    print(
        "\n| run | ours % of a core per caller | bare | ratio | ratio at full fps | fps ours / bare "
        "| callers per core ours / bare | callers per machine (est.) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, res in out.items():
        c, cpc = res["cpu_per_caller_core_fraction"], res["callers_per_core"]
        print(
            f"| {name} | {100 * c['ours']:.1f} | {100 * c['bare']:.1f} | {res['cpu_ratio_ours_vs_bare']:.2f}× "
            f"| {res['cpu_ratio_at_full_fps']:.2f}× | {res['fps_served']['ours']} / {res['fps_served']['bare']} "
            f"| {res['frames_held_share']} "
            f"| {cpc['ours']} / {cpc['bare']} | {res['callers_per_machine_estimate']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
