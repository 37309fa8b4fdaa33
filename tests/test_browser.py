"""A real browser joins a call through the real page with a microphone playing speech: the
avatar video plays and advances, and the page shows seconds of speech heard growing, a
refined face, attributes and a download link; leaving ends the call. Run in headless
Chromium (Playwright, its fake capture device playing a WAV) and in Debian's Firefox ESR
(puppeteer-core over WebDriver BiDi, ``tests/browser/call.mjs``: Firefox's fake microphone
is a tone, so the page's microphone is a WebAudio stream of the same speech). A screenshot
of each is saved under the test output directory."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import pytest_asyncio

from server.config import ServerConfig
from tests.server_helpers import read_wav_16k, serving, to_48k, write_wav

CHROMIUM = os.environ.get("S2F_CHROMIUM", "/usr/bin/chromium")
FIREFOX = os.environ.get("S2F_FIREFOX", "/usr/bin/firefox-esr")
ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = Path(os.environ.get("S2F_TEST_OUTPUT", ROOT / "test-output"))
BROWSER_DIR = ROOT / "tests" / "browser"


def assert_call_seen(seen: dict) -> None:
    """What a person in either browser must see (the measurements each driver takes)."""
    assert seen["videoWidth"] == 256, seen
    assert seen["frames1"] - seen["frames0"] >= 30, seen  # ≥ 7.5 fps shown over 4 s
    assert seen["time1"] > seen["time0"], seen
    assert seen["heard1"] >= 2.0 and seen["heard1"] > seen["heard0"], seen
    assert seen["framesSeen"] > 30, seen
    assert seen["version"] >= 3, seen
    assert seen["gender"] and seen["gender"] not in ("—", "listening…"), seen
    assert seen["download"] and seen["download"].startswith("/v1/calls/"), seen
    assert "left the call" in seen["message"], seen


async def assert_call_released(state) -> None:
    for _ in range(50):
        if not state.calls:
            break
        await asyncio.sleep(0.1)
    assert not state.calls, "leaving did not end the call"


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


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
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
            seen: dict = {"videoWidth": await page.evaluate("document.getElementById('avatar').videoWidth")}
            frames = "document.getElementById('avatar').getVideoPlaybackQuality().totalVideoFrames"
            seen["frames0"] = await page.evaluate(frames)
            seen["time0"] = await page.evaluate("document.getElementById('avatar').currentTime")
            seen["heard0"] = float(await page.text_content("#heard"))
            await asyncio.sleep(4.0)
            seen["frames1"] = await page.evaluate(frames)
            seen["time1"] = await page.evaluate("document.getElementById('avatar').currentTime")
            await page.wait_for_function("parseFloat(document.getElementById('heard').textContent) >= 2.0", timeout=15_000)
            seen["heard1"] = float(await page.text_content("#heard"))
            seen["framesSeen"] = await page.evaluate("window.s2f.framesSeen")
            seen["version"] = int(await page.text_content("#version"))
            seen["gender"] = await page.text_content("#gender")
            seen["download"] = await page.get_attribute("#dl-png", "href")
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
            seen["message"] = await page.text_content("#message")
        finally:
            await ctx.close()
    assert_call_seen(seen)
    await assert_call_released(state)
    assert not [c for c in console if c.startswith("error")], console


def _firefox_missing() -> str | None:
    if shutil.which("pulseaudio") is None:
        return "no pulseaudio (Firefox's WebAudio needs an audio output; scripts/sysdeps.sh installs it)"
    if not Path(FIREFOX).exists():
        return f"no Firefox at {FIREFOX} (apt-get install firefox-esr; scripts/sysdeps.sh does)"
    if shutil.which("node") is None:
        return "no node (scripts/sysdeps.sh installs it)"
    if not (BROWSER_DIR / "node_modules" / "puppeteer-core").exists():
        return "puppeteer-core not installed (make test runs npm ci in tests/browser)"
    return None


@pytest_asyncio.fixture
async def host_ice_server(onnx_engine):
    """Firefox never offers a loopback ICE candidate (ESR 153 ignores media.peerconnection.ice.loopback
    and .force_interface here), so its call uses this machine's own interface address: ICE on
    host candidates only, no ICE servers, no packet leaves the machine."""
    from server import ice

    async with serving(onnx_engine, ServerConfig(port=0, session_budget=2, loopback_only=False)) as served:
        ice.use_loopback_only(False)  # aioice gathers the machine's addresses for this server's peers
        try:
            yield served
        finally:
            ice.use_loopback_only(True)


@pytest.fixture
def null_audio_output(tmp_path):
    """A PulseAudio daemon with one null sink, private to this test: the XDG_RUNTIME_DIR to use."""
    runtime = tmp_path / "pulse-runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path))
    proc = subprocess.Popen(
        [
            "pulseaudio",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "-n",
            "--disallow-exit",
            "--use-pid-file=no",
            "--load=module-null-sink",
            "--load=module-native-protocol-unix",
            "--log-target=stderr",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if (runtime / "pulse" / "native").exists():
                break
            time.sleep(0.1)
        assert (runtime / "pulse" / "native").exists(), "pulseaudio did not start"
        yield runtime
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(_firefox_missing() is not None, reason=str(_firefox_missing()))
@pytest.mark.asyncio
async def test_firefox_joins_and_sees_avatar(host_ice_server, speech_wav, null_audio_output, tmp_path):
    url, state = host_ice_server
    wav = write_wav(tmp_path / "speech.wav", to_48k(read_wav_16k(speech_wav["female"])), 48_000)
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT_DIR / "browser_call_firefox.png"
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(BROWSER_DIR / "call.mjs"),
        "--url",
        url,
        "--wav",
        str(wav),
        "--shot",
        str(shot),
        "--firefox",
        FIREFOX,
        cwd=BROWSER_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, HOME=str(tmp_path), TMPDIR=str(tmp_path), XDG_RUNTIME_DIR=str(null_audio_output)),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 180)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = out.decode().strip().splitlines()
    assert lines, err.decode()[-3000:]
    seen = json.loads(lines[-1])
    assert "failure" not in seen, (seen.get("failure"), seen.get("console"))
    assert "Firefox" in seen["userAgent"] and seen["hadMic"], seen
    assert seen["speech"] == "webaudio", seen  # the speech clip, not Firefox's fake tone
    # the page asked for the microphone with the browser's voice processing off
    (constraints,) = seen["micConstraints"]
    assert constraints["audio"]["echoCancellation"] is False and constraints["audio"]["noiseSuppression"] is False
    assert_call_seen(seen)
    await assert_call_released(state)
    assert not seen["errors"] and not [c for c in seen["console"] if c.startswith("error")], seen["console"]
    assert shot.exists() and shot.stat().st_size > 10_000
