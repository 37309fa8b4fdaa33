"""Validation of an offer body ({sdp, type, privacy?, room?, skin_tone?, seed?, size?, frame_events?}).

Everything a caller sends is checked here, before any call, peer or pipeline exists, so a
malformed offer costs nothing and gets a 4xx naming the field to fix.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCSessionDescription

from . import ice
from .call import CallOptions
from .config import PRIVACY_MODES, SIZES, ServerConfig
from .errors import HttpError

MAX_SDP_CHARS = 64 * 1024
MAX_ROOM_CHARS = 64


def _skin_tones() -> list[str]:
    from engines.face import SKIN_TONES

    return list(SKIN_TONES)


def parse_offer(body: Any, config: ServerConfig) -> tuple[CallOptions, RTCSessionDescription]:
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
    if privacy not in PRIVACY_MODES:
        raise HttpError(f'"privacy" must be one of {list(PRIVACY_MODES)}')
    room = body.get("room")
    if room is not None and (not isinstance(room, str) or not 0 < len(room) <= MAX_ROOM_CHARS):
        raise HttpError(f'"room" must be a string of 1..{MAX_ROOM_CHARS} characters')
    if privacy == "room" and not room:
        raise HttpError('privacy "room" needs a "room" name')
    skin = body.get("skin_tone")
    if skin in ("", "auto"):
        skin = None
    if skin is not None and skin not in _skin_tones():
        raise HttpError(f'"skin_tone" must be one of {_skin_tones()} or "auto"')
    from engines.look import check_seed

    try:
        seed = check_seed(body.get("seed"))
    except ValueError as exc:
        raise HttpError(f'"seed": {exc}') from None
    size = body.get("size", config.size)
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise HttpError(f'"size" must be one of {list(SIZES)}') from None
    if size not in SIZES:
        raise HttpError(f'"size" must be one of {list(SIZES)}')
    frame_events = body.get("frame_events", False)
    if not isinstance(frame_events, bool):
        raise HttpError('"frame_events" must be true or false')
    if config.is_loopback:
        sdp = ice.keep_loopback_candidates(sdp)
    return (
        CallOptions(privacy=privacy, room=room, skin_tone=skin, seed=seed, size=size, frame_events=frame_events),
        RTCSessionDescription(sdp=sdp, type="offer"),
    )
