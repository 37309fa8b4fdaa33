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
        self,
        base_url: str,
        room: str,
        name: str,
        audio: MediaStreamTrack,
        keep_frames: bool = False,
        hear: set[str] | frozenset[str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.room = room
        self.name = name
        self.audio = audio
        self.keep_frames = keep_frames
        self.hear = hear  # names whose voice this participant takes (None: every voice offered)
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
        if self.hear is FIRST_OFFERED:  # the first voice in this offer (the one aiortc would start)
            audio = [t for t in self.sub.getTransceivers() if t.kind == "audio" and t.mid in self.streams]
            self.hear = {self.streams[audio[0].mid]["name"]} if audio else FIRST_OFFERED
        if self.hear is not None:
            for t in self.sub.getTransceivers():
                if t.kind == "audio" and self.streams.get(t.mid or "", {}).get("name") not in self.hear:
                    t.direction = "inactive"  # Janus then sends this subscriber nothing on it
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


#: ``hear`` for "the first voice offered": resolved at the first offer that carries one
FIRST_OFFERED: frozenset[str] = frozenset({"<first offered>"})


def voice_ring(names: list[str]) -> list[set[str] | frozenset[str] | None]:
    """Whose voice each participant (in join order) takes in a scale test.

    Each takes the next joiner's voice and the second also the first's, so every voice is
    heard and everyone hears one, with about n audio streams in this process instead of
    n(n-1): in a room of 8, 56 incoming Opus streams held the test's receivers to ~10 fps of
    video while our server sent 15. The last joiner takes the first voice it is offered:
    aiortc, answering one offer that holds several audio m-lines, starts only the first of
    them (later joiners' voices come one per renegotiation, which it handles). Chromium plays
    every tile's voice (tests/test_room_browser.py checks each).
    """
    hear: list[set[str] | frozenset[str] | None] = [{names[i + 1]} for i in range(len(names) - 1)] + [FIRST_OFFERED]
    if len(names) > 2:
        hear[1] = {names[0], names[2]}  # its first offer held only the first's voice
    return hear


def ring_participants(base_url: str, room: str, tracks: list[MediaStreamTrack]) -> list[RoomParticipant]:
    """Participants P0, P1, ... of a scale test, each taking the voice ``voice_ring`` gives it;
    join them with ``join_in_turn`` (the ring assumes that order)."""
    names = [f"P{i}" for i in range(len(tracks))]
    return [RoomParticipant(base_url, room, n, t, hear=h) for n, t, h in zip(names, tracks, voice_ring(names))]


async def join_in_turn(people: list[RoomParticipant], session: aiohttp.ClientSession, timeout: float = 10.0) -> None:
    """Join one after another, each once the one before has its view open, so that every
    newcomer's voice reaches the others in a renegotiation of its own (``voice_ring``)."""
    for p in people:
        await p.join(session)
        deadline = time.monotonic() + timeout
        while p.offers < 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{p.name} got no view offer in {timeout:g} s")
            await asyncio.sleep(0.05)


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


def route_retransmissions(monkeypatch) -> None:
    """Let aiortc route RTX by its SSRC, as a browser does (scale tests: 7 video feeds per peer).

    aiortc registers a receiver under its media SSRC and payload types only; a retransmission
    (RTX, its own SSRC) is routed by payload type, which works with one video receiver and
    fails with several: every RTX is dropped. A lost packet then freezes that receiver until
    its 512-packet jitter buffer overflows — about 35 s of a settled avatar (~15 packets/s).
    Measured in a room of 8 on this 2-core box: 17 % of the test participants' datagrams lost
    to full socket queues, every subscriber's video stalled. Registering each encoding's RTX
    SSRC with its receiver is what the SDP (``a=ssrc-group:FID``) already says.
    """
    import aiortc.rtcdtlstransport as dtls

    real = dtls.RTCDtlsTransport._register_rtp_receiver

    def register(self, receiver, parameters) -> None:
        real(self, receiver, parameters)
        rtx = [e.rtx.ssrc for e in parameters.encodings if e.rtx is not None]
        if rtx:
            self._rtp_router.register_receiver(receiver, ssrcs=rtx, payload_types=[])

    monkeypatch.setattr(dtls.RTCDtlsTransport, "_register_rtp_receiver", register)


class _NoBandwidthEstimate:
    """aiortc's receive-side bandwidth estimator, estimating nothing (see skip_bandwidth_estimation)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add(self, **kwargs: Any) -> None:
        return None


def skip_bandwidth_estimation(monkeypatch) -> None:
    """No REMB from the test's receivers (scale tests: 56 video receivers in one process).

    aiortc estimates bandwidth per received video packet in Python and sends REMB as the
    estimate moves; in a room of 8 that was 17 % of the test process's busy time (py-spy),
    and on loopback the only "congestion" it can see is this process's own lateness, which
    it would report to Janus and on to our encoders as a lower bitrate. Browsers estimate in
    native code (transport-cc); the server's senders are unchanged.
    """
    import aiortc.rtcrtpreceiver as receiver

    monkeypatch.setattr(receiver, "RemoteBitrateEstimator", _NoBandwidthEstimate)
