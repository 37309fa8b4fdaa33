"""Room pieces that need no network: room names, Janus config generation, the lip-sync
audio delay, TURN credentials, display names, compose file validity."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from server import janus_config, room_names
from server.errors import HttpError
from server.lipsync import PTIME, SAMPLES, DelayedAudioTrack
from server.rooms import display_name
from server.turn import rest_credentials

ROOT = Path(__file__).resolve().parent.parent


def test_room_names_are_ours_and_unforgeable(monkeypatch):
    monkeypatch.setenv("S2F_ROOM_SECRET", "one")
    name = room_names.mint()
    assert room_names.is_valid(name) and name != room_names.mint()
    slug, tag = name.split("-")
    assert not room_names.is_valid(f"{slug}-{tag[::-1]}" if tag != tag[::-1] else f"{slug}-aaaaaa")
    assert not room_names.is_valid(slug[::-1] + "-" + tag)
    for bad in ("", "x" * 200, "../etc", None, 3, name.upper(), name + "a"):
        assert not room_names.is_valid(bad)
    monkeypatch.setenv("S2F_ROOM_SECRET", "two")  # another server's link
    assert not room_names.is_valid(name)
    assert room_names.janus_secret(name, "pin") != room_names.janus_secret(name, "secret")


def test_janus_config_loopback_is_private_and_minimal(tmp_path):
    s = janus_config.JanusSettings(loopback=True, api_unix=str(tmp_path / "api.sock"), rtp_ports=(30000, 30100))
    files = janus_config.render(s, tmp_path)
    core = files["janus.jcfg"]
    assert f'api_secret = "{s.api_secret}"' in core
    assert 'ice_enforce_list = "127.0.0.1"' in core and 'interface = "127.0.0.1"' in core
    assert 'rtp_port_range = "30000-30100"' in core and "ipv6 = false" in core
    assert "stun_server" not in core and "nat_1_1_mapping" not in core
    disabled = core.split("plugins: {")[1].split("}")[0]
    assert "libjanus_videoroom.so" not in disabled
    assert all(p in disabled for p in janus_config.ALL_PLUGINS if p != "libjanus_videoroom.so")
    ws = files["janus.transport.websockets.jcfg"]
    assert f'ws_unix = "{tmp_path / "api.sock"}"' in ws and "ws_port" not in ws and "admin_ws = false" in ws
    vr = files["janus.plugin.videoroom.jcfg"]
    assert f'admin_key = "{s.admin_key}"' in vr and "string_ids = true" in vr
    path = janus_config.write(s, tmp_path / "conf")
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_janus_config_deployed_uses_real_interfaces(tmp_path):
    s = janus_config.JanusSettings(
        loopback=False, api_host="0.0.0.0", api_port=8188, public_ip="203.0.113.7", stun_server="stun.example:3478"
    )
    core = janus_config.render(s, tmp_path)["janus.jcfg"]
    assert "ice_enforce_list" not in core and 'nat_1_1_mapping = "203.0.113.7"' in core
    assert 'stun_server = "stun.example"' in core and "stun_port = 3478" in core
    assert 'ws_ip = "0.0.0.0"' in janus_config.render(s, tmp_path)["janus.transport.websockets.jcfg"]
    assert s.api_url() == "ws://0.0.0.0:8188/"


def _frame(value: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.full((1, SAMPLES * 2), value, np.int16), format="s16", layout="stereo")
    frame.sample_rate = 48_000
    return frame


@pytest.mark.asyncio
async def test_delayed_audio_leaves_late_in_order_and_never_drifts():
    now = [100.0]
    track = DelayedAudioTrack(delay_s=0.060, clock=lambda: now[0])
    out = []

    async def pull(n):
        for _ in range(n):
            f = await asyncio.wait_for(track.recv(), 1.0)
            out.append((round(now[0], 3), int(f.to_ndarray()[0, 0]), f.pts))
            now[0] += PTIME  # the sender reads every 20 ms

    for k in range(5):  # packets arrive every 20 ms from t = 100.0
        track.push(_frame(k + 1), arrival=100.0 + k * PTIME)
    await pull(8)
    values = [v for _, v, _ in out]
    # silence until 60 ms after arrival, then the packets in order, then silence again
    assert values[:3] == [0, 0, 0] and values[3:8] == [1, 2, 3, 4, 5], out
    assert [p for _, _, p in out] == [i * SAMPLES for i in range(8)]
    # a stalled reader skips send slots: RTP time keeps following the wall clock
    now[0] += 0.5
    late = await track.recv()
    assert late.pts == int((now[0] - 100.0) / PTIME + 1e-6) * SAMPLES
    # a burst (the caller's jitter buffer releasing a backlog) is dropped back to the target delay
    t = now[0]
    for k in range(20):
        track.push(_frame(100 + k), arrival=t - 0.4 + k * 0.001)
    f = await track.recv()
    assert int(f.to_ndarray()[0, 0]) >= 100 + 19 - 1, "the backlog was played instead of dropped"
    assert track.dropped >= 18
    track.stop()


def test_turn_rest_credentials_match_coturn():
    creds = rest_credentials("s3cret", ["turn:turn.example:3478"], ttl_s=600, label="p1", now=1_000_000)
    assert creds["username"] == "1000600:p1"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1000600:p1", hashlib.sha1).digest()).decode()
    assert creds["credential"] == expected and creds["urls"] == ["turn:turn.example:3478"]


def test_display_names():
    assert display_name(None) == "Guest" and display_name("   ") == "Guest"
    assert display_name(" Ada\u0000\n Lovelace ") == "Ada Lovelace"
    with pytest.raises(HttpError):
        display_name("x" * 33)
    with pytest.raises(HttpError):
        display_name(42)


COMPOSE = shutil.which("docker-compose") or shutil.which("podman-compose")


@pytest.mark.skipif(COMPOSE is None, reason="no docker-compose / podman-compose (Debian: apt-get install docker-compose)")
def test_compose_file_validates(tmp_path):
    env = tmp_path / ".env"
    env.write_text((ROOT / "deploy" / "env.example").read_text())
    for profile in ([], ["--profile", "gpu"]):
        proc = subprocess.run(
            [COMPOSE, "--env-file", str(env), "-f", str(ROOT / "docker-compose.yml"), *profile, "config"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        for service in ("server", "janus", "coturn", "proxy", "server-gpu"):
            assert f"  {service}:" in out, out
        gpu = out.split("  server-gpu:")[1]
        assert "- gpu" in gpu and "capabilities:" in gpu and "healthcheck:" in gpu, gpu
        assert "--use-auth-secret" in out and "--min-port=49160" in out  # coturn: REST credentials, fixed relay range
