"""Janus configuration generated from ours: the files a Janus we supervise (or a Janus
container in docker-compose) starts from.

Why generated rather than shipped: the secrets (API secret, room admin key) are ours and
per deployment, and the network shape follows our bind address. Serving on 127.0.0.1 means
loopback-only media (Janus offers 127.0.0.1 host candidates only, with the getifaddrs shim
that ``janus_supervisor`` preloads) and no STUN/TURN; elsewhere Janus gathers real
interfaces, with an optional 1:1 NAT address and a fixed RTP port range for firewalls.

Janus's API is never public: it listens on a UNIX socket in a private folder (or, in
docker-compose, on the internal network), every request carries the API secret, and only
``admin_key`` holders create rooms. Browsers reach Janus for media only; their signalling
goes through our server (``server/rooms.py``), which decides who joins which room.
Everything but the VideoRoom plugin and the WebSocket transport is disabled: Janus starts
in ~0.1 s and loads nothing we do not use.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

PLUGIN_DIR = "/usr/lib/x86_64-linux-gnu/janus"
KEEP_PLUGINS = ("libjanus_videoroom.so",)
KEEP_TRANSPORTS = ("libjanus_websockets.so",)
#: Janus 1.1.2's plugins, transports, loggers and event handlers (Debian's build): all but
#: the ones we keep are disabled by name (Janus has no "enable only" list).
ALL_PLUGINS = (
    "libjanus_audiobridge.so",
    "libjanus_duktape.so",
    "libjanus_echotest.so",
    "libjanus_lua.so",
    "libjanus_nosip.so",
    "libjanus_recordplay.so",
    "libjanus_sip.so",
    "libjanus_streaming.so",
    "libjanus_textroom.so",
    "libjanus_videocall.so",
    "libjanus_videoroom.so",
    "libjanus_voicemail.so",
)
ALL_TRANSPORTS = (
    "libjanus_http.so",
    "libjanus_mqtt.so",
    "libjanus_nanomsg.so",
    "libjanus_pfunix.so",
    "libjanus_rabbitmq.so",
    "libjanus_websockets.so",
)
ALL_LOGGERS = ("libjanus_jsonlog.so",)
ALL_EVENT_HANDLERS = (
    "libjanus_gelfevh.so",
    "libjanus_mqttevh.so",
    "libjanus_nanomsgevh.so",
    "libjanus_rabbitmqevh.so",
    "libjanus_sampleevh.so",
    "libjanus_wsevh.so",
)
SOCKET_NAME = "janus-api.sock"
SESSION_TIMEOUT_S = 30  # our client sends a keepalive every 10 s


@dataclass(frozen=True)
class JanusSettings:
    """What our server decides about the Janus it uses."""

    loopback: bool = True  # media on 127.0.0.1 only (tests, `make run` on 127.0.0.1)
    api_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    admin_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: where the API listens: a UNIX socket path, or host:port for a Janus in another container
    api_unix: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8188
    rtp_ports: tuple[int, int] = (20000, 40000)
    public_ip: str | None = None  # 1:1 NAT address put in Janus's host candidates
    stun_server: str | None = None  # host:port, only when Janus is behind a NAT it must discover
    debug_level: int = 3  # 0 none … 3 warnings … 7 everything
    plugin_dir: str = PLUGIN_DIR

    def api_url(self) -> str:
        """How our client reaches the API: ``unix:/path`` or ``ws://host:port/``."""
        if self.api_unix:
            return f"unix:{self.api_unix}"
        return f"ws://{self.api_host}:{self.api_port}/"


