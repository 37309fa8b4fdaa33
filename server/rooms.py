"""Rooms: calls with other people, fanned out by Janus VideoRoom, admitted by us.

Routes: ``POST /v1/rooms`` mints a room link; ``GET /v1/rooms/<room>`` says whether the
link is ours, how many are in, the cap and whether the media relay is up;
``GET /r/<room>`` is the room page; ``GET /v1/rooms/<room>/ws`` is a participant's
signalling (join with a microphone offer, then relayed Janus offers and answers).

What this process keeps is only its own members; who is in a room, and the room itself,
live in Janus (created lazily, from a name any worker can check: ``room_names``), so
several worker processes can serve members of one room and any of them can restart.
Admission: the name must be ours, the room must have a free seat (``room_cap``, checked
here for a clear answer and enforced atomically by Janus's publisher cap), and the
server's call budget applies to room members like any call.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from typing import Any

from aiohttp import WSMsgType, web

from . import room_names
from .body import loads_strict
from .config import ServerConfig
from .errors import HttpError, json_error, retry_after_seconds
from .janus import JanusError, JanusGone, JanusHandle, JanusSession
from .janus_config import JanusSettings
from .janus_supervisor import JanusSupervisor
from .room_member import ERR_ROOM_EXISTS, RoomFull, RoomMember
from .state import CLIENT, STATE, ServerState
from .turn import ice_servers_for_browser
from .workers import client_address

log = logging.getLogger("speech2face.rooms")

ROOMS = web.AppKey("s2f_rooms", "RoomService")
MAX_NAME_CHARS = 32
MAX_MESSAGE_CHARS = 128 * 1024
ROOM_BITRATE = 300_000  # bits/s REMB cap for a 256–512 px cartoon at 15 fps: plenty
KEYFRAME_EVERY_S = 10
JANUS_START_WAIT_S = 5.0


def display_name(raw: Any) -> str:
    """A person's name as others see it: printable, trimmed, at most 32 characters."""
    if raw is None or raw == "":
        return "Guest"
    if not isinstance(raw, str):
        raise HttpError('"name" must be a string')
    text = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C").strip()
    if not text:
        return "Guest"
    if len(text) > MAX_NAME_CHARS:
        raise HttpError(f'"name" must be at most {MAX_NAME_CHARS} characters')
    return text


