"""Three headless Chromiums with three different voices in one room, through the real page,
our server and a real Janus (started by the server from our config), all on loopback.

Each must see the other two as avatar tiles whose faces differ, whose videos play and
advance and whose voices carry energy; a fourth person joins and leaves mid-call and every
page's tiles follow; a full room says so on the page; and when Janus is killed the pages
say the media relay is reconnecting and the call comes back by itself.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from server.config import ServerConfig
from server.janus_supervisor import find_janus
from tests.room_client import RoomError, RoomParticipant
from tests.room_helpers import serving_rooms, voice_48k
from tests.server_helpers import ArrayAudioTrack, wait_for, write_wav
from tests.test_browser import CHROMIUM, OUTPUT_DIR, chromium_args

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(find_janus() is None, reason="Janus is not installed (apt-get install janus)"),
]

VOICES = ("espeak-en-us-f3", "mbrola-us2", "espeak-en-m3", "mbrola-us1")
NAMES = ("Ada", "Bram", "Chen", "Dana")
CAP = 4

TILES_JS = """() => {
  const out = {};
  for (const [feed, t] of window.s2fRoom.tiles) {
    const q = t.video.getVideoPlaybackQuality();
    out[feed] = {self: t.self, name: t.name, frames: q.totalVideoFrames, time: t.video.currentTime,
                 width: t.video.videoWidth, live: t.el.classList.contains("live")};
  }
  return out;
}"""

AUDIO_JS = """async () => {
  const r = window.s2fRoom, out = {};
  if (!r.sub) return out;
  for (const tr of r.sub.getTransceivers()) {
    const info = r.streams.get(tr.mid);
    if (!info || info.type !== "audio") continue;
    const stats = await tr.receiver.getStats();
    stats.forEach((s) => { if (s.type === "inbound-rtp") out[info.feed] = s.totalAudioEnergy || 0; });
  }
  return out;
}"""

PIXELS_JS = """(feed) => {
  const t = window.s2fRoom.tiles.get(feed);
  const c = document.createElement("canvas");
  c.width = c.height = 64;
  const g = c.getContext("2d");
  g.drawImage(t.video, 0, 0, 64, 64);
  return Array.from(g.getImageData(0, 0, 64, 64).data);
}"""


def remote_live(tiles: dict) -> dict:
    return {f: t for f, t in tiles.items() if not t["self"] and t["live"] and t["width"] > 0}


@pytest_asyncio.fixture
async def room_server(onnx_engine):
    async with serving_rooms(onnx_engine, ServerConfig(port=0, session_budget=8, room_cap=CAP)) as served:
        yield served


@pytest.mark.asyncio
async def test_three_browsers_see_and_hear_each_other(room_server, tmp_path):
    from playwright.async_api import async_playwright

    url, state, svc = room_server
    wavs = []
    for i, name in enumerate(VOICES):
        wavs.append(write_wav(tmp_path / f"mic{i}.wav", voice_48k(name), 48_000))
    async with aiohttp.ClientSession() as http:
        room = (await (await http.post(url + "/v1/rooms")).json())["room"]
        async with async_playwright() as p:
            contexts, console = [], []

            async def browser(i: int):
                ctx = await p.chromium.launch_persistent_context(
                    str(tmp_path / f"profile{i}"),
                    executable_path=CHROMIUM,
                    headless=True,
                    args=chromium_args(wavs[i]),
                    viewport={"width": 800, "height": 600},
                )
                contexts.append(ctx)
                page = ctx.pages[0] if ctx.pages else await ctx.new_page()
                page.on("console", lambda m: console.append(f"{i} {m.type}: {m.text}"))
                return page

            try:
                await _run(http, url, room, svc, browser)
            finally:
                for ctx in contexts:
                    await ctx.close()
    assert await wait_for(lambda: not svc.members, 10.0), "members left behind"
    errors = [c for c in console if " error: " in c and "favicon" not in c]
    assert not errors, errors


async def _join(page, url: str, room: str, name: str) -> float:
    await page.goto(f"{url}/r/{room}")
    await page.fill("#name", name)
    t0 = time.monotonic()
    await page.click("#join")
    return t0


async def _tiles(page) -> dict:
    return await page.evaluate(TILES_JS)


async def _wait_remote(page, n: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    tiles = {}
    while time.monotonic() < deadline:
        tiles = await _tiles(page)
        live = remote_live(tiles)
        if len(live) == n and sum(1 for t in tiles.values() if not t["self"]) == n:
            return live
        await asyncio.sleep(0.2)
    raise AssertionError(f"expected {n} live remote tiles, got {tiles}; message: {await page.text_content('#message')}")


async def _run(http, url, room, svc, browser) -> None:
    a, b, c = [await browser(i) for i in range(3)]
    joined_at = [await _join(pg, url, room, NAMES[i]) for i, pg in enumerate((a, b, c))]
    first_remote = []
    for i, pg in enumerate((a, b, c)):
        await _wait_remote(pg, 2, timeout=60.0)
        first_remote.append(time.monotonic() - joined_at[i])
    print(f"join → two live remote tiles: {[round(x, 2) for x in first_remote]} s")

    # names: everybody sees the other two by name
    for i, pg in enumerate((a, b, c)):
        names = {t["name"] for t in (await _tiles(pg)).values() if not t["self"]}
        assert names == set(NAMES[:3]) - {NAMES[i]}, names

    # let every face develop (traits after ~1 s, identity from 4 s of speech)
    await asyncio.sleep(8.0)
    for i, pg in enumerate((a, b, c)):
        before = remote_live(await _tiles(pg))
        energy0 = await pg.evaluate(AUDIO_JS)
        await asyncio.sleep(2.0)
        after = remote_live(await _tiles(pg))
        energy1 = await pg.evaluate(AUDIO_JS)
        assert set(after) == set(before) and len(after) == 2
        for feed in after:
            assert after[feed]["frames"] - before[feed]["frames"] >= 16, (i, feed, before[feed], after[feed])  # ≥ 8 fps
            assert after[feed]["time"] > before[feed]["time"] + 1.0, (i, feed)
            assert energy1.get(feed, 0) > energy0.get(feed, 0) > 0, (i, feed, energy0, energy1)
        f1, f2 = sorted(after)
        probes = []  # (within, between): a face may be mid-morph (a refinement) in one probe, not in all
        for _ in range(3):
            px = {f: np.array(await pg.evaluate(PIXELS_JS, f), np.float32) for f in (f1, f2)}
            await asyncio.sleep(0.5)
            px_later = {f: np.array(await pg.evaluate(PIXELS_JS, f), np.float32) for f in (f1, f2)}
            within = max(float(np.abs(px[f] - px_later[f]).mean()) for f in (f1, f2))
            probes.append((within, float(np.abs(px[f1] - px[f2]).mean())))
            if probes[-1][1] > 6.0 and probes[-1][1] > 2.0 * within:
                break
        assert any(between > 6.0 and between > 2.0 * within for within, between in probes), (i, probes)
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    await a.screenshot(path=str(OUTPUT_DIR / "room_browser.png"))

    # a fourth person joins mid-call: every page grows a tile; then leaves: the tile goes
    d = await browser(3)
    t_join = await _join(d, url, room, NAMES[3])
    for pg in (a, b, c, d):
        await _wait_remote(pg, 3, timeout=60.0)
    print(f"fourth joins → a live tile on every page: {time.monotonic() - t_join:.2f} s")
    await d.click("#leave")
    t_left = time.monotonic()
    for pg in (a, b, c):
        await _wait_remote(pg, 2, timeout=10.0)
    print(f"leave → tile gone everywhere: {time.monotonic() - t_left:.2f} s")
    assert "left the call" in await d.text_content("#message")

    # the cap: fill the room with a fourth (aiortc) participant, then the page says it is full
    speech = voice_48k(VOICES[3], 0)
    filler = RoomParticipant(url, room, "Filler", ArrayAudioTrack(speech, loop=True))
    await filler.join(http)
    try:
        extra = RoomParticipant(url, room, "Extra", ArrayAudioTrack(speech))
        with pytest.raises(RoomError) as full:
            await extra.join(http)
        await extra.close()
        assert full.value.status == 409 and full.value.reason == "room_full"
        await d.click("#join")
        await d.wait_for_function("document.getElementById('message').textContent.includes('full')", timeout=15_000)
        assert "4 people" in await d.text_content("#message")
        assert not remote_live(await _tiles(d))
        assert await d.is_visible("#join")
    finally:
        await filler.leave()
    for pg in (a, b, c):
        await _wait_remote(pg, 2, timeout=10.0)

    # Janus dies: the server says so (healthz, each page), restarts it, and the call comes back
    sup = svc.supervisor
    restarts = sup.restarts
    os.kill(sup.pid, 9)
    await a.wait_for_function("document.getElementById('message').textContent.includes('reconnecting')", timeout=10_000)
    # restarted (the tiles may still look live from before the supervisor noticed, so wait for it)
    assert await wait_for(lambda: sup.restarts == restarts + 1 and sup.state == "up", 30.0), sup.status()
    for pg in (a, b, c):
        await _wait_remote(pg, 2, timeout=30.0)
    health = await (await http.get(url + "/healthz")).json()
    assert health["rooms"]["janus"]["state"] == "up", health
    await asyncio.sleep(2.0)
    for pg in (a, b, c):
        before = remote_live(await _tiles(pg))
        await asyncio.sleep(1.5)
        after = remote_live(await _tiles(pg))
        for feed in after:
            assert after[feed]["frames"] - before.get(feed, {"frames": 0})["frames"] >= 10, (feed, before, after)
    for pg in (a, b, c):
        await pg.click("#leave")
