"""What a hostile or broken client can do, and what it gets: a JSON 4xx, never a 500, a dropped
socket, a held call slot, its own bytes echoed back or copied into the log, or a traceback.

One test per class of input: malformed HTTP the parser rejects before any handler; aiohttp's
own errors (404, 405, 413, bad compression, multipart part headers); offers that parse as
JSON but not as a call (numbers out of range, nesting, lone surrogates, SDP without DTLS,
a mute microphone, codecs we cannot decode); the same over the websocket; other sites
(Origin, Host, Content-Type); rate limits; slow clients; and the one-shot queue's bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

import aiohttp
import pytest
import pytest_asyncio
from aiortc import RTCConfiguration, RTCPeerConnection

from server.config import ServerConfig
from server.ratelimit import RateLimiter
from tests.server_helpers import ArrayAudioTrack, serving

JSON = {"Content-Type": "application/json"}


@pytest_asyncio.fixture
async def api(onnx_engine):
    cfg = ServerConfig(port=0, max_upload_bytes=200_000, offers_per_minute=0, uploads_per_minute=0)
    async with serving(onnx_engine, cfg) as (url, state), aiohttp.ClientSession() as session:
        yield url, session, state


async def expect_json_error(resp: aiohttp.ClientResponse, status: int) -> str:
    text = await resp.text()
    assert resp.status == status, (resp.status, text[:300])
    assert resp.content_type == "application/json", text[:300]
    assert resp.headers.get("Server") == "speech2face"
    return json.loads(text)["error"]


async def raw_exchange(url: str, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a fresh TCP connection; (status, headers, body) of the first response."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(1 << 20), timeout)
        while True:  # read to the end of the first response (the server closes after an error)
            try:
                more = await asyncio.wait_for(reader.read(1 << 20), 2.0)
            except asyncio.TimeoutError:
                break
            if not more:
                break
            raw += more
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def assert_clean_log(records: list[logging.LogRecord], secret: bytes | None = None) -> None:
    """No traceback for a client's error, no long line, none of the client's bytes."""
    for r in records:
        text = r.getMessage()
        assert len(text) < 400, text[:200]
        assert r.exc_info is None or r.levelno >= logging.ERROR and "speech2face" in r.name, (r.name, text)
        assert "Traceback" not in text
        if secret is not None:
            assert secret.decode("latin-1") not in text and repr(secret)[2:-1] not in text, text[:200]


async def offer_sdp() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(ArrayAudioTrack(__import__("numpy").zeros(4800, "float32")))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def audio_section(sdp: str) -> tuple[int, int]:
    start = sdp.index("m=audio")
    end = sdp.find("m=", start + 2)
    return start, len(sdp) if end < 0 else end


@pytest.mark.asyncio
async def test_malformed_http_gets_json_and_is_not_echoed(api, caplog):
    """Errors raised by aiohttp's parser before any handler: JSON, fixed reason, one log line."""
    url, session, _ = api
    caplog.set_level(logging.DEBUG)
    # a header line over 8190 bytes
    status, headers, body = await raw_exchange(
        url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n"
    )
    assert status == 431 and headers["content-type"].startswith("application/json"), body[:200]
    assert "too long" in json.loads(body)["error"] and headers["server"] == "speech2face"
    # a URL over the line limit
    status, headers, body = await raw_exchange(url, b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert 400 <= status < 500 and "error" in json.loads(body)
    # a broken request line and a broken header
    status, _, body = await raw_exchange(url, b"\x16\x03\x01 nonsense\r\n\r\n")
    assert status == 400 and "error" in json.loads(body)
    status, _, body = await raw_exchange(url, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\x01: x\r\n\r\n")
    assert status == 400 and "error" in json.loads(body)
    # a compression we do not speak (aiohttp's text says "Please install Brotli")
    status, _, body = await raw_exchange(
        url,
        b"POST /v1/avatar HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\nabcd",
    )
    assert status == 415 and "Content-Encoding" in json.loads(body)["error"] and b"Brotli" not in body
    # audio after a short Content-Length on a closing connection: aiohttp parses the rest as a
    # request line; the bytes must not come back in the body nor reach the log
    audio = b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(range(256)) * 64
    status, _, body = await raw_exchange(
        url,
        b"POST /v1/avatar HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nContent-Length: 4\r\n\r\nRIFF" + audio,
    )
    assert b"WAVEfmt" not in body and bytes(range(32, 127)) not in body and len(body) < 400
    assert (await session.get(url + "/healthz")).status == 200
    assert_clean_log(caplog.records, secret=bytes(range(40, 90)))


@pytest.mark.asyncio
async def test_aiohttp_errors_are_json(api, caplog):
    url, session, state = api
    caplog.set_level(logging.INFO)
    assert "no such" in await expect_json_error(await session.get(url + "/nope"), 404)
    err = await expect_json_error(await session.get(url + "/offer"), 405)
    assert "POST" in err
    # over the offer's body cap (aiohttp's 413 comes from client_max_size elsewhere)
    await expect_json_error(await session.post(url + "/offer", data=b"{" + b" " * 200_000 + b"}", headers=JSON), 413)
    await expect_json_error(await session.post(url + "/v1/avatar", data=b"\0" * 300_000), 413)
    # deflate that is not deflate
    r = await session.post(url + "/v1/avatar", data=b"definitely not zlib" * 50, headers={"Content-Encoding": "deflate"})
    assert "Content-Encoding" in await expect_json_error(r, 400)
    # a multipart part header longer than the parser's line limit
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=audio; filename=a.wav\r\nX-Pad: {'p' * 9000}\r\n\r\n"
        f"RIFF....\r\n--{boundary}--\r\n"
    ).encode()
    r = await session.post(url + "/v1/avatar", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert 400 <= r.status < 500 and r.content_type == "application/json", (r.status, (await r.text())[:200])
    assert not state.calls
    assert_clean_log(caplog.records)


@pytest.mark.asyncio
async def test_hostile_offers_never_build_a_call(api, caplog):
    url, session, state = api
    caplog.set_level(logging.INFO)
    sdp = await offer_sdp()
    a0, a1 = audio_section(sdp)
    audio = sdp[a0:a1]
    mutations = {
        "no fingerprint": "".join(line for line in sdp.splitlines(True) if not line.startswith("a=fingerprint")),
        "inactive mic": sdp[:a0] + audio.replace("a=sendrecv", "a=inactive").replace("a=sendonly", "a=inactive") + sdp[a1:],
        "recvonly mic": sdp[:a0] + audio.replace("a=sendrecv", "a=recvonly").replace("a=sendonly", "a=recvonly") + sdp[a1:],
        "port out of range": re.sub(r"m=audio \d+ ", "m=audio 99999999 ", sdp, count=1),
        "only G729": re.sub(r"m=audio (\d+) (\S+) [\d ]+", r"m=audio \1 \2 18", sdp[:a1], count=1)
        .replace("a=rtpmap:", "a=x-rtpmap:")
        .replace("a=x-rtpmap:", "a=rtpmap:18 G729/8000\r\na=x-dropped:", 1)
        + sdp[a1:],
        "video sendonly": sdp.replace("a=recvonly", "a=sendonly"),
    }
    for name, bad in mutations.items():
        if bad is None:
            continue
        r = await session.post(url + "/offer", json={"type": "offer", "sdp": bad})
        err = await expect_json_error(r, 400)
        assert err, name
        assert not state.calls and state.admission.in_use == 0, name
    raw = '{"type": "offer", "sdp": %s, %s}'
    for extra in ('"size": 1e400', '"size": Infinity', '"size": NaN', '"size": -1e400', '"size": 256.0', '"size": true'):
        r = await session.post(url + "/offer", data=raw % (json.dumps(sdp), extra), headers=JSON)
        await expect_json_error(r, 400)
    deep = "[" * 50_000 + "]" * 50_000
    await expect_json_error(await session.post(url + "/offer", data=deep, headers=JSON), 400)
    deep_obj = '{"type": "offer", "sdp": %s, "x": %s}' % (json.dumps(sdp), "[" * 30_000 + "]" * 30_000)
    await expect_json_error(await session.post(url + "/offer", data=deep_obj, headers=JSON), 400)
    lone = '{"type": "offer", "sdp": %s, "privacy": "room", "room": "\\ud800"}' % json.dumps(sdp)
    assert "surrogate" in await expect_json_error(await session.post(url + "/offer", data=lone, headers=JSON), 400)
    lone_sdp = '{"type": "offer", "sdp": "v=0\\r\\n\\udfff"}'
    await expect_json_error(await session.post(url + "/offer", data=lone_sdp, headers=JSON), 400)
    assert not state.calls and state.admission.in_use == 0
    assert "s2f_sessions_total 0.0" in await (await session.get(url + "/metrics")).text()
    assert_clean_log(caplog.records)


@pytest.mark.asyncio
async def test_websocket_answers_every_bad_message_and_stays_open(api):
    url, session, state = api
    sdp = await offer_sdp()
    a0, a1 = audio_section(sdp)
    bad_messages = [
        "{oops",
        "[" * 50_000 + "]" * 50_000,
        '{"type": "offer", "sdp": %s, "size": 1e400}' % json.dumps(sdp),
        '{"type": "offer", "sdp": %s, "size": Infinity}' % json.dumps(sdp),
        '{"type": "offer", "sdp": %s, "privacy": "room", "room": "\\ud800"}' % json.dumps(sdp),
        json.dumps({"type": "offer", "sdp": "".join(x for x in sdp.splitlines(True) if not x.startswith("a=fingerprint"))}),
        json.dumps({"type": "offer", "sdp": sdp[:a0] + sdp[a0:a1].replace("a=sendrecv", "a=inactive") + sdp[a1:]}),
        json.dumps({"type": "dance"}),
        json.dumps(["offer"]),
    ]
    async with session.ws_connect(url + "/ws") as ws:
        for msg in bad_messages:
            await ws.send_str(msg)
            reply = await ws.receive_json(timeout=10)
            assert reply["type"] == "error" and reply["status"] == 400 and reply["error"], (msg[:60], reply)
        await ws.send_bytes(b"\x00\x01")
        reply = await ws.receive_json(timeout=10)
        assert reply["status"] == 400 and "binary" in reply["error"]
        assert not ws.closed and not state.calls and state.admission.in_use == 0
        # a message over the cap closes with 1009 (message too big), not a dropped socket
        await ws.send_str("x" * 300_000)
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


@pytest.mark.asyncio
async def test_other_sites_are_refused(onnx_engine):
    cfg = ServerConfig(port=0, allowed_origins=("https://app.example",), offers_per_minute=0)
    async with serving(onnx_engine, cfg) as (url, state), aiohttp.ClientSession() as session:
        body = {"type": "offer", "sdp": "v=0\r\n"}
        err = await expect_json_error(
            await session.post(url + "/offer", json=body, headers={"Origin": "https://evil.example"}), 403
        )
        assert "cross-origin" in err
        await expect_json_error(await session.post(url + "/offer", json=body, headers={"Origin": "null"}), 403)
        # a text/plain body is what a cross-site form or fetch can send without a preflight
        await expect_json_error(
            await session.post(url + "/offer", data=json.dumps(body), headers={"Content-Type": "text/plain"}), 415
        )
        # the page we served, an allowed origin, and non-browser clients (no Origin) get through to validation
        port = url.rsplit(":", 1)[1]
        for origin in (f"http://127.0.0.1:{port}", "https://app.example", None):
            headers = {"Origin": origin} if origin else {}
            await expect_json_error(await session.post(url + "/offer", json=body, headers=headers), 400)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url + "/ws", headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        async with session.ws_connect(url + "/ws", headers={"Origin": f"http://127.0.0.1:{port}"}) as ws:
            await ws.send_json({"type": "dance"})
            assert (await ws.receive_json(timeout=10))["status"] == 400
        # DNS rebinding: a foreign Host on a loopback server
        r = await session.post(url + "/offer", json=body, headers={"Host": "evil.example", "Origin": "http://evil.example"})
        assert "Host" in await expect_json_error(r, 403)
        await expect_json_error(
            await session.post(url + "/v1/avatar", data=b"x", headers={"Origin": "https://evil.example"}), 403
        )
        health = await (await session.get(url + "/healthz")).json()
        assert "pid" not in health and health["status"] == "ok"
        assert not state.calls


@pytest.mark.asyncio
async def test_rate_limits_answer_429_with_retry_after(onnx_engine):
    # a burst of one each, refilled once a minute (slow enough that a busy machine cannot refill it mid-test)
    cfg = ServerConfig(port=0, offers_per_minute=1, uploads_per_minute=1)
    async with serving(onnx_engine, cfg) as (url, _), aiohttp.ClientSession() as session:
        body = {"type": "offer", "sdp": "v=0\r\n"}
        await expect_json_error(await session.post(url + "/offer", json=body), 400)
        r = await session.post(url + "/offer", json=body)
        assert "too many offers" in await expect_json_error(r, 429)
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        async with session.ws_connect(url + "/ws") as ws:  # the websocket shares the offers' bucket
            await ws.send_json(body)
            reply = await ws.receive_json(timeout=10)
            assert reply["status"] == 429 and reply["retry_after"] >= 1
        await expect_json_error(await session.post(url + "/v1/avatar", data=b"not audio"), 415)
        r = await session.post(url + "/v1/avatar", data=b"not audio")
        assert "too many uploads" in await expect_json_error(r, 429) and int(r.headers["Retry-After"]) >= 1


def test_rate_limiter_refills_and_forgets():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0], max_clients=2)  # 1/s, burst 15
    for _ in range(15):
        limiter.take("a")
    with pytest.raises(Exception) as exc:
        limiter.take("a")
    assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "1"
    now[0] += 1.0
    limiter.take("a")  # one token back after a second
    limiter.take("b")
    limiter.take("c")  # evicts "a", the stalest: it starts again with a full bucket
    for _ in range(15):
        limiter.take("a")
    assert RateLimiter(0).enabled is False


