"""Benchmark rooms: our server's cost per participant as rooms grow, against today's 1:1
stream and a bare aiortc stream measured in the same run; Janus's cost per subscription;
join → first remote avatar; and the audio/video offset a receiving browser sees.

One run, three processes besides this one: our server (``python -m server.serve``, which
starts and supervises its own Janus), a bare aiortc server (bench_server.py's: drains
audio, sends a trivial frame of the same size and fps) and Janus. Participants and callers
live in this process; their video is counted as complete frames without being decoded
(``count_video_without_decoding``) so the client side does not eat the CPU being measured.
Every window measures the settled stream (the face stops refining after
``--max-speech-seconds``), so 1:1 and room figures compare like with like.

The A/V offset: an aiortc participant sends tone bursts into a room, a headless Chromium
joins it through the real page, and JavaScript injected into that page timestamps (a) the
received voice crossing a level threshold (Web Audio, output clock) and (b) the avatar's
mouth region changing in the frames presented (requestVideoFrameCallback,
expectedDisplayTime). offset = video onset − audio onset: positive means the audio came
first (ITU-R BT.1359 accepts −125 … +45 ms).

    python bench/bench_rooms.py                      # rooms of 2, 4, 8; about 4 minutes
    python bench/bench_rooms.py --sizes 2 4 --json out.json
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

from bench.bench_server import cpu_seconds, free_port, stop_servers, wait_healthy  # noqa: E402
from tests.room_helpers import ROOM_VOICES as VOICES  # noqa: E402

BURST_S, PERIOD_S, TONE_HZ = 0.20, 1.0, 440.0
REF_FRAMES = 15  # one second of video before each frame
AV_WINDOW = (-0.125, 0.045)  # BT.1359 acceptable: audio at most 125 ms late, 45 ms early

AV_JS = """([feed, roi]) => {
  const tile = window.s2fRoom.tiles.get(feed);
  const av = window.__av = {audio: [], clock: [], video: []};
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(tile.stream);
  const proc = ctx.createScriptProcessor(256, 1, 1);
  proc.onaudioprocess = (e) => {
    const x = e.inputBuffer.getChannelData(0);
    let ss = 0;
    for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
    // context time at which this block entered the graph; mapped to performance time later
    av.audio.push([e.playbackTime - x.length / ctx.sampleRate, Math.sqrt(ss / x.length)]);
    const ts = ctx.getOutputTimestamp();
    if (ts.performanceTime) av.clock.push([ts.contextTime, ts.performanceTime]);
  };
  src.connect(proc);
  proc.connect(ctx.destination);
  const c = document.createElement("canvas");
  const w = tile.video.videoWidth, h = tile.video.videoHeight;
  c.width = w;
  c.height = h;
  const g = c.getContext("2d", {willReadFrequently: true});
  const box = [roi[0] * w, roi[1] * h, roi[2] * w, roi[3] * h].map(Math.round);
  const onFrame = (now, md) => {
    g.drawImage(tile.video, 0, 0, w, h);
    const d = g.getImageData(box[0], box[1], box[2], box[3]).data;
    const gray = new Array(d.length / 4);
    for (let i = 0; i < gray.length; i++) gray[i] = (d[4 * i] + d[4 * i + 1] + d[4 * i + 2]) / 3;
    av.video.push([md.expectedDisplayTime, gray]);
    tile.video.requestVideoFrameCallback(onFrame);
  };
  tile.video.requestVideoFrameCallback(onFrame);
  return [ctx.state, ctx.sampleRate, box];
}"""


# [kind, mean jitter-buffer delay, target, minimum (ms)] of the remote feed: which side lip-sync holds back
STATS_JS = """async () => { const out = [];
  (await window.s2fRoom.sub.getStats()).forEach((s) => { if (s.type !== 'inbound-rtp' || s.mid === '0') return;
    const n = s.jitterBufferEmittedCount;
    out.push([s.kind, Math.round(1000 * s.jitterBufferDelay / n), Math.round(1000 * s.jitterBufferTargetDelay / n),
              Math.round(1000 * s.jitterBufferMinimumDelay / n)]); });
  return JSON.stringify(out); }"""


def bursts_48k(seconds: float) -> np.ndarray:
    """Tone bursts: BURST_S on, then silence, every PERIOD_S (5 ms ramps)."""
    rate = 48_000
    t = np.arange(int(seconds * rate)) / rate
    on = (t % PERIOD_S) < BURST_S
    ramp = np.clip(np.minimum(t % PERIOD_S, BURST_S - t % PERIOD_S) / 0.005, 0, 1)
    return (0.3 * np.sin(2 * np.pi * TONE_HZ * t) * on * ramp).astype(np.float32)


def mouth_roi(size: int = 256) -> list[float]:
    """Where the avatar's mouth moves, as (x, y, w, h) fractions, from the renderer itself."""
    from engines.render import AvatarRenderer

    r = AvatarRenderer(size=size)
    closed, opened = r.frame(0.0, 0.0, 1.0).astype(int), r.frame(1.0, 0.0, 1.0).astype(int)
    ys, xs = np.nonzero(np.abs(closed - opened).sum(axis=2) > 30)
    pad = 0.25
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    w, h = x1 - x0, y1 - y0
    return [max(0.0, (x0 - pad * w) / size), max(0.0, (y0 - pad * h) / size), (1 + 2 * pad) * w / size, (1 + 2 * pad) * h / size]


