"""Rooms with aiortc participants (no browser) on a real Janus the server starts itself.

Fan-out (rooms of 2, 4 and 8: every subscriber gets every other avatar at ≥ 12 fps; 4 on two workers), people
who vanish leave the room within 5 s, a full room says so, Janus dying is reported and
recovered from, and Janus being absent is a clear 503, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import re
import time

import aiohttp
import pytest
import pytest_asyncio

from server.config import ServerConfig
from server.janus_config import JanusSettings
from server.janus_supervisor import JanusSupervisor, find_janus
from tests.room_client import (
    RoomError,
    RoomParticipant,
    count_video_without_decoding,
    join_in_turn,
    ring_participants,
    route_retransmissions,
    skip_bandwidth_estimation,
)
from tests.room_helpers import ROOM_VOICES, descendant_names, server_process, serving_rooms, voice_48k
from tests.server_helpers import ArrayAudioTrack, serving, wait_for

pytestmark = pytest.mark.skipif(find_janus() is None, reason="Janus is not installed (apt-get install janus)")

MIN_FPS = 12.0


@pytest.fixture(scope="module")
def speech():
    return [voice_48k(v, 0) for v in ROOM_VOICES]


@pytest_asyncio.fixture
async def rooms(onnx_engine):
    async with serving_rooms(onnx_engine, ServerConfig(port=0, session_budget=16, room_cap=8)) as served:
        yield served


async def _room(http: aiohttp.ClientSession, url: str) -> str:
    resp = await http.post(url + "/v1/rooms")
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["url"] == f"/r/{body['room']}"
    return body["room"]


async def _everyone_sees_everyone(people: list[RoomParticipant], timeout: float) -> bool:
    def ok():
        for p in people:
            others = {q.id for q in people if q is not p}
            if set(p.remote_feeds()) != others:
                return False
            if any(len(p.feeds[f].video_times) < 3 for f in others):
                return False
        return True

    return await wait_for(ok, timeout, interval=0.2)


async def _frame_counters(http, url: str) -> dict[str, float]:
    """The server's avatar frames sent and frame slots held so far (all workers)."""
    text = await (await http.get(url + "/metrics")).text()
    found = dict(re.findall(r"^s2f_frames_(sent|held)_total ([0-9.e+]+)$", text, re.M))
    return {k: float(found.get(k, 0.0)) for k in ("sent", "held")}