@pytest.mark.asyncio
async def test_slow_clients_are_cut_off(onnx_engine):
    cfg = ServerConfig(port=0, header_timeout=1.0, body_timeout=1.0)
    async with serving(onnx_engine, cfg) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        # a head trickled a byte at a time is closed once the header timeout passes
        reader, writer = await asyncio.open_connection(host, int(port))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        closed_after = None
        for ch in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 40:
            writer.write(bytes([ch]))
            try:
                await writer.drain()
                data = await asyncio.wait_for(reader.read(100), 0.25)
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                closed_after = loop.time() - t0
                break
        writer.close()
        assert closed_after is not None and closed_after < 4.0, closed_after
        # a body that never finishes: 408 with a JSON reason
        status, _, body = await raw_exchange(
            url,
            b"POST /offer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        assert status == 408 and "within" in json.loads(body)["error"]
        status, _, body = await raw_exchange(
            url, b"POST /v1/avatar HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nRIFF"
        )
        assert status == 408


@pytest.mark.asyncio
async def test_oneshot_queue_full_gets_503(onnx_engine, speech_wav):
    cfg = ServerConfig(port=0, oneshot_queue=1, retry_after=3, body_timeout=5.0, uploads_per_minute=0)
    async with serving(onnx_engine, cfg) as (url, state), aiohttp.ClientSession() as session:
        host, port = url.removeprefix("http://").split(":")
        # a first upload holds the only slot while its body is still arriving
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/avatar HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50000\r\n\r\nRIFF")
        await writer.drain()
        for _ in range(100):
            if state.oneshot.admitted:
                break
            await asyncio.sleep(0.02)
        assert state.oneshot.admitted == 1
        r = await session.post(url + "/v1/avatar", data=speech_wav["male"].read_bytes())
        assert "busy" in await expect_json_error(r, 503) and r.headers["Retry-After"] == "3"
        writer.close()
        for _ in range(100):
            if not state.oneshot.admitted:
                break
            await asyncio.sleep(0.05)
        r = await session.post(url + "/v1/avatar?format=json", data=speech_wav["male"].read_bytes())
        assert r.status == 200 and (await r.json())["speech_seconds"] > 1


def test_room_secret_is_generated_once(monkeypatch, caplog):
    from server import state as state_mod

    monkeypatch.delenv("S2F_ROOM_SECRET", raising=False)
    monkeypatch.setattr(state_mod, "_generated_secret", None)
    caplog.set_level(logging.WARNING)
    first, second = state_mod.room_secret(), state_mod.room_secret()
    assert first == second and len(first) >= 32
    assert sum("S2F_ROOM_SECRET" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setenv("S2F_ROOM_SECRET", "configured")
    assert state_mod.room_secret() == "configured"
