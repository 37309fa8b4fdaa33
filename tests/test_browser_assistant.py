"""The /assistant demo in headless Chromium: type a sentence, the offline voice speaks it
through the page's speakers (Web Audio), the avatar's frames arrive over /v1/assistant
with the mouth moving while the audio plays, in step with it, and Stop interrupts
mid-sentence. A screenshot is saved under the test output directory."""

from __future__ import annotations

import asyncio
import os
import statistics
from pathlib import Path

import pytest
import pytest_asyncio

from server import tts
from server.config import ServerConfig
from tests.server_helpers import serving

CHROMIUM = os.environ.get("S2F_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = Path(os.environ.get("S2F_TEST_OUTPUT", ROOT / "test-output"))
PERIOD = 1 / 25
SENTENCE = (
    "Good morning! I am the assistant on this page. My voice is made on this computer, "
    "and my face moves with every word I say, until you press stop."
)

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(not tts.PiperTts.installed(), reason="the [tts] extra is not installed"),
]


@pytest_asyncio.fixture
async def server(onnx_engine):
    async with serving(onnx_engine, ServerConfig(port=0, session_budget=2)) as served:
        yield served


async def wait_js(page, expr: str, timeout_s: float) -> None:
    await page.wait_for_function(expr, timeout=timeout_s * 1000)


@pytest.mark.asyncio
async def test_demo_speaks_lip_synced_and_stop_interrupts(server):
    from playwright.async_api import async_playwright

    url, state = server
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required", "--no-first-run"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 640})
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            await page.goto(url + "/assistant")
            await wait_js(page, "window.s2fAssistant.ready && window.s2fAssistant.drawn > 5", 20)
            assert len(state.assistants) == 1

            # idle: frames keep coming, nothing is said
            f0 = await page.evaluate("s2fAssistant.frames")
            await asyncio.sleep(1.0)
            f1 = await page.evaluate("s2fAssistant.frames")
            assert 18 <= f1 - f0 <= 30, f1 - f0
            idle = await page.evaluate("s2fAssistant.log")
            assert all(e[1] is None for e in idle)

            await page.fill("#text", SENTENCE)
            await page.click("#speak")
            await wait_js(page, "s2fAssistant.playing", 30)  # synthesis first (≈ 0.15 s CPU per s of speech)
            levels = []
            for _ in range(12):
                await asyncio.sleep(0.25)
                levels.append(await page.evaluate("s2fAssistant.level()"))
            OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(OUTPUT_DIR / "assistant_demo.png"))

            # sound comes out of the page while it speaks
            assert sum(x > 0.01 for x in levels) >= 6, levels
            log = await page.evaluate("s2fAssistant.log")
            speaking = [e for e in log if e[1] is not None]
            assert len(speaking) >= 60, len(speaking)  # ≥ 2.4 s of frames showing speech
            mouths = [e[2] for e in speaking]
            assert max(mouths) > 0.5 and statistics.pstdev(mouths) > 0.1  # it moves, not just opens
            assert sum(m > 0.2 for m in mouths) > 0.3 * len(mouths)
            # in step: where the audio is (its clock) vs the position each arriving frame shows
            offsets = [e[3] - e[1] for e in speaking if e[3] is not None]
            med = statistics.median(offsets)
            assert abs(med) <= PERIOD, (med, min(offsets), max(offsets))

            # Stop mid-sentence
            await page.click("#stop")
            await wait_js(page, "s2fAssistant.finished.length > 0", 2)
            fin = (await page.evaluate("s2fAssistant.finished"))[0]
            assert fin["interrupted"] is True
            assert 2.0 <= fin["position"] <= 8.0, fin  # stopped after ~3 s of a ~9 s sentence
            stopped_at = await page.evaluate("s2fAssistant.stoppedAt")
            assert fin["at"] - stopped_at < 200, fin["at"] - stopped_at
            await asyncio.sleep(0.6)
            log = await page.evaluate("s2fAssistant.log")
            after = [e for e in log if e[0] > stopped_at + 3 * PERIOD * 1000]
            assert len(after) >= 10
            assert all(e[1] is None and e[2] == 0 for e in after), after[:5]
            assert await page.evaluate("s2fAssistant.level()") < 0.001  # the page's sound stopped too
            assert await page.text_content("#state") == "stopped"
            assert not [c for c in console if c.startswith("error")], console
        finally:
            await browser.close()
    for _ in range(50):
        if not state.assistants:
            break
        await asyncio.sleep(0.1)
    assert not state.assistants, "closing the page did not end the assistant session"
