"""Server configuration: one frozen dataclass filled from CLI flags, then environment, then defaults.

Every knob has a flag and an ``S2F_*`` environment variable so the same image runs under
docker-compose (env) and from a shell (flags). Flags win over the environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
from dataclasses import dataclass, fields
from typing import Any, Sequence

from engines.choices import BACKENDS, MAX_SPEECH_SECONDS, PRIVACY_MODES, SIZES

__all__ = ["BACKENDS", "PRIVACY_MODES", "SIZES", "ServerConfig"]


@dataclass(frozen=True)
class IceServer:
    urls: list[str]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    size: int = 256  # default avatar edge in px; a caller may ask for another of SIZES
    fps: float = 15.0
    session_budget: int = 16  # concurrent calls; beyond it /offer answers 503
    ice_servers: tuple[IceServer, ...] = ()
    privacy: str = "stable"
    backend: str = "onnx"
    model_workers: int = 1  # threads of the dedicated model executor
    workers: int | None = None  # server processes sharing the port and the budget; None: one per core
    max_upload_bytes: int = 10 * 1024 * 1024
    max_upload_seconds: float = 60.0
    max_call_seconds: float = 3600.0
    max_speech_seconds: float = MAX_SPEECH_SECONDS  # speech a call's face is refined from; after it the model idles
    idle_timeout: float = 3.0  # no audio for this long → the caller is gone
    connect_timeout: float = 5.0  # offer answered but ICE/DTLS never completed: the caller is gone
    retry_after: int = 5  # seconds, sent with 503
    frame_events: bool = True  # allow callers to ask for the mouth value of every frame (offer "frame_events": true)
    static_dir: str | None = None  # defaults to client_web/ next to the package
    loopback_only: bool | None = None  # None: decided from host
    log_level: str = "info"
    allowed_origins: tuple[str, ...] = ()  # browser origins besides our own that may call us ("*": any)
    offers_per_minute: float = 120.0  # per client address, /offer and /ws offers together; 0: no limit
    uploads_per_minute: float = 60.0  # per client address, POST /v1/avatar; 0: no limit
    oneshot_queue: int = 8  # one-shot requests (uploads, downloads) waiting or running; more get 503
    header_timeout: float = 10.0  # seconds to send a request head (and keep-alive idle time)
    body_timeout: float = 30.0  # seconds to send a request body
    # --- rooms (server/rooms.py): Janus VideoRoom fans the avatars out ---
    janus: str = "auto"  # auto: supervise a local Janus if installed; off; or ws://host:port/ | unix:/path of one we only use
    janus_api_secret: str | None = None  # for a Janus we do not start (docker-compose); ours get a random one
    janus_admin_key: str | None = None
    janus_socket: str | None = None  # API socket of the Janus we supervise (default: a private temp folder)
    janus_rtp_ports: str = "20000-40000"  # UDP range a supervised Janus uses for media (open it in the firewall)
    janus_public_ip: str | None = None  # 1:1 NAT address for a supervised Janus's candidates
    room_cap: int = 8  # people per room
    audio_delay_ms: float = 0.0  # extra delay of a room feed's voice (measured: receivers' lip-sync needs none; lipsync.py)
    turn_secret: str | None = None  # coturn static-auth-secret: browsers get time-limited REST credentials
    turn_urls: str | None = None  # comma list of turn:/turns: URLs those credentials are for
    turn_ttl: int = 6 * 3600

    @property
    def is_loopback(self) -> bool:
        if self.loopback_only is not None:
            return self.loopback_only
        return host_is_loopback(self.host)

    def validate(self) -> "ServerConfig":
        if not 1 <= self.port <= 65535 and self.port != 0:
            raise ValueError(f"port out of range: {self.port}")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be within 1..60, got {self.fps}")
        if self.session_budget < 0:
            raise ValueError("session budget must be ≥ 0")
        if self.privacy not in PRIVACY_MODES:
            raise ValueError(f"privacy must be one of {PRIVACY_MODES}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        if self.model_workers < 1:
            raise ValueError("model workers must be ≥ 1")
        if self.workers is not None and not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be within 1..64, got {self.workers}")
        if self.oneshot_queue < 1:
            raise ValueError("the one-shot queue must hold ≥ 1 request")
        if self.offers_per_minute < 0 or self.uploads_per_minute < 0:
            raise ValueError("rate limits must be ≥ 0 (0 turns a limit off)")
        if self.header_timeout <= 0 or self.body_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        if self.room_cap < 2:
            raise ValueError("room cap must be ≥ 2")
        if not 0 <= self.audio_delay_ms <= 500:
            raise ValueError("audio delay must be within 0..500 ms")
        lo, _, hi = self.janus_rtp_ports.partition("-")
        if not (lo.isdigit() and hi.isdigit() and 1024 <= int(lo) < int(hi) <= 65535):
            raise ValueError(f"janus RTP ports must look like 20000-40000, got {self.janus_rtp_ports!r}")
        if not (self.janus in ("auto", "off") or self.janus.startswith(("ws://", "wss://", "unix:"))):
            raise ValueError(f"janus must be auto, off, ws://host:port/ or unix:/path, got {self.janus!r}")
        return self


def host_is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_ice_servers(text: str | None) -> tuple[IceServer, ...]:
    """``stun:host:3478,turn:user:pass@host:3478`` or a JSON list of RTCIceServer dicts."""
    if not text:
        return ()
    text = text.strip()
    if text.startswith("["):
        items = json.loads(text)
        out = []
        for item in items:
            urls = item["urls"]
            out.append(
                IceServer(
                    urls=[urls] if isinstance(urls, str) else list(urls),
                    username=item.get("username"),
                    credential=item.get("credential"),
                )
            )
        return tuple(out)
    out = []
    for url in filter(None, (u.strip() for u in text.split(","))):
        username = credential = None
        scheme, _, rest = url.partition(":")
        if "@" in rest:
            auth, _, hostpart = rest.rpartition("@")
            username, _, credential = auth.partition(":")
            url = f"{scheme}:{hostpart}"
        out.append(IceServer(urls=[url], username=username or None, credential=credential or None))
    return tuple(out)


_ENV_PREFIX = "S2F_"


def _yes_no(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


# flag name → (env var, type, help)
_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "host": ("HOST", str, "bind address (127.0.0.1 keeps ICE on loopback)"),
    "port": ("PORT", int, "TCP port for HTTP/websocket signalling"),
    "size": ("SIZE", int, "default avatar video edge in px (256, 384, 512)"),
    "fps": ("FPS", float, "avatar video frame rate"),
    "session_budget": ("SESSION_BUDGET", int, "max concurrent calls; more get 503 + Retry-After"),
    "ice_servers": ("ICE_SERVERS", str, "comma list (stun:h:p,turn:user:pass@h:p) or JSON list; none by default"),
    "privacy": ("PRIVACY", str, "default privacy mode: stable, room, random"),
    "backend": ("BACKEND", str, "model backend: onnx, torch, tensorrt"),
    "model_workers": ("MODEL_WORKERS", int, "threads in the dedicated model executor"),
    "workers": ("WORKERS", int, "server processes sharing port and call budget (aiortc is GIL-bound); default: the cores"),
    "max_upload_bytes": ("MAX_UPLOAD_BYTES", int, "POST /v1/avatar body cap in bytes"),
    "max_upload_seconds": ("MAX_UPLOAD_SECONDS", float, "POST /v1/avatar audio duration cap"),
    "max_call_seconds": ("MAX_CALL_SECONDS", float, "hang up calls longer than this"),
    "max_speech_seconds": ("MAX_SPEECH_SECONDS", float, "seconds of speech a face is refined from; then the model stops"),
    "idle_timeout": ("IDLE_TIMEOUT", float, "seconds without incoming audio before a call is dropped"),
    "connect_timeout": ("CONNECT_TIMEOUT", float, "seconds for ICE/DTLS to complete after the answer"),
    "retry_after": ("RETRY_AFTER", int, "Retry-After seconds sent with 503"),
    "log_level": ("LOG_LEVEL", str, "logging level"),
    "allowed_origins": (
        "ALLOWED_ORIGINS",
        str,
        "comma list of other browser origins allowed to call (https://app.example); * for any",
    ),
    "offers_per_minute": ("OFFERS_PER_MINUTE", float, "offers per client address per minute (429 past it); 0: no limit"),
    "uploads_per_minute": ("UPLOADS_PER_MINUTE", float, "POST /v1/avatar per client address per minute; 0: no limit"),
    "oneshot_queue": ("ONESHOT_QUEUE", int, "one-shot requests (uploads, downloads) queued or running; more get 503"),
    "header_timeout": ("HEADER_TIMEOUT", float, "seconds a client may take to send a request head"),
    "body_timeout": ("BODY_TIMEOUT", float, "seconds a client may take to send a request body"),
    "janus": ("JANUS", str, "rooms' SFU: auto (start a local Janus if installed), off, or ws://host:port/ | unix:/path"),
    "janus_api_secret": ("JANUS_API_SECRET", str, "API secret of a Janus we do not start"),
    "janus_admin_key": ("JANUS_ADMIN_KEY", str, "VideoRoom admin_key of a Janus we do not start"),
    "janus_socket": ("JANUS_SOCKET", str, "API socket path of the Janus we start (other workers: --janus unix:PATH)"),
    "janus_rtp_ports": ("JANUS_RTP_PORTS", str, "UDP port range of a supervised Janus (min-max)"),
    "janus_public_ip": ("JANUS_PUBLIC_IP", str, "public address a supervised Janus advertises (1:1 NAT)"),
    "room_cap": ("ROOM_CAP", int, "people per room"),
    "audio_delay_ms": ("AUDIO_DELAY_MS", float, "room feeds: extra delay of the voice behind the avatar (default 0: measured)"),
    "turn_secret": ("TURN_SECRET", str, "coturn static-auth-secret (REST API credentials for browsers)"),
    "turn_urls": ("TURN_URLS", str, "comma list of turn: URLs for those credentials"),
    "turn_ttl": ("TURN_TTL", int, "lifetime of TURN credentials in seconds"),
    "loopback_only": (
        "LOOPBACK_ONLY",
        _yes_no,
        "keep ICE on 127.0.0.1 (default: when the bind host is loopback); false behind a local TLS proxy",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``serve`` flags to a parser (the CLI owns the parser; we own the flags)."""
    for name, (env, typ, help_) in _OPTIONS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=f"{help_} [env {_ENV_PREFIX}{env}]"
        )
    parser.add_argument(
        "--no-frame-events",
        dest="frame_events",
        action="store_false",
        default=None,
        help=f"refuse per-frame mouth telemetry even when a caller asks [env {_ENV_PREFIX}FRAME_EVENTS=0]",
    )
    parser.add_argument("--static-dir", dest="static_dir", default=None, help="serve the web client from here")
    return parser


