"""Helpers for the server tests and the benchmark: a Python caller, an audio track from
numpy, an in-process server on an ephemeral loopback port, and a speech wav maker.

Everything stays on 127.0.0.1: the aioice patch makes both peers gather only loopback
host candidates, and no ICE servers are configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import shutil
import subprocess
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server import ice

AUDIO_RATE = 48_000
AUDIO_PTIME = 0.020
SAMPLES_PER_FRAME = int(AUDIO_RATE * AUDIO_PTIME)


def read_wav_16k(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz (any wav via PyAV)."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16_000)
        out = []
        for frame in container.decode(audio=0):
            for f in resampler.resample(frame):
                out.append(f.to_ndarray().reshape(-1))
        for f in resampler.resample(None):
            out.append(f.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.float32)


def to_48k(pcm16k: np.ndarray) -> np.ndarray:
    """Float mono 16 kHz → float mono 48 kHz (PyAV resampler, as a browser would capture)."""
    frame = av.AudioFrame.from_ndarray((pcm16k.astype(np.float32)).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = 16_000
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32)


def to_rate(pcm16k: np.ndarray, rate: int) -> np.ndarray:
    """Float mono 16 kHz → int16 mono at ``rate`` (what a TTS engine hands an assistant avatar)."""
    frame = av.AudioFrame.from_ndarray(pcm16k.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = 16_000
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16)


def envelope_db(pcm: np.ndarray, ends: np.ndarray, window: float = 0.04, rate: int = AUDIO_RATE) -> np.ndarray:
    """dBFS of ``pcm`` (float, or int16 scaled to ±1) over the ``window`` before each media time in ``ends``."""
    x = pcm.astype(np.float64) / (32768.0 if pcm.dtype == np.int16 else 1.0)
    n = int(window * rate)
    out = []
    for t in ends:
        b = int(round(t * rate))
        seg = x[max(0, b - n) : b]
        rms = float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0
        out.append(20 * np.log10(max(rms, 1e-6)))
    return np.array(out)


def make_speech_wav(path: Path, voice: str = "en+f3", text: str | None = None) -> Path:
    """~6 s of espeak-ng speech at 16 kHz mono (for development when conftest is absent)."""
    text = text or (
        "The quick brown fox jumps over the lazy dog. I am talking to the avatar now, "
        "and it should listen to my voice while I keep speaking for a few seconds."
    )
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
    if shutil.which("sox"):
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)
        raw.unlink()
    else:
        raw.rename(path)
    return path


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> Path:
    data = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


class ArrayAudioTrack(MediaStreamTrack):
    """Real-time 48 kHz mono s16 audio from a float array, then silence (or a loop)."""

    kind = "audio"

    def __init__(self, pcm48k: np.ndarray, loop: bool = False, lead_silence: float = 0.0) -> None:
        super().__init__()
        lead = np.zeros(int(lead_silence * AUDIO_RATE), dtype=np.float32)
        self._pcm = np.concatenate([lead, pcm48k.astype(np.float32)])
        self._loop = loop
        self._pos = 0
        self._start: float | None = None
        self._n = 0
        self.started_at: float | None = None  # wall clock of the first sample sent

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
            self.started_at = self._start
        else:
            wait = self._start + self._n * AUDIO_PTIME - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        chunk = self._pcm[self._pos : self._pos + SAMPLES_PER_FRAME]
        self._pos += SAMPLES_PER_FRAME
        if self._loop and self._pos >= len(self._pcm):
            self._pos = 0
        if len(chunk) < SAMPLES_PER_FRAME:
            chunk = np.concatenate([chunk, np.zeros(SAMPLES_PER_FRAME - len(chunk), np.float32)])
        samples = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._n * SAMPLES_PER_FRAME
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._n += 1
        return frame


@dataclass
class CallResult:
    status: list[dict] = field(default_factory=list)  # status/hello events
    frames: list[dict] = field(default_factory=list)  # per-frame events (mouth)
    video_times: list[float] = field(default_factory=list)  # monotonic arrival of decoded frames
    video_size: tuple[int, int] | None = None
    last_frame: np.ndarray | None = None


class Caller:
    """A Python WebRTC caller: sends audio, receives the avatar video and status events."""

    def __init__(self, base_url: str, audio: MediaStreamTrack, keep_last_frame: bool = False, frame_events: bool = True) -> None:
        self.base_url = base_url
        self.audio = audio
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.result = CallResult()
        self.call_id: str | None = None
        self.offer_at: float | None = None
        self.first_frame_at: float | None = None
        self._keep = keep_last_frame
        self._frame_events = frame_events
        self._tasks: list[asyncio.Task] = []
        self.channel = self.pc.createDataChannel("status")
        self.channel.on("message", self._on_message)
        self.pc.addTrack(audio)
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", self._on_track)

    def _on_message(self, message: Any) -> None:
        msg = json.loads(message)
        (self.result.frames if msg.get("type") == "frame" else self.result.status).append(msg)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._tasks.append(asyncio.ensure_future(self._read_video(track)))

    async def _read_video(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if self.first_frame_at is None:
                self.first_frame_at = now
            self.result.video_times.append(now)
            self.result.video_size = (frame.width, frame.height)
            if self._keep:
                self.result.last_frame = frame.to_ndarray(format="rgb24")

    async def connect(self, session: aiohttp.ClientSession, **options: Any) -> aiohttp.ClientResponse:
        """POST the offer; returns the response (the caller checks status for 503)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.offer_at = time.monotonic()
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer", "frame_events": self._frame_events, **options}
        resp = await session.post(self.base_url + "/offer", json=body)
        if resp.status == 200:
            answer = await resp.json()
            self.call_id = answer["call_id"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        return resp

    def fps(self, window: float = 3.0) -> float:
        """Frames received per second over the last ``window`` s (an unchanged picture is not sent again)."""
        times = self.result.video_times
        if len(times) < 2:
            return 0.0
        end = times[-1]
        recent = [t for t in times if t >= end - window]
        return (len(recent) - 1) / max(1e-6, recent[-1] - recent[0])

    def slot_rate(self, window: float = 3.0) -> float:
        """Frame slots the server served per second (sent or held) over the last ``window`` s of
        its frame events: what a starved server falls behind on."""
        frames = self.result.frames
        if len(frames) < 2:
            return 0.0
        recent = [f for f in frames if f["t"] >= frames[-1]["t"] - window]
        return (recent[-1]["slots"] - recent[0]["slots"]) / max(1e-6, recent[-1]["t"] - recent[0]["t"])

    async def request_keyframe(self) -> None:
        """Send the server an RTCP picture loss indication, as a decoder that lost the picture does."""
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.kind == "video")
        stats = await receiver.getStats()
        ssrc = next(s.ssrc for s in stats.values() if s.type == "inbound-rtp")
        await receiver._send_rtcp_pli(ssrc)  # aiortc's own loss handling sends it this way

    async def close(self) -> None:
        await self.pc.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def vanish(self) -> None:
        """Disappear without a goodbye: stop sending, drop transports without DTLS close_notify."""
        for t in self._tasks:
            t.cancel()
        self.audio.stop()
        # Closing the ICE transport silently is as close to a pulled cable as aiortc allows:
        # no SCTP ABORT / DTLS alert is sent before the socket goes away.
        for transceiver in self.pc.getTransceivers():
            transport = transceiver.receiver.transport
            if transport is not None:
                await transport.transport.stop()
        sctp = self.pc.sctp
        if sctp is not None:
            await sctp.transport.transport.stop()


async def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


def use_loopback() -> None:
    ice.use_loopback_only(True)


async def start_app(app, header_timeout: float = 10.0) -> tuple[Any, str]:
    """Run an aiohttp app on an ephemeral 127.0.0.1 port; returns (runner, base_url)."""
    from aiohttp import web

    from server.runner import make_runner

    runner = make_runner(app, header_timeout=header_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serving(engine: Any, config: Any) -> AsyncIterator[tuple[str, Any]]:
    """The real server app on 127.0.0.1 (loopback ICE only), yielding (base_url, state)."""
    from server.app import create_app
    from server.state import STATE

    use_loopback()
    app = create_app(config, engine=engine)
    runner, url = await start_app(app, config.header_timeout)
    try:
        yield url, app[STATE]
    finally:
        await runner.cleanup()


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (all threads), from /proc."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / ticks
