"""REST surface: /v1/avatar in every format and container, caps, bad bodies, /offer validation,
the websocket twin, /healthz and /metrics. Every error is a 4xx with ``{"error": ...}``."""

from __future__ import annotations

import aiohttp
import pytest
import pytest_asyncio

from server.config import ServerConfig
from tests.server_helpers import serving

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest_asyncio.fixture
async def api(onnx_engine):
    async with (
        serving(onnx_engine, ServerConfig(port=0, max_upload_bytes=2_000_000, max_upload_seconds=30.0)) as (url, state),
        aiohttp.ClientSession() as session,
    ):
        yield url, session, state


async def expect_error(resp: aiohttp.ClientResponse, status: int) -> str:
    assert resp.status == status, (resp.status, await resp.text())
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body["error"]


@pytest.mark.asyncio
async def test_health_and_metrics(api):
    url, session, _ = api
    r = await session.get(url + "/healthz")
    assert r.status == 200 and (await r.json())["status"] == "ok"
    text = await (await session.get(url + "/metrics")).text()
    for name in (
        "s2f_live_sessions",
        "s2f_frames_sent_total",
        "s2f_fps_delivered",
        "s2f_refinement_latency_seconds_bucket",
        "s2f_rejected_sessions_total",
    ):
        assert name in text, name
    page = await session.get(url + "/")
    assert page.status == 200 and "Speech2Face" in await page.text()
    for asset in ("/static/app.js", "/static/style.css"):
        assert (await session.get(url + asset)).status == 200
    opts = await (await session.get(url + "/v1/options")).json()
    assert opts["sizes"] == [256, 384, 512] and "deep" in opts["skin_tones"]


@pytest.mark.asyncio
async def test_avatar_formats_by_accept_and_query(api, speech_wav):
    url, session, _ = api
    data = speech_wav["female"].read_bytes()
    r = await session.post(url + "/v1/avatar", data=data, headers={"Accept": "image/png"})
    assert r.status == 200 and r.content_type == "image/png"
    assert (await r.read())[:8] == PNG_MAGIC
    r = await session.post(url + "/v1/avatar", data=data, headers={"Accept": "image/svg+xml"})
    assert r.status == 200 and r.content_type == "image/svg+xml" and "<svg" in await r.text()
    r = await session.post(url + "/v1/avatar", data=data, headers={"Accept": "application/json"})
    assert r.status == 200
    body = await r.json()
    assert body["version"] > 0 and body["gender"]["label"] in ("female", "male")
    assert set(body["face"]["params"]) >= {"femininity", "age", "skin_tone"} and body["speech_seconds"] > 3
    # ?format= wins over Accept; q-values are honoured
    r = await session.post(url + "/v1/avatar?format=svg", data=data, headers={"Accept": "image/png"})
    assert r.content_type == "image/svg+xml"
    r = await session.post(url + "/v1/avatar", data=data, headers={"Accept": "image/png;q=0.5, application/json;q=0.9"})
    assert r.content_type == "application/json"
    r = await session.post(url + "/v1/avatar?format=png&size=512&skin_tone=tan", data=data)
    png = await r.read()
    assert r.status == 200 and png[:8] == PNG_MAGIC
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(png)).size == (512, 512)
    # multipart upload
    form = aiohttp.FormData()
    form.add_field("audio", data, filename="voice.wav", content_type="audio/wav")
    r = await session.post(url + "/v1/avatar?format=json", data=form)
    assert r.status == 200 and (await r.json())["version"] == body["version"]


@pytest.mark.asyncio
async def test_avatar_every_container(api, bad_inputs):
    url, session, _ = api
    for key in ("wav", "flac", "mp3", "ogg", "opus", "webm", "m4a", "rate_8k", "rate_44k_stereo"):
        if key not in bad_inputs:
            continue
        r = await session.post(url + "/v1/avatar?format=json", data=bad_inputs[key].read_bytes())
        assert r.status == 200, (key, await r.text())
        assert (await r.json())["speech_seconds"] > 1.0, key


