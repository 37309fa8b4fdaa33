"""The demo's offline TTS (``/v1/tts``, Piper with the voice from its PyPI wheel) and the page route."""

from __future__ import annotations

import io
import wave

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from server import tts
from server.config import ServerConfig
from tests.server_helpers import serving

needs_piper = pytest.mark.skipif(not tts.PiperTts.installed(), reason="the [tts] extra is not installed")


@pytest_asyncio.fixture
async def api(onnx_engine):
    async with serving(onnx_engine, ServerConfig(port=0)) as (url, state), aiohttp.ClientSession() as session:
        yield url, session


async def expect_error(resp: aiohttp.ClientResponse, status: int) -> str:
    assert resp.status == status, (resp.status, await resp.text())
    body = await resp.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body["error"]


@needs_piper
@pytest.mark.asyncio
async def test_tts_speaks_a_sentence_as_wav(api):
    url, session = api
    status = await (await session.get(url + "/v1/tts")).json()
    assert status["available"] is True and status["sample_rate"] == 22050
    r = await session.post(url + "/v1/tts", json={"text": "The quick brown fox jumps over the lazy dog."})
    assert r.status == 200 and r.content_type == "audio/wav"
    with wave.open(io.BytesIO(await r.read())) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    seconds = len(pcm) / 22050
    assert 1.5 < seconds < 6.0, seconds  # nine words of speech
    assert float(r.headers["X-Speech-Seconds"]) == pytest.approx(seconds, abs=1e-3)
    # speech, not silence or noise: loud 20 ms windows alternate with quiet ones (syllables and pauses)
    frames = pcm[: len(pcm) // 441 * 441].reshape(-1, 441).astype(float)
    rms = np.sqrt((frames**2).mean(axis=1))
    assert rms.max() > 1500 and (rms < 0.1 * rms.max()).mean() > 0.05


@pytest.mark.asyncio
async def test_tts_bad_requests_get_reasons(api):
    url, session = api
    assert "JSON" in await expect_error(await session.post(url + "/v1/tts", data=b"{nope"), 400)
    assert "text" in await expect_error(await session.post(url + "/v1/tts", json={"text": "  "}), 400)
    assert "text" in await expect_error(await session.post(url + "/v1/tts", json=["hi"]), 400)
    assert "600" in await expect_error(await session.post(url + "/v1/tts", json={"text": "a" * 601}), 413)


@pytest.mark.asyncio
async def test_tts_missing_says_how_to_install(api, monkeypatch):
    url, session = api
    monkeypatch.setattr(tts.PiperTts, "installed", staticmethod(lambda: False))
    assert "speech2face[tts]" in await expect_error(await session.post(url + "/v1/tts", json={"text": "hi"}), 503)
    status = await (await session.get(url + "/v1/tts")).json()
    assert status["available"] is False and "speech2face[tts]" in status["error"]


@pytest.mark.asyncio
async def test_assistant_page_and_assets_are_served(api):
    url, session = api
    page = await session.get(url + "/assistant")
    assert page.status == 200 and 'id="speak"' in await page.text()
    for asset in ("/static/assistant.js", "/static/assistant.css"):
        assert (await session.get(url + asset)).status == 200
