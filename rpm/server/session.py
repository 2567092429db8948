"""What the server knows about one connection, and about where it comes from."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from rpm.addresses import is_loopback
from rpm.server.procs.snapshot import Snapshot
from rpm.wire import TEXT


@dataclass
class Session:
    """What the server knows about one connection."""

    peer: str
    host: str
    local: bool
    authenticated: bool
    mode: str = TEXT
    auth_failures: int = 0
    seen: Snapshot | None = None  # the last table this client was sent
    throttle_key: str = ""  # whose wrong AUTHs slow this one down (see peer_key)

    def seen_started(self, pid: int) -> float | None:
        """The start time of pid in the last table this client saw, if it saw pid."""
        row = self.seen.by_pid.get(pid) if self.seen is not None else None
        return row.started if row is not None else None


def peer_key(host: str, local: bool) -> str:
    """The peer AUTH failures are counted against: one for all of loopback (any local
    user can use 127.0.0.2, 127.0.0.3, ...), else the address. A unix socket's peer is
    known only once connected: by its uid (see RPMProtocol.connectionMade)."""
    return "loopback" if local else host


def unix_peer_key(transport) -> str:
    """A unix-socket peer as its uid (SO_PEERCRED), so one local user's guesses do not slow
    another's AUTH; "unix" where the uid cannot be read."""
    try:
        credentials = transport.getHandle().getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
    except (AttributeError, OSError):
        return "unix"
    return f"unix uid {struct.unpack('3i', credentials)[1]}"


def describe_peer(address) -> tuple[str, str, bool]:
    """(peer for logs, host for per-peer limits, whether it is local) of a client address."""
    host = getattr(address, "host", None)
    if host is None:
        return "unix", "unix", True
    return f"{host}:{address.port}", host, is_loopback(host)
