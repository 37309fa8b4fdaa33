"""``/v1/assistant`` over a real aiohttp websocket on loopback: frames, lip-sync, segments,
interruption, refinement from the TTS voice, and every kind of bad input."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from server.config import ServerConfig
from tests.server_helpers import envelope_db, serving

RATE = 24_000
FPS = 25


@pytest.fixture(scope="module")
def tts(tts24k) -> np.ndarray:
    return tts24k["male"]


@pytest_asyncio.fixture
async def server(onnx_engine):
    async with serving(onnx_engine, ServerConfig(port=0, session_budget=3)) as served:
        yield served


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/v1/assistant"


class Client:
    """Reads everything the server sends, with arrival times."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[tuple[float, bytes]] = []
        self.events: list[tuple[float, dict]] = []
        self.closed_code: int | None = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            now = time.monotonic()
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.frames.append((now, msg.data))
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append((now, json.loads(msg.data)))
        self.closed_code = self.ws.close_code

    def of(self, kind: str) -> list[dict]:
        return [e for _, e in self.events if e["type"] == kind]

    async def wait(self, pred, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            await asyncio.sleep(0.01)
        return bool(pred())


async def start(session, url, **kw) -> Client:
    ws = await session.ws_connect(ws_url(url))
    await ws.send_json({"type": "start", "sample_rate": RATE, "fps": FPS, **kw})
    return Client(ws)


async def send_speech(ws, pcm: np.ndarray, piece_s: float = 0.2) -> None:
    n = int(piece_s * RATE)
    for i in range(0, len(pcm), n):
        await ws.send_bytes(pcm[i : i + n].astype("<i2").tobytes())


@pytest.mark.asyncio
async def test_frames_lip_sync_and_segment_end(server, tts):
    url, state = server
    speech = tts[: 4 * RATE]
    async with aiohttp.ClientSession() as session:
        c = await start(session, url, frame_events=True, seed="helpdesk")
        assert await c.wait(lambda: len(c.frames) >= 5)
        assert state.metrics.assistant_sessions._value.get() == 1
        await send_speech(c.ws, speech)
        await c.ws.send_json({"type": "end"})
        assert await c.wait(lambda: c.of("playback_finished"), 15.0)
        await asyncio.sleep(0.5)
        metrics = await (await session.get(url + "/metrics")).text()
        await c.ws.close()
        await c.task
    assert "s2f_assistant_sessions_total 1.0" in metrics and "s2f_live_assistant_sessions 1.0" in metrics
    # frames at fps, JPEG at the asked size, one frame event after each frame
    times = np.array([t for t, _ in c.frames])
    fps = (len(times) - 1) / (times[-1] - times[0])
    assert 0.7 * FPS < fps < 1.1 * FPS, fps  # paced (a loaded machine may drop a few, never burst)
    img = Image.open(io.BytesIO(c.frames[-1][1]))
    assert img.format == "JPEG" and img.size == (256, 256)
    frames = c.of("frame")
    index = np.array([f["index"] for f in frames])
    assert (np.diff(index) >= 1).all() and len(index) >= 0.9 * (index[-1] - index[0] + 1)  # slots in order, few skipped
    # the segment: started, then finished at the audio's duration
    kinds = [e["type"] for _, e in c.events if e["type"] != "frame"]
    assert kinds == ["playback_started", "playback_finished"], kinds
    end = c.of("playback_finished")[0]
    assert end == {"type": "playback_finished", "position": pytest.approx(len(speech) / RATE, abs=1e-3), "interrupted": False}
    # mouth follows the energy of the audio at each frame's t; closed while idle
    talking = [f for f in frames if f["t"] is not None]
    t = np.array([f["t"] for f in talking])
    steps = np.diff(t) * FPS
    assert t[0] == 0.0 and np.allclose(steps, np.round(steps)) and (np.round(steps) >= 1).all()  # whole slots
    ref = envelope_db(speech, t + 1 / FPS, window=1 / FPS, rate=RATE)
    mouth = np.array([f["mouth"] for f in talking])
    r = float(np.corrcoef(mouth, np.clip(ref, -60, 0))[0, 1])
    assert r > 0.7, r
    idle = [f["mouth"] for f in frames if f["t"] is None]
    assert len(idle) > 10 and max(idle) == 0.0
    assert await asyncio.wait_for(_released(state), 5.0)


async def _released(state) -> bool:
    while state.assistants or state.admission.in_use:
        await asyncio.sleep(0.05)
    return True


@pytest.mark.asyncio
async def test_clear_interrupts_within_a_frame_and_rgb24(server, tts):
    url, state = server
    async with aiohttp.ClientSession() as session:
        c = await start(session, url, frame_events=True, format="rgb24", size=384, face={"femininity": 0.9})
        await send_speech(c.ws, tts[: 5 * RATE], piece_s=1.0)
        assert await c.wait(lambda: any(f["t"] is not None and f["t"] > 1.0 and f["mouth"] > 0.3 for f in c.of("frame")))
        n_before = len(c.frames)
        sent = time.monotonic()
        await c.ws.send_json({"type": "clear"})
        assert await c.wait(lambda: c.of("playback_finished"), 5.0)
        got = next(t for t, e in c.events if e["type"] == "playback_finished")
        assert await c.wait(lambda: len(c.frames) > n_before + 5)
        await c.ws.send_json({"type": "end"})  # a flush after the interruption: no second event
        await asyncio.sleep(0.3)
        await c.ws.close()
        await c.task
    assert len(c.frames[-1][1]) == 384 * 384 * 3
    end = c.of("playback_finished")
    assert len(end) == 1 and end[0]["interrupted"] is True and 1.0 < end[0]["position"] < 5.0
    # within one frame period: at most one frame went out between the clear and the event
    # (wall time is reported; a shared machine stretches it, frame counts do not)
    frames_between = sum(1 for t, _ in c.frames if sent <= t < got)
    assert frames_between <= 1, frames_between
    events_after = [e for t, e in c.events if t > got and e["type"] == "frame"]
    assert events_after and events_after[0]["mouth"] == 0.0 and events_after[0]["t"] is None
    print(f"\nclear → playback_finished {1000 * (got - sent):.1f} ms")


@pytest.mark.asyncio
async def test_face_refines_from_the_voice(server, tts):
    url, state = server
    async with aiohttp.ClientSession() as session:
        c = await start(session, url)  # no face, no seed: the TTS voice decides
        await send_speech(c.ws, tts, piece_s=0.5)
        await c.ws.send_json({"type": "end"})
        assert await c.wait(lambda: c.of("playback_finished"), 20.0)
        await c.ws.send_json({"type": "close"})  # graceful: the server closes once nothing is queued
        await asyncio.wait_for(c.task, 5.0)
    faces = c.of("face")
    assert faces, "no refinement event"
    v = [f["version"] for f in faces]
    assert v == sorted(v) and faces[-1]["speech_seconds"] <= 6.0 + 1e-6
    assert {"gender", "age", "face", "confidence"} <= set(faces[-1])
    assert c.closed_code == 1000


@pytest.mark.asyncio
async def test_bad_input_gets_an_error_and_a_close_code_and_harms_no_one(server, tts, caplog, monkeypatch):
    from server import assistant_ws

    monkeypatch.setattr(assistant_ws, "START_TIMEOUT_S", 0.3)
    url, state = server
    async with aiohttp.ClientSession() as session:
        good = await start(session, url, seed="bystander", frame_events=True)
        assert await good.wait(lambda: len(good.frames) >= 3)

        async def bad(first, then=None) -> tuple[dict, int]:
            ws = await session.ws_connect(ws_url(url), max_msg_size=0)
            if isinstance(first, bytes):
                await ws.send_bytes(first)
            else:
                await ws.send_str(first if isinstance(first, str) else json.dumps(first))
            for m in then or ():
                await (ws.send_bytes(m) if isinstance(m, bytes) else ws.send_json(m))
            err = None
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "error":
                    err = json.loads(msg.data)
            return err, ws.close_code

        start_ok = {"type": "start", "sample_rate": RATE, "seed": "x"}
        cases = [
            (bytes(960), None, 400, 1008, "start"),  # audio before any start message
            ("not json", None, 400, 1008, "JSON"),
            ({"type": "end"}, None, 400, 1008, "first message"),
            ({"type": "start", "sample_rate": 44100}, None, 400, 1008, "sample_rate"),
            ({"type": "start", "sample_rate": RATE, "size": 100}, None, 400, 1008, "size"),
            ({"type": "start", "sample_rate": RATE, "format": "png"}, None, 400, 1008, "format"),
            ({"type": "start", "sample_rate": RATE, "face": {"wings": 1}}, None, 400, 1008, "unknown face"),
            (start_ok, [bytes(600 * 1024)], 413, 1009, "over"),  # oversize message
            (start_ok, [bytes(961)], 400, 1008, "even"),
            (start_ok, [bytes(2 * RATE), {"type": "close"}, bytes(960)], 409, 1008, "after close"),  # while 1 s plays out
            (start_ok, [{"type": "start", "sample_rate": RATE}], 400, 1008, "already"),
        ]
        for first, then, status, code, words in cases:
            err, close_code = await bad(first, then)
            assert err is not None and err["status"] == status and words in err["error"], (first, err)
            assert close_code == code, (first, close_code)
        # a client that never sends its start message is told so and closed
        silent = await session.ws_connect(ws_url(url))
        msg = await silent.receive(timeout=5.0)
        assert msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["status"] == 408
        await silent.receive(timeout=5.0)
        assert silent.close_code == 1008
        # an unknown control message is answered but the session lives on
        c = await start(session, url, seed="y")
        await c.ws.send_json({"type": "dance"})
        assert await c.wait(lambda: c.of("error"))
        n = len(c.frames)
        assert await c.wait(lambda: len(c.frames) > n + 3)
        await c.ws.close()
        await c.task
        # the bystander never stopped: frames kept coming at its pace through all of that
        times = np.array([t for t, _ in good.frames])
        assert np.diff(times).max() < 0.5, np.diff(times).max()
        await send_speech(good.ws, tts[:RATE])
        await good.ws.send_json({"type": "end"})
        assert await good.wait(lambda: good.of("playback_finished"), 10.0)
        await good.ws.close()
        await good.task
        assert not good.of("error")
    assert await asyncio.wait_for(_released(state), 5.0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "bad input must not log errors or tracebacks"


@pytest.mark.asyncio
async def test_assistants_count_in_the_admission_budget(onnx_engine):
    async with serving(onnx_engine, ServerConfig(port=0, session_budget=1)) as (url, state):
        async with aiohttp.ClientSession() as session:
            first = await start(session, url, seed="a")
            assert await first.wait(lambda: len(first.frames) >= 2)
            health = await (await session.get(url + "/healthz")).json()
            assert health["sessions"] == 1
            second = await start(session, url, seed="b")
            await asyncio.wait_for(second.task, 5.0)
            err = second.of("error")[0]
            assert err["status"] == 503 and err["retry_after"] == state.config.retry_after
            assert second.closed_code == 1013
            # a call is refused too while the assistant holds the only slot
            r = await session.post(url + "/offer", json={"type": "offer", "sdp": "v=0\r\n"})
            assert r.status == 503
            await first.ws.close()
            await first.task
            assert await asyncio.wait_for(_released(state), 5.0)
            third = await start(session, url, seed="c")
            assert await third.wait(lambda: len(third.frames) >= 2)
            await third.ws.close()
            await third.task
