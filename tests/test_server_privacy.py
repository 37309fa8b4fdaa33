"""Serving calls and uploads writes no file and logs no audio.

The server runs as its own process with HOME, every XDG dir and TMPDIR pointing into an
empty folder and its working directory in another; it serves a real call, uploads in every
format, a download and some bad requests, then stops. Afterwards both folders are still
empty (ONNX Runtime's telemetry, which writes a device id and an event database under the
user's cache dir, is off), the model cache it was given is unchanged, and its log has no
traceback, no line long enough to hold a clip, and none of the uploaded bytes.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from engines.engine_cache import cache_root
from tests.server_helpers import ArrayAudioTrack, Caller, read_wav_16k, to_48k, use_loopback, wait_for

ROOT = Path(__file__).resolve().parent.parent


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


async def _serving_url(proc: subprocess.Popen, timeout: float = 90.0) -> str:
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), timeout)
    m = re.search(r"serving on (http://\S+?)/?$", line.decode().strip())
    assert m, line
    return m.group(1).rstrip("/")


@pytest.mark.asyncio
async def test_serving_writes_no_file_and_logs_no_audio(onnx_engine, speech_wav, tmp_path):
    use_loopback()
    home, cwd, tmp = tmp_path / "home", tmp_path / "cwd", tmp_path / "tmp"
    for d in (home, cwd, tmp):
        d.mkdir()
    cache = tmp_path / "model-cache"
    shutil.copytree(cache_root() / "onnx", cache / "onnx")  # exported by the onnx_engine fixture
    cached = _files(cache)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "S2F_", "ORT_"))}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"),
        TMPDIR=str(tmp),
        S2F_CACHE_DIR=str(cache),
        PYTHONPATH=str(ROOT),
        PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1",
    )
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.serve", "--port", "0", "--log-level", "debug"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    clip = speech_wav["female"].read_bytes()
    try:
        url = await _serving_url(proc)
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                async with session.get(url + "/healthz") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.2)
            caller = Caller(url, ArrayAudioTrack(to_48k(read_wav_16k(speech_wav["male"])), loop=True))
            assert (await caller.connect(session, privacy="room", room="kitchen")).status == 200
            assert await wait_for(lambda: any(m.get("version", 0) >= 4 for m in caller.result.status), 30.0)
            async with session.get(url + f"/v1/calls/{caller.call_id}/avatar?format=svg") as r:
                assert r.status == 200
            for fmt in ("png", "svg", "json"):
                async with session.post(url + f"/v1/avatar?format={fmt}", data=clip) as r:
                    assert r.status == 200, await r.text()
            form = aiohttp.FormData()
            form.add_field("audio", clip, filename="me.wav", content_type="audio/wav")
            async with session.post(url + "/v1/avatar", data=form) as r:
                assert r.status == 200
            async with session.post(url + "/v1/avatar", data=clip[:2000]) as r:  # truncated: an error, still no file
                assert 400 <= r.status < 500
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))  # audio past a short Content-Length
            writer.write(b"POST /v1/avatar HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n" + clip[:20000])
            await writer.drain()
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
            await caller.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _files(home) == {} and not any(home.iterdir()), sorted(p for p in home.rglob("*"))
    assert not any(cwd.iterdir()), sorted(cwd.rglob("*"))
    assert not any(tmp.iterdir()), sorted(tmp.rglob("*"))
    assert _files(cache) == cached
    text = log_path.read_bytes().decode("utf-8", "replace")
    assert "Traceback" not in text, text[-3000:]
    assert max(map(len, text.splitlines())) < 500
    assert "S2F_ROOM_SECRET is not set" in text  # the generated room secret is announced once
    assert text.count("S2F_ROOM_SECRET is not set") == 1
    tail = clip[-4000:]
    for i in range(0, len(tail) - 32, 512):
        piece = tail[i : i + 32]
        assert piece.decode("latin-1") not in text and repr(piece)[2:-1] not in text