def onsets(times: np.ndarray, values: np.ndarray, threshold: float, quiet_s: float) -> list[float]:
    """Times where ``values`` rises through ``threshold`` after at least ``quiet_s`` below it."""
    out, last_above = [], -1e9
    above = values > threshold
    for t, a in zip(times, above):
        if a:
            if t - last_above > quiet_s:
                out.append(float(t))
            last_above = t
    return out


def av_offsets(av: dict, skip_s: float) -> dict:
    clock = np.array(av["clock"], dtype=float)
    if len(clock) < 10:
        return {"error": "the page's AudioContext gave no output timestamps"}
    slope, icpt = np.polyfit(clock[:, 0], clock[:, 1], 1)  # context seconds → performance ms
    a = np.array([(icpt + slope * t, rms) for t, rms in av["audio"]], dtype=float)
    vt = np.array([t for t, _ in av["video"]], dtype=float)
    px = np.array([g for _, g in av["video"]], dtype=float)
    t_start = max(a[0, 0], vt[0]) + skip_s * 1000
    a = a[a[:, 0] > t_start]
    keep = vt > t_start
    vt, px = vt[keep], px[keep]
    a_on = onsets(a[:, 0], a[:, 1], 0.5 * np.percentile(a[:, 1], 95), quiet_s=300)
    # the mouth is shut most of the time (bursts are 20 % of it): the median of the frames
    # just before is the closed mouth, which also follows the face while it still refines
    ref = np.array([np.median(px[max(0, i - REF_FRAMES) : max(1, i)], axis=0) for i in range(len(px))])
    dev = np.abs(px - ref).mean(axis=1)
    v_on = onsets(vt, dev, 0.5 * np.percentile(dev, 95), quiet_s=300)
    offsets = []
    for t in a_on:
        near = [x for x in v_on if -200 <= x - t <= 400]
        if near:
            offsets.append((near[0] - t) / 1000.0)
    o = np.array(offsets)
    body: dict = {"bursts": len(a_on), "matched": int(o.size), "video_fps": round(len(vt) / ((vt[-1] - vt[0]) / 1000), 1)}
    if o.size:
        body.update(
            offset_ms_mean=round(float(o.mean()) * 1000, 1),
            offset_ms_p10_p50_p90=[round(float(np.percentile(o, q)) * 1000, 1) for q in (10, 50, 90)],
            within_bt1359=round(float(np.mean((o >= AV_WINDOW[0]) & (o <= AV_WINDOW[1]))), 3),
            mean_within_bt1359=bool(AV_WINDOW[0] <= o.mean() <= AV_WINDOW[1]),
        )
    return body


def second_half(av: dict) -> dict:
    clock = np.array(av["clock"], dtype=float)
    slope, icpt = np.polyfit(clock[:, 0], clock[:, 1], 1)
    mid = (av["video"][0][0] + av["video"][-1][0]) / 2
    return {
        "clock": av["clock"],
        "audio": [x for x in av["audio"] if icpt + slope * x[0] >= mid],
        "video": [x for x in av["video"] if x[0] >= mid],
    }