@pytest.mark.asyncio
async def test_avatar_caps_and_bad_bodies(api, bad_inputs):
    url, session, state = api
    cap = state.config.max_upload_bytes
    await expect_error(await session.post(url + "/v1/avatar", data=b"\0" * (cap + 1)), 413)

    async def chunked():  # no Content-Length: the cap is enforced while streaming
        for _ in range(cap // 65536 + 2):
            yield b"\1" * 65536

    await expect_error(await session.post(url + "/v1/avatar", data=chunked()), 413)
    # duration cap: the 10-minute clip is small in bytes but too long
    if "long" in bad_inputs:
        err = await expect_error(await session.post(url + "/v1/avatar", data=bad_inputs["long"].read_bytes()), 413)
        assert "30" in err
    await expect_error(await session.post(url + "/v1/avatar", data=b""), 400)
    await expect_error(await session.post(url + "/v1/avatar", data=b"this is not audio at all" * 10), 415)
    for key in ("not_audio", "not_audio_text", "truncated_mp3"):
        if key in bad_inputs:
            r = await session.post(url + "/v1/avatar", data=bad_inputs[key].read_bytes())
            assert 400 <= r.status < 500, (key, r.status)
            assert "error" in await r.json()
    await expect_error(await session.post(url + "/v1/avatar?format=gif", data=b"x"), 400)
    await expect_error(await session.post(url + "/v1/avatar?size=100", data=b"x"), 400)
    await expect_error(await session.post(url + "/v1/avatar?skin_tone=green", data=b"x"), 400)
    await expect_error(await session.post(url + "/v1/avatar", data=b"x", headers={"Accept": "text/html"}), 406)
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("comment", "no file here")
    await expect_error(await session.post(url + "/v1/avatar", data=form), 400)
    form = aiohttp.FormData()
    form.add_field("comment", "urlencoded, no file")
    err = await expect_error(await session.post(url + "/v1/avatar", data=form), 415)  # read as audio: it is not
    assert "not an audio file" in err
    # raw audio the way `curl --data-binary @clip.wav` sends it (labelled as a urlencoded form)
    r = await session.post(
        url + "/v1/avatar?format=png",
        data=bad_inputs["wav"].read_bytes(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status == 200 and r.content_type == "image/png"
    # the server is still healthy afterwards
    assert (await session.get(url + "/healthz")).status == 200


@pytest.mark.asyncio
async def test_offer_validation(api):
    url, session, state = api
    await expect_error(await session.post(url + "/offer", data=b"{not json", headers={"Content-Type": "application/json"}), 400)
    await expect_error(await session.post(url + "/offer", data=b'{"type": "offer"}'), 415)  # text/plain: no CORS preflight
    await expect_error(await session.post(url + "/offer", json=[1, 2]), 400)
    await expect_error(await session.post(url + "/offer", json={"sdp": "v=0", "type": "answer"}), 400)
    await expect_error(await session.post(url + "/offer", json={"type": "offer"}), 400)
    err = await expect_error(await session.post(url + "/offer", json={"sdp": "hello", "type": "offer"}), 400)
    assert "SDP" in err
    garbage = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nm=audio nonsense\r\n"
    err = await expect_error(await session.post(url + "/offer", json={"sdp": garbage, "type": "offer"}), 400)
    assert "SDP" in err
    # a valid offer without audio is refused with a reason
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    err = await expect_error(await session.post(url + "/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}), 400)
    assert "audio" in err
    await pc.close()
    for bad in (
        {"privacy": "public"},
        {"privacy": "room"},
        {"size": 1000},
        {"skin_tone": "green"},
        {"seed": 12345},
        {"seed": "x" * 300},
        {"room": "x" * 500, "privacy": "room"},
    ):
        await expect_error(await session.post(url + "/offer", json={"sdp": "v=0\r\n", "type": "offer", **bad}), 400)
    assert not state.calls and state.admission.in_use == 0


@pytest.mark.asyncio
async def test_websocket_twin(api, speech_wav):
    from aiortc import RTCSessionDescription

    from tests.server_helpers import ArrayAudioTrack, Caller, read_wav_16k, to_48k, wait_for

    url, session, state = api
    async with session.ws_connect(url + "/ws") as ws:
        await ws.send_str("{oops")
        assert (await ws.receive_json())["status"] == 400
        await ws.send_json({"type": "offer", "sdp": "nope"})
        reply = await ws.receive_json()
        assert reply["type"] == "error" and reply["status"] == 400
        caller = Caller(url, ArrayAudioTrack(to_48k(read_wav_16k(speech_wav["male"])[:32000]), loop=True))
        await caller.pc.setLocalDescription(await caller.pc.createOffer())
        await ws.send_json({"type": "offer", "sdp": caller.pc.localDescription.sdp})
        reply = await ws.receive_json()
        assert reply["type"] == "answer", reply
        await caller.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        assert await wait_for(lambda: caller.first_frame_at is not None, 5.0)
        assert len(state.calls) == 1
    # closing the socket hangs up
    assert await wait_for(lambda: not state.calls, 5.0)
    await caller.close()


@pytest.mark.asyncio
async def test_avatar_look_seed_sets_the_colours_for_any_voice(api, speech_wav):
    from engines.look import LOOK_PARAMS, look_values

    url, session, _ = api
    looks = []
    for gender in ("female", "male"):
        r = await session.post(url + "/v1/avatar?format=json&seed=my-own-look", data=speech_wav[gender].read_bytes())
        assert r.status == 200
        looks.append({k: (await r.json())["face"]["params"][k] for k in LOOK_PARAMS})
    assert looks[0] == looks[1] == {k: pytest.approx(v, abs=1e-6) for k, v in look_values("my-own-look").items()}
    await expect_error(await session.post(url + "/v1/avatar?seed=" + "x" * 300, data=b"x"), 400)
