"""Where a server listens, as clients write it (`host:port`, `tls://host:port`,
`unix:/path`), and whether an address is this machine's own (pure)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_PORT = 5002


def is_loopback(host: str) -> bool:
    """Whether host names this machine over loopback: all of 127.0.0.0/8, ::1, an
    IPv4-mapped loopback address (::ffff:127.0.0.1), and the name localhost."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


@dataclass(frozen=True)
class Address:
    """Where a server listens: TCP host and port (optionally TLS), or a unix socket."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls: bool = False
    unix: str | None = None

    def __str__(self) -> str:
        if self.unix:
            return f"unix:{self.unix}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tls://' if self.tls else ''}{host}:{self.port}"

    @property
    def is_local(self) -> bool:
        return self.unix is not None or is_loopback(self.host)


_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+))?(?::(?P<port>\d+))?$")


def parse_address(text: str) -> Address:
    """`host`, `host:port`, `[::1]:port`, `tls://host:port` or `unix:/path`; ValueError if not."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a socket path, as in unix:/run/rpm.sock")
        return Address(unix=path)
    tls = text.startswith("tls://")
    rest = text[len("tls://") :] if tls else text.removeprefix("tcp://")
    match = _HOST_PORT.match(rest)
    if not rest or match is None:
        raise ValueError(f"not an address: {text!r} (use host:port, tls://host:port or unix:PATH)")
    port = int(match["port"]) if match["port"] else DEFAULT_PORT
    if not 0 < port <= 65535:
        raise ValueError(f"port {port} is out of range in {text!r}")
    return Address(match["v6"] or match["host"] or "127.0.0.1", port, tls)