def child_pid(parent: int, name: str) -> int:
    """The pid of ``parent``'s descendant process called ``name`` (our server's supervised Janus)."""
    from tests.room_helpers import descendants

    pid = next((p for p, n in descendants(parent) if n == name), None)
    if pid is None:
        raise RuntimeError(f"no {name} process under {parent}")
    return pid


async def _window(procs: dict[str, int], seconds: float) -> tuple[dict[str, float], float]:
    cpu0 = {n: cpu_seconds(p) for n, p in procs.items()}
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    return {n: (cpu_seconds(p) - cpu0[n]) / wall for n, p in procs.items()}, wall


class _Patch:
    """``monkeypatch.setattr`` for a script: set for the rest of the process."""

    def setattr(self, target: object, name: str, value: object) -> None:
        setattr(target, name, value)


async def measure(args: argparse.Namespace) -> dict:
    import aiohttp

    from server import ice
    from tests import room_client
    from tests.room_helpers import voice_48k
    from tests.server_helpers import ArrayAudioTrack, Caller, use_loopback

    room_client.count_video_without_decoding(_Patch())
    room_client.route_retransmissions(_Patch())
    room_client.skip_bandwidth_estimation(_Patch())
    use_loopback()
    ice.use_patient_consent()  # the participants here, like the server, tolerate late consent answers
    ice.use_large_receive_buffers()  # and queue what arrives while the loop is busy
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    ours_port, bare_port = free_port(), free_port()
    argv = [sys.executable, "-m", "server.serve", "--port", str(ours_port), "--session-budget", "24", "--no-frame-events"]
    argv += ["--workers", "1"]  # one process against the one bare process
    argv += ["--log-level", "info" if args.server_log else "warning", "--max-speech-seconds", str(args.max_speech_seconds)]
    argv += ["--room-cap", str(max(args.sizes)), "--audio-delay-ms", str(args.audio_delay_ms)]
    log = open(args.server_log, "w") if args.server_log else subprocess.DEVNULL
    ours = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    bare = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bench_server.py"), "--bare-server", "--port", str(bare_port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url, bare_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{bare_port}"
    result: dict = {"settled_after_speech_s": args.max_speech_seconds, "window_s": args.seconds}
    try:
        await wait_healthy(url, ours)
        await wait_healthy(bare_url, bare)
        voices = [voice_48k(v, 0) for v in VOICES]
        async with aiohttp.ClientSession() as http:
            janus_pid = child_pid(ours.pid, "janus")
            procs = {"ours": ours.pid, "bare": bare.pid, "janus": janus_pid}

            # 1:1 (today) and bare aiortc, side by side, same number of callers
            k = args.callers
            callers = {
                name: [Caller(u, ArrayAudioTrack(voices[i % len(voices)], loop=True), frame_events=False) for i in range(k)]
                for name, u in (("ours", url), ("bare", bare_url))
            }
            for i in range(k):
                for cs in callers.values():
                    assert (await cs[i].connect(http)).status == 200
            await asyncio.sleep(args.warmup)
            cpu, _ = await _window(procs, args.seconds)
            result["one_to_one"] = {
                "callers": k,
                "ours_cpu_per_caller": round(cpu["ours"] / k, 4),
                "bare_cpu_per_caller": round(cpu["bare"] / k, 4),
                "ratio": round(cpu["ours"] / cpu["bare"], 2),
                "fps_min": round(min(c.fps() for c in callers["ours"]), 1),
            }
            for cs in callers.values():
                for c in cs:
                    await c.close()
            await asyncio.sleep(2.0)

            # rooms of growing size: per participant, and Janus per subscription
            result["rooms"] = {}
            for n in args.sizes:
                room = (await (await http.post(url + "/v1/rooms")).json())["room"]
                people = room_client.ring_participants(url, room, [ArrayAudioTrack(voices[i], loop=True) for i in range(n)])
                await room_client.join_in_turn(people, http)
                await asyncio.sleep(args.warmup)
                cpu, wall = await _window(procs, args.seconds)
                now = time.monotonic()
                fps = [
                    len([t for t in p.feeds[f].video_times if t > now - wall]) / wall for p in people for f in p.remote_feeds()
                ]
                first = [p.first_remote_frame_at - p.joined_at for p in people if p.first_remote_frame_at]
                subscriptions = n * (n - 1)  # remote feeds (audio + video) delivered; plus n self-views (video only)
                result["rooms"][n] = {
                    "ours_cpu_per_participant": round(cpu["ours"] / n, 4),
                    "vs_one_to_one": round(cpu["ours"] / n / result["one_to_one"]["ours_cpu_per_caller"], 2),
                    "vs_bare": round(cpu["ours"] / n / result["one_to_one"]["bare_cpu_per_caller"], 2),
                    "janus_cpu_total": round(cpu["janus"], 4),
                    "janus_cpu_per_subscription": round(cpu["janus"] / (subscriptions + n), 5),
                    "remote_fps_min": round(min(fps), 1) if fps else 0.0,
                    "remote_fps_mean": round(float(np.mean(fps)), 1) if fps else 0.0,
                    "join_to_first_remote_frame_s_max": round(max(first), 2) if first else None,
                }
                print(f"room of {n}: {result['rooms'][n]}", flush=True)
                for p in people:
                    await p.leave()
                await asyncio.sleep(2.0)

            if not args.no_browser:
                result["browser"] = await measure_browser(http, url, args, room_client.RoomParticipant, ArrayAudioTrack)
    finally:
        stop_servers((ours, bare))
    result["machine"] = {"cpus": os.cpu_count(), "loadavg_after": open("/proc/loadavg").read().split()[:3]}
    return result


