"""ICE policy: loopback-only candidates when serving on 127.0.0.1, configured servers otherwise.

aioice deliberately leaves 127.0.0.1 out of host candidates, so a server bound to loopback
(the default, and every test) would gather nothing in a loopback-only network namespace,
or would gather LAN addresses and send STUN checks off the machine. When the bind host is
loopback we make aioice gather 127.0.0.1 only, and drop the offer's non-loopback and mDNS
(``*.local``) candidates, so no packet — not even an mDNS query — leaves loopback.
"""

from __future__ import annotations

import ipaddress
from typing import Callable

import aioice.ice
import aioice.turn
from aiortc import RTCConfiguration, RTCIceServer

from .config import ServerConfig

_original_get_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


def use_loopback_only(enabled: bool = True) -> None:
    """Process-wide: aioice gathers only 127.0.0.1 (``enabled``) or its usual addresses."""
    aioice.ice.get_host_addresses = _loopback_host_addresses if enabled else _original_get_host_addresses


_original_stun_request = aioice.ice.StunProtocol.request


async def _patient_stun_request(self, request, addr, integrity_key=None, retransmissions=None):
    # aioice sends consent checks (RFC 7675, every ~5 s) as single-shot transactions
    # (retransmissions=0, answer within 0.5 s) and ends the connection after six misses.
    # A browser starved of CPU answers late: measured here, three headless Chromiums on a
    # loaded 2-core box answered in 2-20 s while their audio kept flowing, and every call
    # ended after ~35 s. Consent checks are the only caller of retransmissions=0; give them
    # aioice's ordinary retransmission schedule. A caller that really vanished is caught
    # long before by the call's own watchdog (no audio for idle_timeout).
    if retransmissions == 0:
        retransmissions = None
    return await _original_stun_request(self, request, addr, integrity_key=integrity_key, retransmissions=retransmissions)


def use_patient_consent() -> None:
    """Process-wide: consent checks retransmit like any STUN request (idempotent)."""
    aioice.ice.StunProtocol.request = _patient_stun_request


#: receive buffer asked for each ICE socket (the kernel grants at most net.core.rmem_max)
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024


def use_large_receive_buffers() -> None:
    """Process-wide: aioice asks for ``RECEIVE_BUFFER_BYTES`` per ICE socket instead of 256 KB.

    An asyncio process serving many streams pauses its reads now and then (an encode, a GC
    pass), and what arrives meanwhile past the socket's queue is dropped. Measured in a room
    of 8 on a 2-core box: 7-17 % of a participant process's datagrams lost to full queues
    (``ss -uam`` drops, all on the 16 sockets of the one process that was busiest). aioice
    sets the size on each host socket from ``aioice.turn.UDP_SOCKET_BUFFER_SIZE`` at gathering.
    """
    aioice.turn.UDP_SOCKET_BUFFER_SIZE = max(aioice.turn.UDP_SOCKET_BUFFER_SIZE, RECEIVE_BUFFER_BYTES)


def rtc_configuration(config: ServerConfig) -> RTCConfiguration:
    """Never the aiortc default (a public STUN server): none, or exactly what was configured."""
    if config.is_loopback:
        return RTCConfiguration(iceServers=[])
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in config.ice_servers]
    )


def _is_loopback_address(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # mDNS name or garbage


def keep_loopback_candidates(sdp: str) -> str:
    """Remove every ``a=candidate`` line whose address is not loopback (IPv4 or IPv6)."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) < 6 or not _is_loopback_address(parts[4]):
                continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"