def _not_seen(people: list[RoomParticipant]) -> list[tuple]:
    """(subscriber, its offers, publisher, frames) for every pair short of three frames."""
    short = []
    for p in people:
        for q in people:
            if q is not p:
                n = len(p.feeds[q.id].video_times) if q.id in p.remote_feeds() else None
                if n is None or n < 3:
                    short.append((p.name, p.offers, q.name, n))
    return short


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "workers, sizes",
    [
        (1, (2, 4, 8)),
        (2, (4,)),  # members of one room on both workers, one Janus: everyone sees and hears everyone
    ],
    ids=["one-worker", "two-workers"],
)
async def test_room_fan_out_every_subscriber_gets_every_avatar(speech, monkeypatch, tmp_path, workers, sizes):
    # The server in its own process, as `make run` runs it: one process hosting eight avatars
    # and eight participants' 112 incoming streams would measure the test's GIL. Faces settle
    # after 2 s of speech, so this measures fan-out, not eight engines refining at once on two
    # cores (bench/bench_rooms.py and the README give the refining cost).
    count_video_without_decoding(monkeypatch)
    route_retransmissions(monkeypatch)
    skip_bandwidth_estimation(monkeypatch)
    report, slowest = {}, {}
    args = ("--session-budget", "16", "--room-cap", "8", "--max-speech-seconds", "2", "--workers", str(workers))
    async with server_process(*args, log_path=str(tmp_path / "server.log")) as (url, proc):
        assert descendant_names(proc.pid).count("janus") == 1, descendant_names(proc.pid)  # one Janus for all workers
        async with aiohttp.ClientSession() as http:
            for size in sizes:
                room = await _room(http, url)
                people = ring_participants(url, room, [ArrayAudioTrack(speech[i], loop=True) for i in range(size)])
                try:
                    await join_in_turn(people, http)
                    if workers == 2:  # our server places members on the less loaded worker (ids name it)
                        by_worker = [sum(p.id.startswith(f"p{w:02x}") for p in people) for w in (0, 1)]
                        assert abs(by_worker[0] - by_worker[1]) <= 1, by_worker
                    assert await _everyone_sees_everyone(people, timeout=30.0), _not_seen(people)
                    await asyncio.sleep(3.0)  # 2 s of speech each, then the faces are final
                    counted0, t0 = await _frame_counters(http, url), time.monotonic()
                    await asyncio.sleep(3.0)
                    counted1, window = await _frame_counters(http, url), time.monotonic() - t0
                    pairs = {
                        (p.name, f): len([t for t in p.feeds[f].video_times if t > t0]) / window
                        for p in people
                        for f in p.remote_feeds()
                    }
                    fps = list(pairs.values())
                    # per avatar: frames sent, and frame slots served (sent + held: a picture already
                    # on screen is not sent again, so subscribers receive what was sent, not 15 fps)
                    sent, held = ((counted1[k] - counted0[k]) / window / size for k in ("sent", "held"))
                    report[size] = (min(fps), sum(fps) / len(fps), sent, sent + held)
                    slowest[size] = sorted(pairs.items(), key=lambda kv: kv[1])[:4]

                    # every feed carries its person's voice, and every subscriber hears voices (not
                    # every pair: each takes one voice, room_client.voice_ring says why)
                    def loud(p, feed):
                        return bool(p.feeds[feed].audio_rms) and max(p.feeds[feed].audio_rms) > 0.01

                    for p in people:
                        assert any(loud(p, f) for f in p.remote_feeds()), (size, p.name)
                        assert any(loud(q, p.id) for q in people if q is not p), (size, "nobody hears", p.name)
                finally:
                    for p in people:
                        await p.leave()

                async def members() -> int:
                    return (await (await http.get(url + "/healthz")).json())["rooms"]["members"]

                deadline = time.monotonic() + 10.0
                while await members() and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                assert await members() == 0
                low, mean, sent, served = report[size]
                assert served >= MIN_FPS, f"room of {size}: {served:.1f} frame slots per second per avatar ({report})"
                assert mean >= 0.9 * sent, f"room of {size}: subscribers got {mean:.1f} fps of {sent:.1f} sent ({report})"
                assert low >= 0.5 * sent, (
                    f"room of {size}: slowest subscriber got {low:.1f} fps of {sent:.1f} sent ({report}; slowest {slowest[size]})"
                )
    print(
        f"rooms, {workers} worker(s): min / mean fps per subscribed avatar",
        {k: tuple(round(x, 1) for x in v) for k, v in report.items()},
    )


@pytest.mark.asyncio
async def test_vanished_participant_leaves_within_5s(rooms, speech):
    url, state, svc = rooms
    async with aiohttp.ClientSession() as http:
        room = await _room(http, url)
        people = [RoomParticipant(url, room, f"V{i}", ArrayAudioTrack(speech[i], loop=True)) for i in range(3)]
        try:
            for p in people:
                await p.join(http)
            assert await _everyone_sees_everyone(people, timeout=30.0)
            gone = people.pop()
            t0 = time.monotonic()
            await gone.vanish()
            assert await wait_for(lambda: all(gone.id not in p.remote_feeds() for p in people), 5.0), [p.roster for p in people]
            took = time.monotonic() - t0
            assert await wait_for(lambda: gone.id not in svc.members, 2.0)
            print(f"vanished participant gone from every roster after {took:.2f} s")
            await gone.close()
        finally:
            for p in people:
                await p.leave()


