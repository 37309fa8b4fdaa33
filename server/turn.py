"""Time-limited TURN credentials (coturn's REST API scheme, ``use-auth-secret``).

A browser behind a strict NAT reaches Janus through coturn. Rather than a static TURN
password in every page, the server hands each participant a username
``<expiry>:<label>`` and its HMAC-SHA1 under the secret coturn also holds
(``static-auth-secret``): coturn checks it without asking us, and it stops working at the
expiry. Nothing is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def rest_credentials(secret: str, urls: list[str], ttl_s: int, label: str = "s2f", now: float | None = None) -> dict:
    """One RTCIceServer dict valid for ``ttl_s`` seconds."""
    expiry = int((time.time() if now is None else now) + ttl_s)
    username = f"{expiry}:{label}"
    credential = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return {"urls": list(urls), "username": username, "credential": credential}


def ice_servers_for_browser(config, label: str) -> list[dict]:
    """What a room page's peer connections use: the configured servers plus TURN REST credentials."""
    if config.is_loopback:
        return []
    servers = [
        {
            "urls": s.urls,
            **({"username": s.username} if s.username else {}),
            **({"credential": s.credential} if s.credential else {}),
        }
        for s in config.ice_servers
    ]
    if config.turn_secret and config.turn_urls:
        urls = [u.strip() for u in config.turn_urls.split(",") if u.strip()]
        servers.append(rest_credentials(config.turn_secret, urls, config.turn_ttl, label))
    return servers
