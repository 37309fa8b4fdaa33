"""A small asyncio client for Janus's JSON API over its WebSocket transport.

Only our server speaks this API (browsers get media from Janus, never its API), so the
client is shaped by what the room worker needs, not by the whole of janus.js:
sessions, plugin handles, requests matched to replies by transaction, plugin events and
core events (``webrtcup``, ``hangup``…) routed to the handle they concern, and keepalives.

Janus answers a plugin ``message`` either synchronously (``success`` with the plugin's
data) or with an ``ack`` followed by an ``event`` carrying the same transaction, maybe with
a JSEP; :meth:`JanusHandle.message` hides the difference. A lost connection fails every
pending request with :class:`JanusGone` and tells each session, so the supervisor and the
rooms can react (Janus dropped our sessions with the connection anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any, Callable

import aiohttp

log = logging.getLogger("speech2face.janus")

SUBPROTOCOL = "janus-protocol"
KEEPALIVE_S = 10.0
REQUEST_TIMEOUT_S = 10.0
VIDEOROOM = "janus.plugin.videoroom"


class JanusError(Exception):
    """Janus refused a request: ``code`` is Janus's (core or plugin) error code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"Janus error {code}: {reason}")
        self.code = code
        self.reason = reason


class JanusGone(JanusError):
    """The connection to Janus is lost (Janus stopped or restarted)."""

    def __init__(self, reason: str = "connection to Janus lost") -> None:
        super().__init__(-1, reason)


EventCallback = Callable[[dict], None]