class RoomService:
    def __init__(self, state: ServerState, supervisor: JanusSupervisor | None, disabled_reason: str = "") -> None:
        self.state = state
        self.config: ServerConfig = state.config
        self.supervisor = supervisor
        self.disabled_reason = disabled_reason
        self.members: dict[str, RoomMember] = {}
        self._control: tuple[int, JanusSession, JanusHandle] | None = None
        self._control_lock = asyncio.Lock()
        self._known_rooms: tuple[int, set[str]] = (0, set())
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle ---
    async def start(self) -> None:
        if self.supervisor is not None:
            self.supervisor.on_state(self._on_janus_state)
            # Janus is up in ~0.1 s; serve once it is (or once we know it cannot run here)
            await self.supervisor.start(wait=JANUS_START_WAIT_S)

    async def stop(self) -> None:
        members = list(self.members.values())
        await asyncio.gather(*(m.close("shutdown") for m in members), return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._control is not None:
            await self._control[1].destroy()
            self._control = None
        if self.supervisor is not None:
            await self.supervisor.stop()

    def _on_janus_state(self, state: str) -> None:
        if state != "up":
            self._control = None

    # --- availability ---
    def unavailable(self) -> HttpError | None:
        if self.supervisor is None:
            return HttpError(f"Rooms are off on this server ({self.disabled_reason}).", 503)
        sup = self.supervisor
        if sup.state == "unavailable":
            return HttpError(f"Rooms are unavailable on this server: {sup.detail}", 503)
        if sup.state != "up":
            return HttpError(
                "The call's media relay (Janus) is not running right now; try again in a few seconds.",
                503,
                self.state.retry_headers(),
            )
        return None

    def health(self) -> dict:
        body: dict[str, Any] = {"members": len(self.members), "cap": self.config.room_cap}
        if self.supervisor is None:
            body["janus"] = {"state": "off", "detail": self.disabled_reason}
        else:
            body["janus"] = self.supervisor.status()
        return body

    # --- Janus room management (our own session, one per Janus generation) ---
    async def _control_handle(self) -> JanusHandle:
        sup = self.supervisor
        async with self._control_lock:
            if self._control is not None and self._control[0] == sup.generation and not self._control[1].gone.is_set():
                return self._control[2]
            if sup.client is None:
                raise JanusGone("Janus is not running")
            session = await sup.client.create_session()
            handle = await session.attach()
            self._control = (sup.generation, session, handle)
            return handle

    async def ensure_room(self, room: str, known: bool = True) -> None:
        """Create the Janus room behind ``room`` if it does not exist (idempotent across workers)."""
        gen, rooms = self._known_rooms
        if gen != self.supervisor.generation:
            rooms = set()
            self._known_rooms = (self.supervisor.generation, rooms)
        if known and room in rooms:
            return
        handle = await self._control_handle()
        body = {
            "request": "create",
            "room": room_names.janus_room_id(room),
            "admin_key": self.supervisor.settings.admin_key,
            "secret": room_names.janus_secret(room, "secret"),
            "pin": room_names.janus_secret(room, "pin"),
            "description": room,
            "is_private": True,
            "permanent": False,
            "publishers": self.config.room_cap,
            "bitrate": ROOM_BITRATE,
            "fir_freq": KEYFRAME_EVERY_S,
            "audiocodec": "opus",
            "videocodec": "vp8",
        }
        try:
            await handle.message(body)
        except JanusError as exc:
            if exc.code != ERR_ROOM_EXISTS:
                raise
        rooms.add(room)

    async def count(self, room: str) -> int:
        """People in the room: Janus's participants plus our members still joining."""
        handle = await self._control_handle()
        try:
            data, _ = await handle.message({"request": "listparticipants", "room": room_names.janus_room_id(room)})
            ids = {p.get("id") for p in data.get("participants") or []}
        except JanusError as exc:
            if exc.code != 426:  # no such room: nobody is in it
                raise
            ids = set()
        joining = {m.id for m in self.members.values() if m.room == room and m.id not in ids}
        return len(ids) + len(joining)

    async def _destroy_if_empty(self, room: str) -> None:
        try:
            if any(m.room == room for m in self.members.values()) or await self.count(room) > 0:
                return
            handle = await self._control_handle()
            await handle.message(
                {
                    "request": "destroy",
                    "room": room_names.janus_room_id(room),
                    "secret": room_names.janus_secret(room, "secret"),
                }
            )
            self._known_rooms[1].discard(room)
        except JanusError:
            pass  # already gone, or Janus is down (which forgets rooms anyway)

    def member_left(self, member: RoomMember) -> None:
        if self.members.pop(member.id, None) is None:
            return
        if self.supervisor is not None and self.supervisor.state == "up":
            task = asyncio.ensure_future(self._destroy_if_empty(member.room))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- joining ---
    async def join(self, room: str, body: dict, ws: web.WebSocketResponse) -> RoomMember:
        problem = self.unavailable()
        if problem is not None:
            raise problem
        name = display_name(body.get("name"))
        offer = body.get("offer")
        if not isinstance(offer, dict):
            raise HttpError('"offer" must be the microphone offer {sdp, type}')
        cap = self.config.room_cap
        try:
            if await self.count(room) >= cap:
                raise RoomFull(cap)
        except JanusError as exc:
            raise HttpError(f"The call's media relay is not answering ({exc.reason}); try again shortly.", 503) from exc
        call_body = {
            "sdp": offer.get("sdp"),
            "type": offer.get("type"),
            "privacy": "room",
            "room": room,
            "size": body.get("size", self.config.size),
            "skin_tone": body.get("skin_tone"),
        }
        reply = await self.state.answer(call_body, send_video=False)
        call = self.state.calls[reply["call_id"]]
        member = RoomMember(self, room, name, call, ws)
        self.members[member.id] = member
        await member.send(
            {
                "type": "joined",
                "id": member.id,
                "room": room,
                "name": name,
                "cap": cap,
                "answer": {"sdp": reply["sdp"], "type": reply["type"]},
                "ice_servers": ice_servers_for_browser(self.config, member.id),
            }
        )
        member.start()
        return member


# --- handlers ---
def _service(request: web.Request) -> RoomService:
    return request.app[ROOMS]


async def create_room(request: web.Request) -> web.Response:
    svc = _service(request)
    if svc.supervisor is None or svc.supervisor.state == "unavailable":
        err = svc.unavailable()
        return json_error(str(err), err.status)
    name = room_names.mint()
    return web.json_response({"room": name, "url": f"/r/{name}", "cap": svc.config.room_cap}, status=201)


def _not_ours(room: str) -> web.Response:
    return json_error(
        f"'{room[:80]}' is not a room link from this server. Ask for the link again, or create a room on the home page.", 404
    )


async def room_info(request: web.Request) -> web.Response:
    svc = _service(request)
    room = request.match_info["room"]
    if not room_names.is_valid(room):
        return _not_ours(room)
    body: dict[str, Any] = {"room": room, "cap": svc.config.room_cap, "media": svc.health()["janus"]["state"]}
    problem = svc.unavailable()
    if problem is not None:
        body.update(participants=None, full=None, message=str(problem))
        return web.json_response(body)
    try:
        n = await svc.count(room)
    except JanusError:
        n = None
    body.update(participants=n, full=n is not None and n >= svc.config.room_cap)
    return web.json_response(body)


async def room_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[CLIENT] / "room.html")


