"""What the server knows about one connection, and about where it comes from."""

from __future__ import annotations

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

    def seen_started(self, pid: int) -> float | None:
        """The start time of pid in the last table this client saw, if it saw pid."""
        row = self.seen.by_pid.get(pid) if self.seen is not None else None
        return row.started if row is not None else None


def describe_peer(address) -> tuple[str, str, bool]:
    """(peer for logs, host for per-peer limits, whether it is local) of a client address."""
    host = getattr(address, "host", None)
    if host is None:
        return "unix", "unix", True
    return f"{host}:{address.port}", host, is_loopback(host)
