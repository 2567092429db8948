"""What the server tells its operator once it listens: where its state and token are, and
the ways in (rpm-tui, rpmctl, telnet or nc, AUTH), so a first `make run` says how to
connect."""

from __future__ import annotations

import os

from rpm import __version__
from rpm.server.config import ServerConfig


def listening_address(port) -> str:
    """A listening port as HOST:PORT, or the path of a unix socket."""
    address = port.getHost()
    name = getattr(address, "name", None)
    return os.fsdecode(name) if name else f"{address.host}:{address.port}"


def ways_in(description: str, where: str) -> list[str]:
    """Commands that connect to one listener."""
    if description.startswith("unix:"):
        return [f"rpm-tui unix:{where}", f"rpmctl -H unix:{where} ps", f"nc -U {where}"]
    host, _, port = where.rpartition(":")
    host = f"[{host}]" if ":" in host else host
    if description.startswith("ssl:"):
        return [
            f"rpm-tui tls://{host}:{port} --ca CA.pem",
            f"rpmctl -H tls://{host}:{port} --ca CA.pem ps",
            f"openssl s_client -quiet -connect {host}:{port}",
        ]
    return [
        f"rpm-tui {host}:{port}",
        f"rpmctl -H {host}:{port} ps",
        f"telnet {host.strip('[]')} {port}",
    ]


def welcome(config: ServerConfig, ways: list[list[str]]) -> str:
    """The lines logged once every listener is up."""
    lines = [f"rpm {__version__} is ready", f"  state directory: {config.state_dir}"]
    if config.no_auth:
        lines.append("  no token needed (--no-auth)")
    else:
        lines.append(f"  token file:      {config.token_path}")
    lines.append("  connect with:")
    lines += [f"    {command}" for commands in ways for command in commands]
    if not config.no_auth:
        lines.append(
            "  then, to change anything: AUTH <the token> (rpm-tui and rpmctl read the token "
            "file themselves)"
        )
    return "\n".join(lines)
