"""Room names our server mints and recognises, without storing anything.

A name is a random slug plus a tag, an HMAC of the slug under the server's room secret:
``/r/<slug>-<tag>`` is a capability anyone with the link can use, any worker process can
check it on its own (scale-out needs no shared room table), and a room survives a Janus
or server restart because nothing about it had to be remembered. A name we did not mint is
refused before Janus hears of it. The Janus room behind a name has a secret and a PIN
derived the same way, so only our server can create, join or destroy it.

The secret is the server's room secret (``state.room_secret``: ``S2F_ROOM_SECRET``, which
also salts ``room`` privacy avatars, else a random one per run): links last as long as it
does, and every worker process serving rooms must be given the same value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from .state import room_secret

SLUG_CHARS = 10  # 50 random bits: unguessable
TAG_CHARS = 6  # 30 bits: a forged name is refused before it costs anything
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o/1/l: links get read aloud
NAME_RE = re.compile(rf"^[{_ALPHABET}]{{{SLUG_CHARS}}}-[{_ALPHABET}]{{{TAG_CHARS}}}$")


def _secret() -> bytes:
    return room_secret().encode()


def _encode(raw: bytes, n: int) -> str:
    b32 = base64.b32encode(raw).decode().lower()
    table = str.maketrans("abcdefghijklmnopqrstuvwxyz234567", _ALPHABET)
    return b32.translate(table)[:n]


def _tag(slug: str) -> str:
    return _encode(hmac.new(_secret(), b"room-tag:" + slug.encode(), hashlib.sha256).digest(), TAG_CHARS)


def mint() -> str:
    """A fresh room name, e.g. ``k7fq9xw2mh-c4tnaz``."""
    slug = "".join(secrets.choice(_ALPHABET) for _ in range(SLUG_CHARS))
    return f"{slug}-{_tag(slug)}"


def is_valid(name: object) -> bool:
    """Whether ``name`` is one this server (or one sharing its secret) minted."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        return False
    slug, tag = name.split("-")
    return hmac.compare_digest(tag, _tag(slug))


def janus_room_id(name: str) -> str:
    return f"s2f-{name}"


def janus_secret(name: str, purpose: str) -> str:
    """The Janus room's ``secret`` (edit/destroy) or ``pin`` (join), derived, never stored."""
    return hmac.new(_secret(), f"janus-{purpose}:{name}".encode(), hashlib.sha256).hexdigest()[:32]