async def room_socket(request: web.Request) -> web.WebSocketResponse:
    """A participant's signalling: ``join`` → ``joined``; relayed ``media-offer`` ↔ ``media-answer``; ``leave``."""
    svc = _service(request)
    room = request.match_info["room"]
    ws = web.WebSocketResponse(heartbeat=5.0, max_msg_size=MAX_MESSAGE_CHARS)
    await ws.prepare(request)
    if not room_names.is_valid(room):
        await ws.send_json(
            {"type": "error", "status": 404, "reason": "bad_room", "error": "This is not a room link from this server."}
        )
        await ws.close()
        return ws
    state = svc.state
    target = state.place(request)
    if target is not None and state.group is not None:  # a less loaded worker takes this member
        try:
            await state.group.relay_websocket(target, request.path, ws, client_address(request), max_msg_size=MAX_MESSAGE_CHARS)
        except ConnectionError:
            log.info("worker %d unreachable; room member served here", target)
        else:
            if not ws.closed:
                await ws.close()
            return ws
    member: RoomMember | None = None
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                body = loads_strict(msg.data)
                if not isinstance(body, dict):
                    raise HttpError("message is not a JSON object")
                kind = body.get("type")
                if kind == "join":
                    if member is not None:
                        raise HttpError("already joined")
                    state.offer_limiter.take(client_address(request) or "", "offers")  # a join is an offer
                    member = await svc.join(room, body, ws)
                elif kind == "media-answer":
                    if member is None:
                        raise HttpError("join first")
                    await member.answer(body.get("sdp"))
                elif kind == "leave":
                    break
                else:
                    raise HttpError('expected {"type": "join" | "media-answer" | "leave"}')
            except HttpError as exc:
                err = {"type": "error", "status": exc.status, "error": str(exc), "reason": getattr(exc, "reason", None)}
                retry = retry_after_seconds(exc)
                if retry is not None:
                    err["retry_after"] = retry
                await ws.send_json(err)
                if isinstance(exc, RoomFull):
                    break
    finally:
        if member is not None:
            await member.close("left")
        if not ws.closed:
            await ws.close()
    return ws


def _janus_settings(config: ServerConfig) -> JanusSettings:
    lo, _, hi = config.janus_rtp_ports.partition("-")
    kwargs: dict[str, Any] = {
        "loopback": config.is_loopback,
        "rtp_ports": (int(lo), int(hi)),
        "public_ip": config.janus_public_ip,
    }
    if config.janus_api_secret:
        kwargs["api_secret"] = config.janus_api_secret
    if config.janus_admin_key:
        kwargs["admin_key"] = config.janus_admin_key
    if config.janus_socket:
        kwargs["api_unix"] = config.janus_socket
    return JanusSettings(**kwargs)


def make_service(state: ServerState) -> RoomService:
    config = state.config
    if config.janus == "off":
        return RoomService(state, None, "started with --janus off")
    settings = _janus_settings(config)
    if config.janus == "auto":
        return RoomService(state, JanusSupervisor(settings, managed=True))
    if not (config.janus_api_secret and config.janus_admin_key):
        return RoomService(state, None, "a Janus we do not start needs S2F_JANUS_API_SECRET and S2F_JANUS_ADMIN_KEY")
    return RoomService(state, JanusSupervisor(settings, managed=False, url=config.janus))


def register(app: web.Application) -> None:
    """Add the room routes and start/stop the Janus side with the app."""
    state = app[STATE]
    svc = make_service(state)
    app[ROOMS] = svc
    app.router.add_post("/v1/rooms", create_room)
    app.router.add_get("/v1/rooms/{room}", room_info)
    app.router.add_get("/v1/rooms/{room}/ws", room_socket)
    app.router.add_get("/r/{room}", room_page)

    async def startup(app: web.Application) -> None:
        await svc.start()

    async def shutdown(app: web.Application) -> None:
        await svc.stop()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)


def health(app: web.Application) -> dict:
    """``/healthz`` fields: ``rooms`` (members, Janus state); ``degraded`` while Janus is down."""
    svc = app.get(ROOMS)
    if svc is None:
        return {}
    body: dict[str, Any] = {"rooms": svc.health()}
    if svc.supervisor is not None and svc.supervisor.state in ("down", "starting"):
        body["degraded"] = True
    return body