@pytest.mark.asyncio
async def test_full_room_and_bad_links_answer_clearly(onnx_engine, speech):
    async with serving_rooms(onnx_engine, ServerConfig(port=0, room_cap=2)) as (url, state, svc):
        async with aiohttp.ClientSession() as http:
            room = await _room(http, url)
            people = [RoomParticipant(url, room, f"C{i}", ArrayAudioTrack(speech[i], loop=True)) for i in range(2)]
            try:
                for p in people:
                    await p.join(http)
                info = await (await http.get(f"{url}/v1/rooms/{room}")).json()
                assert info["participants"] == 2 and info["full"] is True and info["cap"] == 2
                third = RoomParticipant(url, room, "C2", ArrayAudioTrack(speech[2]))
                with pytest.raises(RoomError) as exc:
                    await third.join(http)
                await third.close()
                assert exc.value.status == 409 and exc.value.reason == "room_full"
                assert "full" in str(exc.value) and "2 people" in str(exc.value)
                assert len(state.calls) == 2, "a refused joiner must not cost a call"
            finally:
                for p in people:
                    await p.leave()
            # a link this server did not mint, over HTTP and over the websocket
            resp = await http.get(f"{url}/v1/rooms/abcdefghij-klmnop")
            assert resp.status == 404 and "not a room link" in (await resp.json())["error"]
            ws = await http.ws_connect(f"{url}/v1/rooms/nope/ws")
            msg = await ws.receive_json()
            assert msg["type"] == "error" and msg["status"] == 404
            await ws.close()
            # bad messages on a good link
            ws = await http.ws_connect(f"{url}/v1/rooms/{room}/ws")
            await ws.send_str("not json")
            assert (await ws.receive_json())["status"] == 400
            await ws.send_json({"type": "join", "name": "x" * 40, "offer": {"sdp": "v=0", "type": "offer"}})
            assert "name" in (await ws.receive_json())["error"]
            await ws.send_json({"type": "join", "offer": {"sdp": "garbage", "type": "offer"}})
            err = await ws.receive_json()
            assert err["status"] == 400 and "SDP" in err["error"]
            await ws.close()
            assert not state.calls and not svc.members


@pytest.mark.asyncio
async def test_janus_dies_is_reported_and_the_room_recovers(rooms, speech):
    url, state, svc = rooms
    sup = svc.supervisor
    async with aiohttp.ClientSession() as http:
        room = await _room(http, url)
        people = [RoomParticipant(url, room, f"K{i}", ArrayAudioTrack(speech[i], loop=True)) for i in range(2)]
        try:
            for p in people:
                await p.join(http)
            assert await _everyone_sees_everyone(people, timeout=30.0)
            offers = [p.offers for p in people]
            restarts = sup.restarts
            os.kill(sup.pid, 9)
            assert await wait_for(lambda: sup.state != "up", 3.0)
            health = await (await http.get(url + "/healthz")).json()
            assert health["status"] == "degraded" and health["rooms"]["janus"]["state"] in ("down", "starting"), health
            assert await wait_for(
                lambda: all(any(m.get("type") == "media-status" and m["state"] == "down" for m in p.messages) for p in people),
                5.0,
            )
            down = next(m for m in people[0].messages if m.get("type") == "media-status" and m["state"] == "down")
            assert "reconnecting" in down["message"]
            # Janus is restarted by the supervisor; every member publishes again, every page gets a fresh view
            assert await sup.wait_up(15.0)
            assert sup.restarts == restarts + 1
            assert await wait_for(lambda: all(p.offers > o for p, o in zip(people, offers)), 15.0)
            for p in people:
                for f in p.remote_feeds():
                    p.feeds[f].video_times.clear()
            assert await _everyone_sees_everyone(people, timeout=20.0)
            health = await (await http.get(url + "/healthz")).json()
            assert health["status"] == "ok" and health["rooms"]["janus"]["state"] == "up", health
            assert len(state.calls) == 2, "the calls (and their faces) survive a Janus restart"
        finally:
            for p in people:
                await p.leave()


@pytest.mark.asyncio
async def test_supervisor_stops_janus_with_us(tmp_path):
    sup = JanusSupervisor(JanusSettings(loopback=True))
    await sup.start(wait=10.0)
    try:
        assert sup.state == "up", sup.status()
        pid = sup.pid
        assert (await sup.client.info())["name"] == "Janus WebRTC Server"
    finally:
        await sup.stop()
    assert sup.state == "stopped"
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()


@pytest.mark.asyncio
async def test_without_janus_rooms_say_why(onnx_engine, monkeypatch):
    monkeypatch.setattr("server.janus_supervisor.find_janus", lambda: None)
    async with serving(onnx_engine, ServerConfig(port=0)) as (url, state):
        async with aiohttp.ClientSession() as http:
            from server.rooms import ROOMS  # noqa: F401 (the service registered itself)

            await asyncio.sleep(0.3)
            resp = await http.post(url + "/v1/rooms")
            body = await resp.json()
            assert resp.status == 503 and "apt-get install janus" in body["error"], body
            health = await (await http.get(url + "/healthz")).json()
            assert health["status"] == "ok" and health["rooms"]["janus"]["state"] == "unavailable"
            # the 1:1 page keeps working without Janus
            assert (await http.get(url + "/")).status == 200
