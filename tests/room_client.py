"""A room participant without a browser (aiortc), for the room tests and the benchmark.

It does what room.js does: a microphone peer connection to our server (audio + a status
datachannel), the room websocket, and a subscriber peer connection that answers the
Janus offers our server relays (renegotiated as people come and go). It records, per
feed, when video frames arrive and how much energy the received voice carries.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class RoomError(Exception):
    def __init__(self, msg: dict) -> None:
        super().__init__(msg.get("error"))
        self.status = msg.get("status")
        self.reason = msg.get("reason")
        self.msg = msg


@dataclass
class FeedStats:
    video_times: list[float] = field(default_factory=list)
    audio_rms: list[float] = field(default_factory=list)
    last_frame: Any = None

    def fps(self, window: float = 3.0) -> float:
        t = self.video_times
        if len(t) < 2:
            return 0.0
        recent = [x for x in t if x >= t[-1] - window]
        return (len(recent) - 1) / max(1e-6, recent[-1] - recent[0])


class RoomParticipant:
    def __init__(
        self, base_url: str, room: str, name: str, audio: MediaStreamTrack, keep_frames: bool = False, decode: bool = True
    ) -> None:
        self.base_url = base_url
        self.room = room
        self.name = name
        self.audio = audio
        self.keep_frames = keep_frames
        self.mic = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.mic.createDataChannel("status")
        self.status: list[dict] = []
        self.channel.on("message", lambda m: self.status.append(json.loads(m)))
        self.mic.addTrack(audio)
        self.sub: RTCPeerConnection | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.id: str | None = None
        self.joined_at: float | None = None
        self.roster: list[dict] = []
        self.messages: list[dict] = []
        self.streams: dict[str, dict] = {}  # subscriber mid → stream info (feed, type, name)
        self.feeds: dict[str, FeedStats] = defaultdict(FeedStats)
        self.first_remote_frame_at: float | None = None
        self.offers = 0
        self._tasks: list[asyncio.Task] = []
        self._reader: asyncio.Task | None = None
        self._joined = asyncio.Event()
        self._error: dict | None = None

    # --- joining ---
    async def join(self, session: aiohttp.ClientSession, timeout: float = 15.0) -> dict:
        await self.mic.setLocalDescription(await self.mic.createOffer())
        self.ws = await session.ws_connect(f"{self.base_url}/v1/rooms/{self.room}/ws")
        self._reader = asyncio.ensure_future(self._read())
        self.joined_at = time.monotonic()
        offer = {"sdp": self.mic.localDescription.sdp, "type": "offer"}
        await self.ws.send_json({"type": "join", "name": self.name, "offer": offer})
        done = asyncio.ensure_future(self._joined.wait())
        await asyncio.wait([done, self._reader], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        if self._error is not None:
            raise RoomError(self._error)
        if not self._joined.is_set():
            raise TimeoutError("no joined message")
        joined = next(m for m in self.messages if m.get("type") == "joined")
        return joined

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.messages.append(data)
            kind = data.get("type")
            if kind == "joined":
                self.id = data["id"]
                answer = data["answer"]
                await self.mic.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
                self._joined.set()
            elif kind == "error":
                if not self._joined.is_set():
                    self._error = data
                    return
            elif kind == "roster":
                self.roster = data["participants"]
            elif kind == "media-offer":
                await self._answer(data)

    async def _answer(self, data: dict) -> None:
        self.offers += 1
        if self.sub is None or data.get("restart"):
            if self.sub is not None:
                await self.sub.close()
            self.sub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self.sub.on("track", self._on_track)
        for s in data["streams"]:
            self.streams[s["mid"]] = s
        await self.sub.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
        await self.sub.setLocalDescription(await self.sub.createAnswer())
        await self.ws.send_json({"type": "media-answer", "sdp": self.sub.localDescription.sdp})

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next((t.mid for t in self.sub.getTransceivers() if t.receiver.track is track), None)
        self._tasks.append(asyncio.ensure_future(self._consume(track, mid)))

    async def _consume(self, track: MediaStreamTrack, mid: str | None) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            info = self.streams.get(mid or "", {})
            feed = info.get("feed")
            if feed is None:
                continue
            stats = self.feeds[feed]
            now = time.monotonic()
            if track.kind == "video":
                stats.video_times.append(now)
                if not info.get("self") and self.first_remote_frame_at is None:
                    self.first_remote_frame_at = now
                if self.keep_frames:
                    stats.last_frame = frame.to_ndarray(format="rgb24")
            else:
                x = frame.to_ndarray().astype(np.float32) / 32768.0
                stats.audio_rms.append(float(np.sqrt(np.mean(x * x))))

    # --- views ---
    def remote_feeds(self) -> list[str]:
        return [p["id"] for p in self.roster if not p.get("self")]

    def remote_fps(self, window: float = 3.0) -> dict[str, float]:
        return {f: self.feeds[f].fps(window) for f in self.remote_feeds()}

    # --- leaving ---
    async def leave(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_json({"type": "leave"})
        await self.close()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, *([self._reader] if self._reader else []), return_exceptions=True)
        await self.mic.close()
        if self.sub is not None:
            await self.sub.close()

    async def vanish(self) -> None:
        """Gone without a word: media stops, sockets stay open (a pulled cable)."""
        self.audio.stop()
        for pc in (self.mic, self.sub):
            if pc is None:
                continue
            for transceiver in pc.getTransceivers():
                transport = transceiver.receiver.transport
                if transport is not None:
                    await transport.transport.stop()
            if pc.sctp is not None:
                await pc.sctp.transport.transport.stop()
        if self._reader is not None:
            self._reader.cancel()  # stop answering, keep the TCP connection open


class _CountingVideoDecoder:
    """Stands in for aiortc's VP8 decoder: one tiny frame per complete encoded frame."""

    def decode(self, encoded_frame) -> list:
        import av

        frame = av.VideoFrame(width=2, height=2, format="yuv420p")
        frame.pts = encoded_frame.timestamp
        return [frame]


def count_video_without_decoding(monkeypatch) -> None:
    """Receive video as complete frames without decoding them (scale tests: 56 streams).

    In the test process the only video receivers are the participants' subscriptions (our
    server's peers receive audio only), so this measures what Janus delivers without
    spending the CPU that fps is being measured on. Audio is still decoded for real.
    """
    import aiortc.rtcrtpreceiver as receiver

    real = receiver.get_decoder
    monkeypatch.setattr(
        receiver, "get_decoder", lambda codec: _CountingVideoDecoder() if codec.mimeType.lower() == "video/vp8" else real(codec)
    )
