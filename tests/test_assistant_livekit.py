"""The LiveKit Agents plugin, without a LiveKit server (none installs here).

Real parts: livekit-agents' ``AgentSession`` output chain, ``QueueAudioOutput``,
``AvatarRunner`` with its ``rtc.AVSynchronizer``, ``rtc.AudioSource``/``VideoSource`` (the
native FFI), ``rtc.AudioFrame``/``VideoFrame``, and our generator. The one stand-in is the
room: it says it is connected and records what the runner publishes. Audio goes in the
way the agent's TTS puts it there (``capture_frame`` on the session's audio output, then
``flush``; ``clear_buffer`` on an interruption).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("livekit.agents", reason="the [livekit] extra is not installed")

from livekit import rtc  # noqa: E402
from livekit.agents import AgentSession  # noqa: E402
from livekit.agents.voice.avatar import QueueAudioOutput  # noqa: E402

from speech2face.assistant import livekit as s2f_livekit  # noqa: E402
from speech2face.assistant.generator import VideoOut  # noqa: E402
from tests.assistant_helpers import assert_paced, best_lag, correlation, energy_at, syllables  # noqa: E402

RATE = s2f_livekit.SAMPLE_RATE
FPS = 25.0
PERIOD = 1.0 / FPS


@dataclass
class Publication:
    kind: int
    track: rtc.Track
    sid: str

    async def wait_for_subscription(self) -> None:
        return None


@dataclass
class LocalParticipant:
    room: "ConnectedRoom"
    identity: str = "agent-1"
    kind: int = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    track_publications: dict[str, Publication] = field(default_factory=dict)

    async def publish_track(self, track: rtc.Track, options: rtc.TrackPublishOptions) -> Publication:
        kind = rtc.TrackKind.KIND_VIDEO if isinstance(track, rtc.LocalVideoTrack) else rtc.TrackKind.KIND_AUDIO
        pub = Publication(kind, track, f"TR_{len(self.track_publications)}")
        self.track_publications[pub.sid] = pub
        self.room.emit("local_track_published", pub, track)
        return pub


class ConnectedRoom(rtc.EventEmitter):
    """Stands in for a connected ``rtc.Room`` (no server here): what the runner and session touch."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "test-room"
        self.remote_participants: dict = {}
        self.local_participant = LocalParticipant(self)

    def isconnected(self) -> bool:
        return True


@dataclass
class Recorder:
    frames: list[tuple[float, VideoOut]] = field(default_factory=list)
    finished: list[tuple[float, float, bool]] = field(default_factory=list)

    def on_frame(self, f: VideoOut) -> None:
        self.frames.append((time.monotonic(), f))

    def on_finished(self, ev) -> None:
        self.finished.append((time.monotonic(), ev.playback_position, ev.interrupted))


async def start_avatar(rec: Recorder):
    room = ConnectedRoom()
    session = AgentSession()
    avatar = s2f_livekit.AvatarSession(seed="livekit-test", size=256, fps=FPS, on_frame=rec.on_frame)
    await avatar.start(session, room)
    audio = session.output.audio
    audio.on("playback_finished", rec.on_finished)
    return room, session, avatar, audio


async def speak(audio, pcm: np.ndarray, chunk_ms: int = 20) -> None:
    """What a TTS node does: 20 ms ``rtc.AudioFrame``s into the session's audio output."""
    n = RATE * chunk_ms // 1000
    for i in range(0, len(pcm), n):
        part = pcm[i : i + n]
        await audio.capture_frame(rtc.AudioFrame(part.tobytes(), RATE, 1, len(part)))