def _quote(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a libconfig string: double quotes, backslash escapes


def _section(name: str, items: dict[str, object]) -> str:
    body = "".join(f"\t{k} = {_quote(v)}\n" for k, v in items.items() if v is not None)
    return f"{name}: {{\n{body}}}\n"


def render(settings: JanusSettings, config_dir: Path) -> dict[str, str]:
    """The three files Janus reads, by name (janus.jcfg, the VideoRoom plugin, the WS transport)."""
    s = settings
    general = {
        "configs_folder": str(config_dir),
        "plugins_folder": f"{s.plugin_dir}/plugins",
        "transports_folder": f"{s.plugin_dir}/transports",
        "events_folder": f"{s.plugin_dir}/events",
        "loggers_folder": f"{s.plugin_dir}/loggers",
        "debug_level": s.debug_level,
        "api_secret": s.api_secret,
        "session_timeout": SESSION_TIMEOUT_S,
        "server_name": "speech2face-janus",
        "hide_dependencies": True,
        "interface": "127.0.0.1" if s.loopback else None,
    }
    media = {"ipv6": False, "rtp_port_range": f"{s.rtp_ports[0]}-{s.rtp_ports[1]}"}
    nat = {
        "nice_debug": False,
        "ignore_mdns": True,
        "full_trickle": False,
        "ice_enforce_list": "127.0.0.1" if s.loopback else None,
        "nat_1_1_mapping": None if s.loopback else s.public_ip,
        "stun_server": None,
        "stun_port": None,
    }
    if s.stun_server and not s.loopback:
        host, _, port = s.stun_server.rpartition(":")
        nat["stun_server"], nat["stun_port"] = (host, int(port)) if host else (port, 3478)
    janus = "".join(
        [
            _section("general", general),
            _section("certificates", {}),
            _section("media", media),
            _section("nat", nat),
            _section("plugins", {"disable": ",".join(p for p in ALL_PLUGINS if p not in KEEP_PLUGINS)}),
            _section("transports", {"disable": ",".join(t for t in ALL_TRANSPORTS if t not in KEEP_TRANSPORTS)}),
            _section("loggers", {"disable": ",".join(ALL_LOGGERS)}),
            _section("events", {"broadcast": False, "disable": ",".join(ALL_EVENT_HANDLERS)}),
        ]
    )
    ws = {"json": "plain", "ws": True, "wss": False, "ws_logging": "err,warn"}
    if s.api_unix:
        ws["ws_unix"] = s.api_unix
    else:
        ws["ws_port"] = s.api_port
        ws["ws_ip"] = s.api_host
    transport = _section("general", ws) + _section("admin", {"admin_ws": False, "admin_wss": False})
    # string ids: room names and participant ids are ours (text), not Janus's numbers
    videoroom = _section("general", {"admin_key": s.admin_key, "string_ids": True, "lock_rtp_forward": True})
    return {
        "janus.jcfg": janus,
        "janus.transport.websockets.jcfg": transport,
        "janus.plugin.videoroom.jcfg": videoroom,
    }


def write(settings: JanusSettings, config_dir: Path) -> Path:
    """Write the files (mode 0600: they hold the secrets); returns the path of janus.jcfg."""
    config_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config_dir, 0o700)
    for name, text in render(settings, config_dir).items():
        path = config_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return config_dir / "janus.jcfg"


def main(argv: list[str] | None = None) -> int:
    """``python -m server.janus_config --out DIR``: the config of a Janus in its own
    container (docker-compose), from the same ``S2F_*`` settings our server reads."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m server.janus_config", description=main.__doc__)
    p.add_argument("--out", type=Path, required=True, help="folder to write janus.jcfg and friends into")
    p.add_argument("--api-host", default=os.environ.get("S2F_JANUS_API_HOST", "127.0.0.1"), help="where the API listens")
    p.add_argument("--api-port", type=int, default=int(os.environ.get("S2F_JANUS_API_PORT", "8188")))
    args = p.parse_args(argv)
    missing = [v for v in ("S2F_JANUS_API_SECRET", "S2F_JANUS_ADMIN_KEY") if not os.environ.get(v)]
    if missing:
        print(f"janus-config: error: set {' and '.join(missing)} (the server must be given the same values)")
        return 2
    lo, _, hi = os.environ.get("S2F_JANUS_RTP_PORTS", "20000-40000").partition("-")
    settings = JanusSettings(
        loopback=False,
        api_secret=os.environ["S2F_JANUS_API_SECRET"],
        admin_key=os.environ["S2F_JANUS_ADMIN_KEY"],
        api_host=args.api_host,
        api_port=args.api_port,
        rtp_ports=(int(lo), int(hi)),
        public_ip=os.environ.get("S2F_JANUS_PUBLIC_IP") or None,
        stun_server=os.environ.get("S2F_JANUS_STUN") or None,
    )
    print(write(settings, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
