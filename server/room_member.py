"""One person in a room: the avatar worker behind their feed, and the relay of their view.

LiveKit's avatar-worker pattern on Janus: the caller's microphone reaches our server on
their own peer connection (the 1:1 ``Call``: pipeline, mouth, avatar track), and we publish
ONE feed into the Janus room for them — the avatar video plus their voice, delayed to match
it (``lipsync``). Everybody else's browser subscribes to that feed from Janus, which
forwards RTP in C; our cost stays one avatar per participant whatever the room size.

The browser never speaks Janus's API. Its view of the room (a subscriber peer connection
holding every other feed, and its own avatar as others see it) is negotiated by us on its
behalf: Janus's offers go to the browser over our websocket, its answers come back as
``start``. Who is in the room comes from Janus (``publishers`` / ``leaving`` events on our
publisher handle), never from this process, so members on other worker processes appear
the same way.

If Janus goes away (crash, restart), the Call and its face keep running; the member tells
the page, waits for Janus, and publishes again with a fresh session; the page gets a new
offer marked ``restart``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from . import ice, room_names
from .call import Call
from .errors import HttpError
from .janus import JanusError, JanusGone, JanusHandle, JanusSession
from .lipsync import DelayedAudioTrack
from .video import refresh_on_keyframe_request

if TYPE_CHECKING:
    from .rooms import RoomService

log = logging.getLogger("speech2face.rooms")

WEBRTC_UP_TIMEOUT_S = 10.0
RETRY_S = 1.0
ERR_NO_SUCH_ROOM = 426
ERR_NO_SUCH_FEED = 428
ERR_TOO_MANY_PUBLISHERS = 432
ERR_ROOM_EXISTS = 427


class FeedTrack(MediaStreamTrack):
    """What one publisher peer connection sends: a view of a track that outlives it.

    aiortc stops the track a sender was given when that sender ends; the avatar and the
    delayed voice must survive a Janus restart and be published again, so each publish
    gets a fresh view and stopping it leaves the source running.
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source

    async def recv(self):
        if self.readyState != "live" or self._source.readyState != "live":
            raise MediaStreamError
        return await self._source.recv()


class RoomFull(HttpError):
    def __init__(self, cap: int) -> None:
        super().__init__(f"This room is full: {cap} people are in it already. Try again when someone leaves.", 409)
        self.reason = "room_full"


