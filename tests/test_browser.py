"""Headless Chromium joins a call through the real page with a fake microphone playing
speech: the avatar video plays and advances, and the page shows seconds of speech heard
growing. A screenshot is saved under the test output directory."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import pytest_asyncio

from server.config import ServerConfig
from tests.server_helpers import read_wav_16k, serving, to_48k, write_wav

CHROMIUM = os.environ.get("S2F_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = Path(os.environ.get("S2F_TEST_OUTPUT", ROOT / "test-output"))

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


def chromium_args(wav: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    ]


@pytest_asyncio.fixture
async def server(onnx_engine):
    async with serving(onnx_engine, ServerConfig(port=0, session_budget=2)) as served:
        yield served


@pytest.mark.asyncio
async def test_browser_joins_and_sees_avatar(server, speech_wav, tmp_path):
    from playwright.async_api import async_playwright

    url, state = server
    # Chromium's fake capture wants 16-bit PCM; 48 kHz avoids its own resampling
    speech = read_wav_16k(speech_wav["female"])
    wav = write_wav(tmp_path / "mic.wav", to_48k(speech), 48_000)
    profile = tmp_path / "profile"
    async with async_playwright() as p:
        ctx = await p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=chromium_args(wav),
            viewport={"width": 1000, "height": 720},
        )
        try:
            page = ctx.pages[0] if ctx.pages else await ctx.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            await page.goto(url + "/?frame_events=1")
            await page.click("#join")
            await page.wait_for_function("document.getElementById('avatar').videoWidth > 0", timeout=10_000)
            assert await page.evaluate("document.getElementById('avatar').videoWidth") == 256
            frames0 = await page.evaluate("document.getElementById('avatar').getVideoPlaybackQuality().totalVideoFrames")
            t0 = await page.evaluate("document.getElementById('avatar').currentTime")
            heard0 = float(await page.text_content("#heard"))
            await asyncio.sleep(4.0)
            frames1 = await page.evaluate("document.getElementById('avatar').getVideoPlaybackQuality().totalVideoFrames")
            t1 = await page.evaluate("document.getElementById('avatar').currentTime")
            assert frames1 - frames0 >= 30, (frames0, frames1)
            assert t1 > t0
            await page.wait_for_function("parseFloat(document.getElementById('heard').textContent) >= 2.0", timeout=15_000)
            heard1 = float(await page.text_content("#heard"))
            assert heard1 > heard0
            assert await page.evaluate("window.s2f.framesSeen") > 30
            assert int(await page.text_content("#version")) >= 3
            gender = await page.text_content("#gender")
            assert gender and gender not in ("—",)
            # the download link points at the live face
            href = await page.get_attribute("#dl-png", "href")
            assert href and href.startswith("/v1/calls/")
            OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
            shot = OUTPUT_DIR / "browser_call.png"
            await page.screenshot(path=str(shot))
            shutil.copy(shot, tmp_path / "browser_call.png")
            assert len(state.calls) == 1
            # the look seed: random, kept in localStorage, sent with the offer; "New look" replaces it
            from engines.look import LOOK_PARAMS, look_values

            call = next(iter(state.calls.values()))
            seed = await page.evaluate("localStorage.getItem('speech2face.lookSeed')")
            assert seed and len(seed) == 24

            def wears(s: str) -> bool:
                return all(abs(call.current.params[k] - v) < 1e-6 for k, v in look_values(s).items() if k in LOOK_PARAMS)

            assert wears(seed)
            await page.click("#new-look")
            new_seed = await page.evaluate("localStorage.getItem('speech2face.lookSeed')")
            assert new_seed and new_seed != seed
            for _ in range(50):
                if wears(new_seed):
                    break
                await asyncio.sleep(0.1)
            assert wears(new_seed)
            await page.click("#leave")
            await page.wait_for_function("document.getElementById('join').disabled === false")
            assert "left the call" in (await page.text_content("#message"))
        finally:
            await ctx.close()
    for _ in range(50):
        if not state.calls:
            break
        await asyncio.sleep(0.1)
    assert not state.calls, "leaving did not end the call"
    assert not [c for c in console if c.startswith("error")], console
