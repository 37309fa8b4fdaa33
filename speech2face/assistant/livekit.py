"""LiveKit Agents avatar plugin: the agent's TTS in, a lip-synced face published in the room.

Why it looks like this: LiveKit Agents already has the avatar plumbing — an ``AudioOutput``
that the agent session speaks into, an ``AvatarRunner`` that pushes a ``VideoGenerator``'s
frames through ``rtc.AVSynchronizer`` and reports ``playback_finished`` back to the session.
We only supply the generator, so interruptions, transcript sync and metrics behave exactly
as with every other avatar provider. Two ways to run it, as the hosted providers do:

- **local** (default): the avatar renders inside the agent process; ``QueueAudioOutput``
  hands the TTS frames to an in-process ``AvatarRunner`` that publishes the tracks as the
  agent participant. No extra process, no network hop; the agent pays the CPU (a few % of
  a core per avatar at 256 px).
- **worker**: a second process joins the room as its own participant (token attribute
  ``lk.publish_on_behalf`` names the agent, so clients show the tracks as the agent's),
  receives the audio over a data stream (``DataStreamAudioOutput`` →
  ``DataStreamAudioReceiver``) and renders there — the agent process stays lean.

Tested without a LiveKit server (none installs on our machines): the generator, the real
``QueueAudioOutput`` and the real ``AvatarRunner``/``AVSynchronizer`` over a stand-in room.
The room-connected paths (publishing to a server, the worker's data stream) follow the
documented API but are untested; the README says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

import numpy as np
from livekit import api, rtc
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import (
    AudioSegmentEnd,
    AvatarOptions,
    AvatarRunner,
    DataStreamAudioOutput,
    DataStreamAudioReceiver,
    QueueAudioOutput,
    VideoGenerator,
)
from livekit.agents.voice.avatar import (
    AvatarSession as _BaseAvatarSession,
)

from .face import face_params
from .generator import AssistantAvatar, AudioOut, FaceEvent, SegmentEnd, VideoOut

log = logging.getLogger("speech2face.livekit")

SAMPLE_RATE = 24_000  # what the agent's TTS is resampled to before it reaches the avatar
WORKER_IDENTITY = "speech2face-avatar"
TOKEN_ENV = "S2F_LIVEKIT_TOKEN"  # the worker reads its token here, never from argv (ps shows argv)

FrameInfo = Callable[[VideoOut], None]


class Speech2FaceVideoGenerator(VideoGenerator):
    """A LiveKit ``VideoGenerator`` over :class:`AssistantAvatar`.

    ``on_frame`` (optional) sees every ``VideoOut`` before it becomes an ``rtc.VideoFrame``
    (index, mouth, audio position) — for metrics or lip-sync checks; ``on_face`` sees each
    face refinement.
    """

    def __init__(
        self,
        avatar: AssistantAvatar,
        *,
        on_frame: FrameInfo | None = None,
        on_face: Callable[[dict], None] | None = None,
    ) -> None:
        self._avatar = avatar
        self._on_frame = on_frame
        self._on_face = on_face

    @property
    def avatar(self) -> AssistantAvatar:
        return self._avatar

    def options(self) -> AvatarOptions:
        """What ``AvatarRunner`` needs to size its sources and synchroniser."""
        a = self._avatar
        return AvatarOptions(
            video_width=a.size, video_height=a.size, video_fps=a.fps, audio_sample_rate=a.sample_rate, audio_channels=1
        )

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            self._avatar.end_segment()
            return
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
        self._avatar.push_audio(pcm, frame.sample_rate)

    def clear_buffer(self) -> None:
        self._avatar.clear_buffer()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        async for item in self._avatar:
            if isinstance(item, VideoOut):
                if self._on_frame is not None:
                    self._on_frame(item)
                h, w = item.rgb.shape[:2]
                yield rtc.VideoFrame(w, h, rtc.VideoBufferType.RGB24, item.rgb.tobytes())
            elif isinstance(item, AudioOut):
                pcm = np.ascontiguousarray(item.pcm, dtype=np.int16)
                yield rtc.AudioFrame(pcm.tobytes(), item.sample_rate, 1, len(pcm))
            elif isinstance(item, SegmentEnd):
                # the runner counts the position itself (from the audio it forwarded) and
                # reports interruptions from its own clear_buffer handler
                yield AudioSegmentEnd()
            elif isinstance(item, FaceEvent) and self._on_face is not None:
                self._on_face(item.update)

    async def aclose(self) -> None:
        await self._avatar.aclose()


def make_avatar(sample_rate: int = SAMPLE_RATE, **avatar_options: Any) -> AssistantAvatar:
    """An :class:`AssistantAvatar` for LiveKit (``avatar_options``: face, seed, size, fps, engine, freeze_after_s)."""
    return AssistantAvatar(sample_rate=sample_rate, **avatar_options)


async def start_local_runner(
    room: rtc.Room, generator: Speech2FaceVideoGenerator, *, wait_playback_start: bool = True
) -> tuple[QueueAudioOutput, AvatarRunner]:
    """Wire ``QueueAudioOutput`` → ``AvatarRunner`` in this process (the bithuman plugin's local mode).

    Returns the audio output to hand to the agent session and the started runner.
    ``wait_playback_start``: ``playback_started`` fires when the avatar actually starts
    playing the audio, not when the TTS produced it.
    """
    audio = QueueAudioOutput(sample_rate=generator.avatar.sample_rate, wait_playback_start=wait_playback_start)
    runner = AvatarRunner(room, audio_recv=audio, video_gen=generator, options=generator.options())
    await runner.start()
    return audio, runner


def worker_token(
    *,
    room_name: str,
    agent_identity: str,
    api_key: str,
    api_secret: str,
    identity: str = WORKER_IDENTITY,
    name: str = "Speech2Face avatar",
) -> str:
    """A join token for the avatar worker: an agent participant that publishes on behalf of ``agent_identity``."""
    return (
        api.AccessToken(api_key=api_key, api_secret=api_secret)
        .with_kind("agent")
        .with_identity(identity)
        .with_name(name)
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: agent_identity})
        .to_jwt()
    )


class AvatarSession(_BaseAvatarSession):
    """The Speech2Face avatar for an ``AgentSession``: ``await AvatarSession(seed="acme").start(session, room)``.

    ``face``: ``speech2face analyze --json`` output (or its ``"face"`` part) — the same face
    every session from frame one. ``seed``: a look seed you own, same effect. ``engine``:
    an ``AvatarEngine`` to refine the face from the TTS voice itself (then frozen after
    ``freeze_after_s``). ``mode="worker"`` runs the avatar in a child process that joins the
    room itself (needs ``LIVEKIT_URL``/``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``).
    """

    def __init__(
        self,
        *,
        mode: Literal["local", "worker"] = "local",
        face: Mapping | None = None,
        seed: str | None = None,
        size: int = 256,
        fps: float = 25.0,
        engine: Any = None,
        freeze_after_s: float = 6.0,
        sample_rate: int = SAMPLE_RATE,
        worker_identity: str = WORKER_IDENTITY,
        livekit_url: str | None = None,
        livekit_api_key: str | None = None,
        livekit_api_secret: str | None = None,
        on_frame: FrameInfo | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("local", "worker"):
            raise ValueError("mode must be 'local' or 'worker'")
        if mode == "worker" and engine is not None:
            raise ValueError("engine= runs in this process; the worker loads its own (pass face= or seed=)")
        self._mode = mode
        self._options: dict[str, Any] = dict(face=face, seed=seed, size=size, fps=fps, freeze_after_s=freeze_after_s)
        self._sample_rate = sample_rate
        # built now so a bad face, seed, size or rate fails here, not when the room is live
        avatar = make_avatar(sample_rate, engine=engine, **self._options)
        self._avatar = avatar if mode == "local" else None
        self._worker_identity = worker_identity
        self._url = livekit_url or os.environ.get("LIVEKIT_URL")
        self._api_key = livekit_api_key or os.environ.get("LIVEKIT_API_KEY")
        self._api_secret = livekit_api_secret or os.environ.get("LIVEKIT_API_SECRET")
        self._on_frame = on_frame
        self._runner: AvatarRunner | None = None
        self._generator: Speech2FaceVideoGenerator | None = None
        self._worker: asyncio.subprocess.Process | None = None

    @property
    def avatar_identity(self) -> str:
        if self._mode == "local" and self._room is not None:
            return self._room.local_participant.identity
        return self._worker_identity

    @property
    def provider(self) -> str:
        return "speech2face"

    async def start(self, agent_session: Any, room: rtc.Room) -> None:
        await super().start(agent_session, room)
        if self._mode == "local":
            if self._avatar is None:
                raise RuntimeError("an AvatarSession starts once; make a new one for another session")
            await self._avatar.prepare()  # rasterise the face off the loop now: the first frame is immediate
            self._generator = Speech2FaceVideoGenerator(self._avatar, on_frame=self._on_frame)
            self._avatar = None
            audio, self._runner = await start_local_runner(room, self._generator)
        else:
            await self._start_worker(room)
            audio = DataStreamAudioOutput(
                room,
                destination_identity=self._worker_identity,
                sample_rate=self._sample_rate,
                wait_remote_track=rtc.TrackKind.KIND_VIDEO,
            )
        agent_session.output.replace_audio_tail(audio)

    async def _start_worker(self, room: rtc.Room) -> None:
        if not (self._url and self._api_key and self._api_secret):
            raise ValueError("worker mode needs livekit_url, livekit_api_key and livekit_api_secret (or LIVEKIT_* variables)")
        token = worker_token(
            room_name=room.name,
            agent_identity=room.local_participant.identity,
            api_key=self._api_key,
            api_secret=self._api_secret,
            identity=self._worker_identity,
        )
        args = worker_args(self._url, sample_rate=self._sample_rate, **self._options)
        env = dict(os.environ, **{TOKEN_ENV: token})
        self._worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "speech2face.assistant.livekit", *args, env=env)

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.aclose()
            self._runner = None
        if self._generator is not None:
            await self._generator.aclose()
            self._generator = None
        if self._worker is not None:
            if self._worker.returncode is None:
                self._worker.terminate()
                try:
                    await asyncio.wait_for(self._worker.wait(), 5.0)
                except asyncio.TimeoutError:
                    self._worker.kill()
                    await self._worker.wait()
            self._worker = None
        await super().aclose()


# ----------------------------------------------------------------------------- worker process
def worker_args(
    url: str, *, sample_rate: int, face: Mapping | None, seed: str | None, size: int, fps: float, freeze_after_s: float
) -> list[str]:
    """The worker's command line (the token travels in ``S2F_LIVEKIT_TOKEN``)."""
    args = ["--url", url, "--sample-rate", str(sample_rate), "--size", str(size), "--fps", str(fps)]
    args += ["--freeze-after", str(freeze_after_s)]
    if face is not None:
        args += ["--face-json", json.dumps(face_params(face).as_dict())]
    if seed is not None:
        args += ["--seed", seed]
    return args


async def run_worker(url: str, token: str, *, sample_rate: int = SAMPLE_RATE, **avatar_options: Any) -> None:
    """Join the room, render the avatar for the agent that sends us audio, until the room closes."""
    avatar = make_avatar(sample_rate, **avatar_options)  # bad options fail before we join
    await avatar.prepare()
    generator = Speech2FaceVideoGenerator(avatar)
    room = rtc.Room()
    closed = asyncio.Event()
    room.on("disconnected", lambda *_: closed.set())
    try:
        await room.connect(url, token)
        runner = AvatarRunner(room, audio_recv=DataStreamAudioReceiver(room), video_gen=generator, options=generator.options())
        try:
            await runner.start()
            await closed.wait()
        finally:
            await runner.aclose()
    finally:
        await generator.aclose()
        await room.disconnect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speech2face.assistant.livekit", description=run_worker.__doc__)
    parser.add_argument("--url", required=True, help="LiveKit server URL (wss://…)")
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--freeze-after", type=float, default=6.0)
    parser.add_argument("--face-json", help="analyze --json output (or its face part), as JSON text")
    parser.add_argument("--seed", help="look seed: the same face in every session")
    a = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        parser.error(f"the join token goes in the {TOKEN_ENV} environment variable")
    try:
        face = json.loads(a.face_json) if a.face_json else None
    except ValueError as exc:
        parser.error(f"--face-json is not valid JSON: {exc}")
    options = dict(face=face, seed=a.seed, size=a.size, fps=a.fps, freeze_after_s=a.freeze_after)
    try:
        make_avatar(a.sample_rate, **options)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(run_worker(a.url, token, sample_rate=a.sample_rate, **options))
    except rtc.ConnectError as exc:
        print(f"{parser.prog}: error: could not join the room at {a.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