class RoomMember:
    def __init__(self, service: "RoomService", room: str, name: str, call: Call, ws: web.WebSocketResponse) -> None:
        self.service = service
        self.room = room
        self.name = name
        self.call = call
        self.ws = ws
        self.id = "p" + call.id  # our feed's id in Janus (string ids)
        self.audio = DelayedAudioTrack(service.config.audio_delay_ms / 1000.0)
        call.audio_sink = self.audio.push
        self.others: dict[str, str] = {}  # feed id → display name, as Janus tells us
        self.published_at: float | None = None
        self._session: JanusSession | None = None
        self._pub: JanusHandle | None = None
        self._sub: JanusHandle | None = None
        self._pc: RTCPeerConnection | None = None
        self._subscribed: set[str] = set()
        self._private_id: Any = None
        self._sub_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self.closed = asyncio.Event()
        self.media_state = "connecting"

    # --- tasks ---
    def start(self) -> None:
        self._spawn(self._keep_published(), "publisher")
        self._spawn(self._follow_call(), "call")

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        task.set_name(f"member-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("member %s task %s failed", self.id, task.get_name(), exc_info=task.exception())
            asyncio.ensure_future(self.close("error"))

    async def _follow_call(self) -> None:
        """The caller vanished (no audio for idle_timeout) or hung up: leave the room."""
        await self.call.closing.wait()
        await self.close(self.call.close_reason or "call_closed")

    # --- our feed ---
    async def _keep_published(self) -> None:
        sup = self.service.supervisor
        while not self._closing:
            await sup.wait_up(timeout=3600.0)
            client = sup.client
            if client is None:
                continue
            try:
                await self._publish(client)
            except RoomFull as exc:
                await self.send({"type": "error", "status": exc.status, "reason": exc.reason, "error": str(exc)})
                await self.close("room_full")
                return
            except (JanusError, OSError, asyncio.TimeoutError) as exc:
                log.warning("member %s could not publish: %s", self.id, exc)
                await self._unpublish()
                self._media("down", "Connecting you to the room is taking longer than it should; retrying…")
                await asyncio.sleep(RETRY_S)
                continue
            self._media("up", "")
            assert self._session is not None
            await self._session.gone.wait()
            await self._unpublish()
            if not self._closing:
                self._media("down", "The call's media relay restarted; reconnecting you…")

    async def _publish(self, client) -> None:
        svc = self.service
        session = await client.create_session()
        self._session = session
        pub = await session.attach()
        pub.on_event = self._on_pub_event
        self._pub = pub
        room_id = room_names.janus_room_id(self.room)
        pin = room_names.janus_secret(self.room, "pin")
        await svc.ensure_room(self.room)
        join = {"request": "join", "ptype": "publisher", "room": room_id, "pin": pin, "id": self.id, "display": self.name}
        try:
            data, _ = await pub.message(join)
        except JanusError as exc:
            if exc.code != ERR_NO_SUCH_ROOM:
                raise
            await svc.ensure_room(self.room, known=False)  # another worker destroyed it meanwhile
            data, _ = await pub.message(join)
        self._private_id = data.get("private_id")
        for p in data.get("publishers") or []:
            self._add_other(p)
        pc = RTCPeerConnection(configuration=ice.rtc_configuration(svc.config))
        self._pc = pc
        refresh_on_keyframe_request(pc.addTrack(FeedTrack(self.call.video)), self.call.video)
        pc.addTrack(FeedTrack(self.audio))
        await pc.setLocalDescription(await pc.createOffer())
        try:
            _, jsep = await pub.message(
                {"request": "publish", "audiocodec": "opus", "videocodec": "vp8", "display": self.name},
                {"type": "offer", "sdp": pc.localDescription.sdp},
            )
        except JanusError as exc:
            if exc.code == ERR_TOO_MANY_PUBLISHERS:
                raise RoomFull(svc.config.room_cap) from exc
            raise
        if not jsep or jsep.get("type") != "answer":
            raise JanusError(-3, "Janus did not answer our publish offer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type="answer"))
        await asyncio.wait_for(pub.webrtc_up.wait(), WEBRTC_UP_TIMEOUT_S)
        self.published_at = asyncio.get_running_loop().time()
        await self._open_view(session, room_id, pin)
        self.send_roster()

    async def _unpublish(self) -> None:
        session, self._session = self._session, None
        self._pub = self._sub = None
        self._subscribed.clear()
        self.others.clear()
        if session is not None:
            await session.destroy()
        pc, self._pc = self._pc, None
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5.0)

    # --- the browser's view: one subscriber handle, renegotiated as people come and go ---
    def _video_mid(self) -> str | None:
        for t in self._pc.getTransceivers() if self._pc else []:
            if t.kind == "video":
                return t.mid
        return None

    async def _open_view(self, session: JanusSession, room_id: str, pin: str) -> None:
        async with self._sub_lock:
            sub = await session.attach()
            sub.on_event = self._on_sub_event
            streams: list[dict[str, Any]] = [{"feed": self.id, "mid": self._video_mid()}]  # our own avatar, no voice
            feeds = list(self.others)
            streams += [{"feed": f} for f in feeds]
            body = {"request": "join", "ptype": "subscriber", "room": room_id, "pin": pin, "use_msid": True, "streams": streams}
            if self._private_id is not None:
                body["private_id"] = self._private_id
            data, jsep = await sub.message(body)
            self._sub = sub
            self._subscribed = set(feeds)
            await self._relay_offer(data, jsep, restart=True)

    async def _reopen_view(self) -> None:
        session, old = self._session, self._sub
        if session is None or old is None:
            return
        self._sub = None
        await old.detach()
        room_id = room_names.janus_room_id(self.room)
        await self._open_view(session, room_id, room_names.janus_secret(self.room, "pin"))

    async def _subscribe_new(self) -> None:
        async with self._sub_lock:
            sub = self._sub
            new = [f for f in self.others if f not in self._subscribed]
            if sub is None or not new:
                return
            try:
                data, jsep = await sub.message({"request": "subscribe", "streams": [{"feed": f} for f in new]})
            except JanusError as exc:
                if exc.code == ERR_NO_SUCH_FEED:  # gone again before we got to it
                    return
                raise
            self._subscribed.update(new)
            await self._relay_offer(data, jsep)

    async def _relay_offer(self, data: dict, jsep: dict | None, restart: bool = False) -> None:
        if not jsep or jsep.get("type") != "offer":
            return
        streams = [
            {
                "mid": s.get("mid"),
                "type": s.get("type"),
                "feed": s.get("feed_id"),
                "name": s.get("feed_display"),
                "active": bool(s.get("active", True)) and s.get("feed_id") is not None,
                "self": s.get("feed_id") == self.id,
            }
            for s in data.get("streams") or []
        ]
        log.debug("member %s view offer: %s", self.id, sorted({s["feed"] for s in streams if s["active"] and not s["self"]}))
        await self.send({"type": "media-offer", "sdp": jsep["sdp"], "restart": restart, "streams": streams})

    async def answer(self, sdp: Any) -> None:
        """The browser's answer to the last offer we relayed."""
        if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=0"):
            raise HttpError('"sdp" must be an SDP answer')
        sub = self._sub
        if sub is None:
            return  # Janus restarted meanwhile: a fresh offer is on its way
        if self.service.config.is_loopback:
            sdp = ice.keep_loopback_candidates(sdp)
        try:
            data, _ = await sub.message({"request": "start"}, {"type": "answer", "sdp": sdp})
            log.debug("member %s view started: %s", self.id, data)
        except JanusGone:
            return
        except JanusError as exc:
            raise HttpError(f"the media relay refused the answer: {exc.reason}") from exc

    # --- Janus events ---
    def _on_pub_event(self, msg: dict) -> None:
        kind = msg.get("janus")
        log.debug("member %s publisher event %s", self.id, kind)
        if kind == "hangup" and self._session is not None:
            # Janus dropped our feed's peer connection: start over with a fresh session
            self._spawn(self._session.destroy(), "restart")
            return
        data = (msg.get("plugindata") or {}).get("data") or {}
        changed = False
        for p in data.get("publishers") or []:
            changed |= self._add_other(p)
        for key in ("unpublished", "leaving", "kicked"):
            gone = data.get(key)
            if isinstance(gone, str) and gone != "ok" and gone in self.others:
                del self.others[gone]
                self._subscribed.discard(gone)
                changed = True
        if data.get("videoroom") == "destroyed" and self._session is not None:
            self._spawn(self._session.destroy(), "restart")  # republish into a new room
            return
        if changed:
            self.send_roster()
            # always: while our view is being opened ``_sub`` is still None, and a feed announced
            # then is in neither that view nor any later one unless this waits for the lock
            self._spawn(self._subscribe_new(), "subscribe")

    def _add_other(self, p: dict) -> bool:
        feed = p.get("id")
        if not isinstance(feed, str) or feed == self.id or p.get("dummy"):
            return False
        name = str(p.get("display") or "Guest")
        new = self.others.get(feed) != name
        self.others[feed] = name
        return new

    def _on_sub_event(self, msg: dict) -> None:
        log.debug("member %s view event %s %s", self.id, msg.get("janus"), (msg.get("plugindata") or {}).get("data"))
        if msg.get("janus") == "hangup" and self._session is not None and not self._closing:
            # Janus gave up on the browser's view (ICE/DTLS failed): offer a fresh one
            self._spawn(self._reopen_view(), "view")
            return
        data = (msg.get("plugindata") or {}).get("data") or {}
        jsep = msg.get("jsep")
        if data.get("videoroom") == "updated" and jsep:
            self._spawn(self._relay_offer(data, jsep), "offer")

    # --- the page ---
    def send_roster(self) -> None:
        people = [{"id": self.id, "name": self.name, "self": True}]
        people += [{"id": f, "name": n, "self": False} for f, n in self.others.items()]
        self._spawn(self.send({"type": "roster", "you": self.id, "participants": people}), "roster")

    def _media(self, state: str, message: str) -> None:
        if state == self.media_state:
            return
        self.media_state = state
        self._spawn(self.send({"type": "media-status", "state": state, "message": message}), "media")

    async def send(self, payload: dict) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_json(payload)

    # --- teardown ---
    async def close(self, reason: str = "left") -> None:
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        log.info("member %s leaves room %s: %s", self.id, self.room, reason)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._unpublish()
        self.audio.stop()
        self.call.audio_sink = None
        await self.call.close(reason if reason != "error" else "room_error")
        if not self.ws.closed:
            await self.send({"type": "bye", "reason": reason})
            with contextlib.suppress(Exception):
                await self.ws.close()
        self.service.member_left(self)
        self.closed.set()