def parse_origins(text: str) -> tuple[str, ...]:
    """``https://a.example, http://b.example:8080`` → normalised origins (lower case, no slash)."""
    return tuple(o.strip().rstrip("/").lower() for o in text.split(",") if o.strip())


def _coerce(name: str, raw: Any) -> Any:
    if name == "ice_servers":
        return parse_ice_servers(raw) if isinstance(raw, str) else tuple(raw)
    if name == "allowed_origins":
        return parse_origins(raw) if isinstance(raw, str) else tuple(raw)
    return raw


def from_sources(args: argparse.Namespace | dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> ServerConfig:
    """Flags over ``S2F_*`` environment over defaults."""
    environ = dict(os.environ if environ is None else environ)
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    values: dict[str, Any] = {}
    for name, (env, typ, _) in _OPTIONS.items():
        raw = given.get(name)
        if raw is None and _ENV_PREFIX + env in environ:
            raw = typ(environ[_ENV_PREFIX + env])
        if raw is not None:
            values[name] = _coerce(name, raw)
    fe = given.get("frame_events")
    if fe is None and _ENV_PREFIX + "FRAME_EVENTS" in environ:
        fe = environ[_ENV_PREFIX + "FRAME_EVENTS"].lower() not in ("0", "false", "no", "off")
    if fe is not None:
        values["frame_events"] = bool(fe)
    if given.get("static_dir"):
        values["static_dir"] = given["static_dir"]
    known = {f.name for f in fields(ServerConfig)}
    return ServerConfig(**{k: v for k, v in values.items() if k in known}).validate()


def parse_args(argv: Sequence[str] | None = None) -> ServerConfig:
    parser = argparse.ArgumentParser(prog="speech2face serve", description="Speech2Face Live call server")
    add_arguments(parser)
    return from_sources(parser.parse_args(argv))
