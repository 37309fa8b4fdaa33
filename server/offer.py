"""Validation of an offer body ({sdp, type, privacy?, room?, skin_tone?, seed?, size?, frame_events?}).

Everything a caller sends is checked here, before any call, peer or pipeline exists, so a
malformed offer costs nothing and gets a 4xx naming the field to fix. That includes the SDP
itself, parsed with aiortc's own parser: an offer aiortc would accept but could never turn
into a call (no DTLS fingerprint, a microphone m-line that does not send, only codecs we
cannot decode, a port out of range, no way to receive our video) used to hold a call slot
until the connect timeout while aiortc logged an assertion from a background task.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCSessionDescription
from aiortc.sdp import SessionDescription

from . import ice
from .call import CallOptions
from .config import PRIVACY_MODES, SIZES, ServerConfig
from .errors import HttpError

MAX_SDP_CHARS = 64 * 1024
MAX_ROOM_CHARS = 64
# what aiortc decodes for us (its audio decoders); a browser offers Opus first
AUDIO_CODECS = ("audio/opus", "audio/pcmu", "audio/pcma")
SENDING = ("sendrecv", "sendonly")
RECEIVING = ("sendrecv", "recvonly")


def skin_tones() -> list[str]:
    from engines.face import SKIN_TONES

    return list(SKIN_TONES)


def check_sdp(sdp: str, video: bool = True) -> None:
    """Raise HttpError(400) unless ``sdp`` is an offer we can answer with a working call
    (``video=False``: a room member's microphone, whose avatar goes out through Janus)."""
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises ValueError, KeyError, IndexError, ...
        raise HttpError(f"malformed SDP ({type(exc).__name__} while parsing it)") from None
    if not desc.media:
        raise HttpError("malformed SDP: no m= lines")
    for media in desc.media:
        if not 0 <= media.port <= 65535:
            raise HttpError(f"malformed SDP: {media.kind} port {media.port} is out of range")
        if media.dtls is None or not media.dtls.fingerprints:
            raise HttpError("the offer has no a=fingerprint (DTLS is required)")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise HttpError("the offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")
    audio = [m for m in desc.media if m.kind == "audio"]
    if not audio:
        raise HttpError("the offer has no audio (microphone) track")
    mic = audio[0]
    if (mic.direction or "sendrecv") not in SENDING:
        raise HttpError(f"the audio m-line must send the microphone (sendrecv or sendonly), not {mic.direction}")
    codecs = [c.mimeType.lower() for c in mic.rtp.codecs]
    if not any(c in AUDIO_CODECS for c in codecs):
        offered = ", ".join(sorted({c.split("/", 1)[-1] for c in codecs})) or "none"
        raise HttpError(f"no audio codec the server decodes (offer Opus, PCMU or PCMA; got {offered})")
    wants = [m for m in desc.media if m.kind == "video"]
    if video and (not wants or (wants[0].direction or "sendrecv") not in RECEIVING):
        raise HttpError("the offer does not receive video (add a recvonly video transceiver)")


def _size(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise HttpError(f'"size" must be one of {list(SIZES)}')
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) < 6):
        raise HttpError(f'"size" must be one of {list(SIZES)}')
    size = int(value)
    if size not in SIZES:
        raise HttpError(f'"size" must be one of {list(SIZES)}')
    return size


def parse_offer(body: Any, config: ServerConfig, video: bool = True) -> tuple[CallOptions, RTCSessionDescription]:
    if not isinstance(body, dict):
        raise HttpError("expected a JSON object {sdp, type}")
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer":
        raise HttpError('"type" must be "offer"')
    if not isinstance(sdp, str) or not sdp.strip():
        raise HttpError('"sdp" must be a non-empty string')
    if len(sdp) > MAX_SDP_CHARS:
        raise HttpError("SDP too large", status=413)
    if not sdp.lstrip().startswith("v=0"):
        raise HttpError("malformed SDP: it must start with v=0")
    privacy = body.get("privacy") or config.privacy
    if not isinstance(privacy, str) or privacy not in PRIVACY_MODES:
        raise HttpError(f'"privacy" must be one of {list(PRIVACY_MODES)}')
    room = body.get("room")
    if room is not None and (not isinstance(room, str) or not 0 < len(room) <= MAX_ROOM_CHARS):
        raise HttpError(f'"room" must be a string of 1..{MAX_ROOM_CHARS} characters')
    if isinstance(room, str) and (not room.isprintable() or _unencodable(room)):
        raise HttpError('"room" must be printable UTF-8 text')
    if privacy == "room" and not room:
        raise HttpError('privacy "room" needs a "room" name')
    skin = body.get("skin_tone")
    if skin in ("", "auto"):
        skin = None
    if skin is not None and (not isinstance(skin, str) or skin not in skin_tones()):
        raise HttpError(f'"skin_tone" must be one of {skin_tones()} or "auto"')
    from engines.look import check_seed

    try:
        seed = check_seed(body.get("seed"))
    except ValueError as exc:
        raise HttpError(f'"seed": {exc}') from None
    size = _size(body.get("size"), config.size)
    frame_events = body.get("frame_events", False)
    if not isinstance(frame_events, bool):
        raise HttpError('"frame_events" must be true or false')
    if _unencodable(sdp):
        raise HttpError("malformed SDP: it is not UTF-8 text")
    if config.is_loopback:
        sdp = ice.keep_loopback_candidates(sdp)
    check_sdp(sdp, video)
    return (
        CallOptions(privacy=privacy, room=room, skin_tone=skin, seed=seed, size=size, frame_events=frame_events),
        RTCSessionDescription(sdp=sdp, type="offer"),
    )


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