async def measure_browser(http, url: str, args, RoomParticipant, ArrayAudioTrack) -> dict:
    """Chromium joins a room with an aiortc participant sending tone bursts."""
    import tempfile

    from playwright.async_api import async_playwright

    from tests.server_helpers import write_wav
    from tests.test_browser import CHROMIUM, chromium_args

    room = (await (await http.post(url + "/v1/rooms")).json())["room"]
    sender = RoomParticipant(url, room, "Bursts", ArrayAudioTrack(bursts_48k(PERIOD_S * 10), loop=True))
    await sender.join(http)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        silence = write_wav(Path(tmp) / "silence.wav", np.zeros(48_000, np.float32), 48_000)
        async with async_playwright() as p:
            ctx = await p.chromium.launch_persistent_context(
                str(Path(tmp) / "profile"), executable_path=CHROMIUM, headless=True, args=chromium_args(silence)
            )
            try:
                page = ctx.pages[0] if ctx.pages else await ctx.new_page()
                await page.goto(f"{url}/r/{room}")
                await page.fill("#name", "Viewer")
                t0 = time.monotonic()
                await page.click("#join")
                await page.wait_for_function(
                    """(feed) => { const t = window.s2fRoom.tiles.get(feed);
                                   return t && t.el.classList.contains("live") && t.video.videoWidth > 0; }""",
                    arg=sender.id,
                    timeout=60_000,
                    polling=50,
                )
                out["join_to_first_remote_avatar_s"] = round(time.monotonic() - t0, 2)
                await asyncio.sleep(2.0)
                out["audio_context"], _, out["mouth_box_px"] = await page.evaluate(AV_JS, [sender.id, mouth_roi()])
                await asyncio.sleep(args.av_seconds)
                out["jitter_buffer_ms"] = {k: v for k, *v in json.loads(await page.evaluate(STATS_JS))}
                av = await page.evaluate("window.__av")
                if args.av_dump:
                    args.av_dump.write_text(json.dumps(av))
                out.update(av_offsets(av, skip_s=2.0))
                # the receiver's lip-sync converges over tens of seconds: the second half is the steady call
                out["steady_second_half"] = av_offsets(second_half(av), skip_s=0.0)
                out["audio_delay_ms"] = args.audio_delay_ms
            finally:
                await ctx.close()
    await sender.leave()
    print(f"browser: {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--callers", type=int, default=2, help="1:1 callers (and bare-stream callers) in the baseline")
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window per phase")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds after joining before each window")
    p.add_argument("--max-speech-seconds", type=float, default=4.0, help="faces settle after this much speech")
    p.add_argument("--audio-delay-ms", type=float, default=0.0, help="the room feeds' voice delay under test")
    p.add_argument("--av-seconds", type=float, default=60.0, help="tone bursts watched by the browser")
    p.add_argument("--no-browser", action="store_true", help="skip the Chromium A/V phase")
    p.add_argument("--av-dump", type=Path, help="write the browser's raw audio/video timestamps here")
    p.add_argument("--server-log", type=Path, help="our server's log (info level) goes here")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    res = asyncio.run(measure(args))
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