class JanusClient:
    """One WebSocket to Janus: ``unix:/path/to.sock`` or ``ws://host:port/``."""

    def __init__(self, url: str, api_secret: str | None = None) -> None:
        self.url = url
        self.api_secret = api_secret
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[str, tuple[asyncio.Future, bool]] = {}
        self._sessions: dict[int, JanusSession] = {}
        self.closed = asyncio.Event()
        self.close_reason: str | None = None

    async def connect(self, timeout: float = 5.0) -> None:
        if self.url.startswith("unix:"):
            connector = aiohttp.UnixConnector(path=self.url[len("unix:") :])
            target = "http://janus/"
        else:
            connector = aiohttp.TCPConnector()
            target = self.url
        self._http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, connect=timeout))
        try:
            self._ws = await self._http.ws_connect(
                target,
                protocols=(SUBPROTOCOL,),
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                max_msg_size=4 * 1024 * 1024,
            )
        except BaseException:
            await self._http.close()
            self._http = None
            raise
        self._reader = asyncio.ensure_future(self._read())
        self._reader.set_name("janus-reader")

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed and not self.closed.is_set()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._lost("client closed")
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- requests ---
    async def send(self, body: dict, *, ack_is_reply: bool = False, timeout: float = REQUEST_TIMEOUT_S) -> dict:
        """Send one request and wait for its reply; raises JanusError / JanusGone."""
        if not self.connected:
            raise JanusGone()
        transaction = secrets.token_hex(8)
        msg = dict(body, transaction=transaction)
        if self.api_secret:
            msg["apisecret"] = self.api_secret
        fut = asyncio.get_running_loop().create_future()
        self._pending[transaction] = (fut, ack_is_reply)
        try:
            await self._ws.send_str(json.dumps(msg))
            reply = await asyncio.wait_for(fut, timeout)
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise JanusGone(f"connection to Janus lost: {exc}") from exc
        except asyncio.TimeoutError:
            raise JanusError(-2, f"Janus did not answer {body.get('janus')} within {timeout:g} s") from None
        finally:
            self._pending.pop(transaction, None)
        if reply.get("janus") == "error":
            err = reply.get("error") or {}
            raise JanusError(int(err.get("code", 0)), str(err.get("reason", "unknown error")))
        return reply

    async def info(self, timeout: float = 2.0) -> dict:
        """The server's description; the supervisor's health check."""
        return await self.send({"janus": "info"}, timeout=timeout)

    async def create_session(self) -> "JanusSession":
        reply = await self.send({"janus": "create"})
        session = JanusSession(self, int(reply["data"]["id"]))
        self._sessions[session.id] = session
        return session

    def _forget(self, session: "JanusSession") -> None:
        self._sessions.pop(session.id, None)

    # --- incoming ---
    async def _read(self) -> None:
        reason = "Janus closed the connection"
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        log.warning("Janus sent a message that is not JSON")
                        continue
                    self._dispatch(data)
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                    break
        except (ConnectionError, aiohttp.ClientError) as exc:
            reason = f"connection to Janus lost: {exc}"
        finally:
            self._lost(reason)

    def _dispatch(self, data: dict) -> None:
        kind = data.get("janus")
        transaction = data.get("transaction")
        waiting = self._pending.get(transaction) if transaction else None
        if waiting is not None:
            fut, ack_is_reply = waiting
            if kind != "ack" or ack_is_reply:
                if not fut.done():
                    fut.set_result(data)
                return
            return  # an ack before the real event: keep waiting
        session = self._sessions.get(data.get("session_id"))
        if session is not None:
            session._event(data)

    def _lost(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        for fut, _ in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(JanusGone(reason))
        self._pending.clear()
        for session in list(self._sessions.values()):
            session._gone(reason)
        self._sessions.clear()


class JanusSession:
    """A Janus session: its handles and a keepalive; ``destroy()`` drops every handle at once."""

    def __init__(self, client: JanusClient, session_id: int) -> None:
        self.client = client
        self.id = session_id
        self.handles: dict[int, JanusHandle] = {}
        self.gone = asyncio.Event()
        self._keepalive = asyncio.ensure_future(self._keep_alive())
        self._keepalive.set_name(f"janus-keepalive-{session_id}")
        self.on_gone: Callable[[str], None] | None = None

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            try:
                await self.client.send({"janus": "keepalive", "session_id": self.id}, ack_is_reply=True)
            except JanusGone:
                return
            except JanusError as exc:
                log.warning("Janus session %s keepalive failed: %s", self.id, exc)
                if exc.code == 458:  # no such session: Janus forgot us (timeout)
                    self._gone("Janus session expired")
                    return

    async def attach(self, plugin: str = VIDEOROOM) -> "JanusHandle":
        reply = await self.client.send({"janus": "attach", "session_id": self.id, "plugin": plugin})
        handle = JanusHandle(self, int(reply["data"]["id"]))
        self.handles[handle.id] = handle
        return handle

    async def destroy(self) -> None:
        """Tell Janus to drop the session (every handle leaves its room); never raises."""
        self._keepalive.cancel()
        with contextlib.suppress(JanusError):
            await self.client.send({"janus": "destroy", "session_id": self.id}, timeout=3.0)
        await asyncio.gather(self._keepalive, return_exceptions=True)
        self.client._forget(self)
        self._gone("destroyed")

    def _event(self, data: dict) -> None:
        if data.get("janus") == "timeout":
            self._gone("Janus session timed out")
            return
        handle = self.handles.get(data.get("sender"))
        if handle is not None:
            handle._event(data)

    def _gone(self, reason: str) -> None:
        if self.gone.is_set():
            return
        self.gone.set()
        self._keepalive.cancel()
        for handle in self.handles.values():
            handle._gone(reason)
        if self.on_gone is not None:
            self.on_gone(reason)


class JanusHandle:
    """A plugin handle; events Janus sends on it (without our transaction) go to ``on_event``."""

    def __init__(self, session: JanusSession, handle_id: int) -> None:
        self.session = session
        self.id = handle_id
        self.on_event: EventCallback | None = None
        self.webrtc_up = asyncio.Event()
        self.hung_up = asyncio.Event()

    async def message(self, body: dict, jsep: dict | None = None, timeout: float = REQUEST_TIMEOUT_S) -> tuple[dict, dict | None]:
        """A plugin request; returns (plugin data, jsep or None); plugin errors raise JanusError."""
        msg: dict[str, Any] = {"janus": "message", "session_id": self.session.id, "handle_id": self.id, "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = await self.session.client.send(msg, timeout=timeout)
        data = ((reply.get("plugindata") or {}).get("data")) or {}
        if "error_code" in data:
            raise JanusError(int(data["error_code"]), str(data.get("error", "plugin error")))
        return data, reply.get("jsep")

    async def detach(self) -> None:
        with contextlib.suppress(JanusError):
            await self.session.client.send({"janus": "detach", "session_id": self.session.id, "handle_id": self.id}, timeout=3.0)
        self.session.handles.pop(self.id, None)

    def _event(self, data: dict) -> None:
        kind = data.get("janus")
        if kind == "webrtcup":
            self.webrtc_up.set()
        elif kind in ("hangup", "detached"):
            self.hung_up.set()
        if self.on_event is not None:
            try:
                self.on_event(data)
            except Exception:
                log.exception("Janus event handler failed")

    def _gone(self, reason: str) -> None:
        self.hung_up.set()