async def wait_for(pred, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError
        await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_segment_plays_at_fps_lip_synced_and_finishes_at_its_duration():
    rec = Recorder()
    room, session, avatar, audio = await start_avatar(rec)
    try:
        assert isinstance(audio, QueueAudioOutput), type(audio)
        await asyncio.sleep(0.5)  # idle frames before anything is said
        idle = [f for _, f in rec.frames]
        assert len(idle) >= 8 and all(f.audio_pos is None for f in idle)

        pcm = syllables(3.0, RATE)
        duration = len(pcm) / RATE
        t_push = time.monotonic()
        await speak(audio, pcm)
        audio.flush()
        await wait_for(lambda: rec.finished, duration + 3.0)
        t_done, position, interrupted = rec.finished[0]

        # the runner published one audio and one video track through the real rtc sources
        kinds = sorted(p.kind for p in room.local_participant.track_publications.values())
        assert kinds == sorted([rtc.TrackKind.KIND_AUDIO, rtc.TrackKind.KIND_VIDEO])

        # playback_finished: not interrupted, at the audio's duration, when the audio has played
        assert not interrupted
        assert position == pytest.approx(duration, abs=PERIOD + 1e-9)  # the last slot is padded to a full period
        assert duration - 2 * PERIOD <= t_done - t_push <= duration + 0.5, (t_done - t_push, duration)

        # frames at fps while speaking (the avatar is the clock; the AV synchroniser follows it)
        speaking = [(w, f) for w, f in rec.frames if t_push <= w <= t_done]
        assert_paced([w for w, _ in speaking], [f.index for _, f in speaking], FPS)
        indices = [f.index for _, f in rec.frames]
        assert indices == sorted(indices) and len(set(indices)) == len(indices)

        # the mouth follows the audio energy at the position each frame shows
        voiced = [f for _, f in speaking if f.audio_pos is not None]
        # they show the whole utterance (a loaded machine may skip a picture; its audio still plays)
        assert voiced[0].audio_pos < 0.2 and voiced[-1].audio_pos > duration - 0.2
        mouth = np.array([f.mouth for f in voiced])
        energy = energy_at(pcm, RATE, np.array([f.audio_pos for f in voiced]), PERIOD)
        assert correlation(mouth, energy) > 0.6, correlation(mouth, energy)
        assert abs(best_lag(mouth, energy)) <= 1
        assert mouth[energy > 0.05].mean() > mouth[energy < 0.005].mean() + 0.3
        # pictures show the audio in order, each slot's audio once
        pos = np.array([f.audio_pos for f in voiced])
        assert np.all(np.diff(pos) > 0)
    finally:
        await avatar.aclose()


@pytest.mark.asyncio
async def test_clear_buffer_finishes_interrupted_within_one_frame_and_closes_the_mouth():
    rec = Recorder()
    room, session, avatar, audio = await start_avatar(rec)
    try:
        pcm = syllables(4.0, RATE)
        await speak(audio, pcm)
        audio.flush()
        await wait_for(lambda: any(f.audio_pos and f.audio_pos > 0.8 for _, f in rec.frames), 3.0)
        t_clear = time.monotonic()
        audio.clear_buffer()  # what AgentSession does when the user barges in
        await wait_for(lambda: rec.finished, 1.0)
        t_done, position, interrupted = rec.finished[0]
        assert interrupted
        assert t_done - t_clear <= PERIOD, t_done - t_clear
        assert 0.7 <= position <= 1.3, position
        await asyncio.sleep(0.5)
        after = [f for w, f in rec.frames if w >= t_clear + PERIOD]
        assert len(after) >= 8
        assert all(f.mouth == 0.0 and f.audio_pos is None for f in after), [(f.mouth, f.audio_pos) for f in after[:5]]
        assert len(rec.finished) == 1  # one report for the interrupted segment, none later

        # the avatar speaks again after an interruption
        again = syllables(1.0, RATE)
        await speak(audio, again)
        audio.flush()
        await wait_for(lambda: len(rec.finished) == 2, 3.0)
        assert not rec.finished[1][2] and rec.finished[1][1] == pytest.approx(1.0, abs=PERIOD + 1e-9)
    finally:
        await avatar.aclose()


def test_worker_token_publishes_on_behalf_of_the_agent():
    import jwt

    token = s2f_livekit.worker_token(room_name="r1", agent_identity="agent-7", api_key="key", api_secret="secret" * 6)
    claims = jwt.decode(token, "secret" * 6, algorithms=["HS256"])
    assert claims["sub"] == s2f_livekit.WORKER_IDENTITY
    assert claims["kind"] == "agent"
    assert claims["attributes"] == {"lk.publish_on_behalf": "agent-7"}
    assert claims["video"]["roomJoin"] is True and claims["video"]["room"] == "r1"


def test_worker_args_round_trip_through_the_worker_cli(monkeypatch):
    face = {"face": {"params": {"jaw_width": 0.4}}}
    args = s2f_livekit.worker_args(
        "wss://example.invalid", sample_rate=24000, face=face, seed="s", size=256, fps=25.0, freeze_after_s=6.0
    )
    seen = {}

    async def fake_run(url, token, **kw):  # the room connection itself cannot run here
        seen.update(url=url, token=token, **kw)

    monkeypatch.setattr(s2f_livekit, "run_worker", fake_run)
    monkeypatch.setenv(s2f_livekit.TOKEN_ENV, "tok")
    assert s2f_livekit.main(args) == 0
    assert seen.pop("face")["jaw_width"] == pytest.approx(0.4)
    assert seen == dict(
        url="wss://example.invalid", token="tok", sample_rate=24000, seed="s", size=256, fps=25.0, freeze_after_s=6.0
    )


def test_worker_cli_refuses_a_token_in_argv_or_none(monkeypatch, capsys):
    monkeypatch.delenv(s2f_livekit.TOKEN_ENV, raising=False)
    with pytest.raises(SystemExit) as exc:
        s2f_livekit.main(["--url", "wss://example.invalid"])
    assert exc.value.code == 2
    assert s2f_livekit.TOKEN_ENV in capsys.readouterr().err
    monkeypatch.setenv(s2f_livekit.TOKEN_ENV, "tok")
    for bad, why in (
        (["--face-json", "{nope"], "JSON"),
        (["--face-json", '{"nose_size": 2}'], "nose_size"),
        (["--size", "100"], "size"),
    ):
        with pytest.raises(SystemExit) as exc:
            s2f_livekit.main(["--url", "wss://x", *bad])
        assert exc.value.code == 2 and why in capsys.readouterr().err


def test_bad_options_fail_at_construction():
    with pytest.raises(ValueError, match="seed"):
        s2f_livekit.AvatarSession(seed="")
    with pytest.raises(ValueError, match="size"):
        s2f_livekit.AvatarSession(seed="x", size=300)
    with pytest.raises(ValueError, match="sample_rate"):
        s2f_livekit.AvatarSession(seed="x", sample_rate=12345)
    with pytest.raises(ValueError, match="unknown face params"):
        s2f_livekit.AvatarSession(face={"params": {"nose_size": 0.5}})


def test_worker_mode_needs_credentials(monkeypatch):
    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="engine"):
        s2f_livekit.AvatarSession(mode="worker", engine=object())
    session = s2f_livekit.AvatarSession(mode="worker", seed="x")

    async def go():
        await session._start_worker(ConnectedRoom())

    with pytest.raises(ValueError, match="LIVEKIT_"):
        asyncio.run(go())


def test_worker_that_cannot_join_says_so_without_a_traceback():
    """The real connect path, against a closed port on this machine: a clear message, exit 1."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the worker dials it
    env = dict(os.environ, **{s2f_livekit.TOKEN_ENV: "not-a-token"})
    cmd = [sys.executable, "-m", "speech2face.assistant.livekit", "--url", f"ws://127.0.0.1:{port}", "--seed", "x"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "could not join the room" in proc.stderr and "Traceback" not in proc.stderr
