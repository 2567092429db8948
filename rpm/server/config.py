"""The server's settings, checked before anything starts: every bad value gets one line
saying what to fix, and an exposed plain-TCP listener is refused unless asked for."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass

from rpm.addresses import is_loopback
from rpm.paths import default_state_dir
from rpm.server.managed.outputs import DEFAULT_MAX_BYTES
from rpm.server.procs.policy import SCOPES
from rpm.server.statedir import check_state_dir

SAFE_KINDS = ("tcp", "tcp6", "ssl", "unix", "systemd")
MIN_LOG_BYTES = 64 * 1024
UNIX_MODE = "600"


class ConfigError(Exception):
    """A setting that cannot work; the message says what to fix."""


@dataclass
class ServerConfig:
    listen: list[str]
    state_dir: str
    token_file: str | None = None
    no_auth: bool = False
    insecure: bool = False
    signal_scope: str = "owned"
    idle_timeout: float = 900.0
    max_managed: int = 1000
    keep_ended: int = 1000
    audit_keep_days: float = 90.0
    max_connections: int = 1000
    max_connections_per_peer: int = 100
    stop_children_on_exit: bool = False
    port_file: str | None = None
    log_max_bytes: int = DEFAULT_MAX_BYTES
    programs: str | None = None  # the programs file (--programs), absolute
    metrics: str | None = None  # where /metrics is served (--metrics), an endpoint
    server_log: str | None = None  # the server's own log file, rotated (serverlog.py)
    server_log_size: int = 10 * 1024 * 1024
    server_log_keep: int = 5
    allowed_programs: tuple[str, ...] | None = None  # None: any program may be started
    child_umask: int | None = None  # managed programs' umask, when the server's is tighter
    # Contain programs with process-wide means (the server a child subreaper, its programs
    # in cgroups where allowed): `twistd rpm` does (build_config), a service embedded in
    # another program, such as the tests' in-process servers, does not.
    contain: bool = False

    @property
    def token_path(self) -> str:
        """Where the token clients need for AUTH is kept."""
        return self.token_file or os.path.join(self.state_dir, "token")


def split_description(description: str) -> tuple[str, list[str], dict[str, str]]:
    """A Twisted endpoint description as (kind, positional args, keyword args); `\\:` escapes."""
    parts, current, escaped = [], [], False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    args, kwargs = [], {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if eq:
            kwargs[key] = value
        else:
            args.append(part)
    return parts[0].lower(), args, kwargs


# Where each endpoint type takes its interface when given positionally (Twisted's parsers:
# tcp:PORT:INTERFACE, ssl:PORT:KEY:CERT:METHOD:INTERFACE, tcp6:PORT:BACKLOG:INTERFACE).
_INTERFACE_POSITION = {"tcp": 1, "ssl": 4, "tcp6": 2}


def interface_of(kind: str, args: list[str], kwargs: dict[str, str]) -> str:
    """The address a TCP-family endpoint binds to; empty means every interface."""
    position = _INTERFACE_POSITION[kind]
    return kwargs.get("interface", args[position] if len(args) > position else "")


def is_local_listener(description: str) -> bool:
    """A unix socket, or TCP/TLS bound to a loopback address."""
    kind, args, kwargs = split_description(description)
    if kind == "unix":
        return True
    return kind in _INTERFACE_POSITION and is_loopback(interface_of(kind, args, kwargs))


def _port_of(args: list[str], kwargs: dict[str, str], description: str) -> int:
    text = kwargs.get("port", args[0] if args else "")
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError(f"--listen {description}: the port must be a number from 0 to 65535")
    return int(text)


def check_listener(description: str, insecure: bool) -> str:
    """Refuse unsafe listeners; return the description with safe unix-socket defaults added."""
    kind, args, kwargs = split_description(description)
    if kind not in SAFE_KINDS and not insecure:
        raise ConfigError(
            f"--listen {description}: endpoint type {kind!r} is not one rpm knows "
            f"to be safe ({', '.join(SAFE_KINDS)}); add --insecure to use it anyway"
        )
    if kind in ("tcp", "tcp6"):
        _port_of(args, kwargs, description)
        interface = interface_of(kind, args, kwargs)
        if not is_loopback(interface) and not insecure:
            where = interface or "every interface"
            raise ConfigError(
                f"refusing plain TCP on {where}: anyone who can reach it could "
                "start programs. Use TLS (--listen ssl:PORT:privateKey=KEY:"
                "certKey=CERT), or add --insecure if you really mean it"
            )
    if kind == "ssl":
        _port_of(args, kwargs, description)
    if kind == "unix":
        mode = kwargs.get("mode")
        if mode is None:
            description += f":mode={UNIX_MODE}"
        elif int(mode, 8) & 0o077 and not insecure:
            raise ConfigError(
                f"--listen {description}: mode {mode} lets other users connect; "
                f"use mode={UNIX_MODE}, or add --insecure"
            )
        if "lockfile" not in kwargs:
            description += ":lockfile=1"
    return description


def probe_port(description: str) -> None:
    """Fail early, with a clear message, when a TCP port is already taken."""
    kind, args, kwargs = split_description(description)
    if kind not in ("tcp", "tcp6", "ssl"):
        return
    port = _port_of(args, kwargs, description)
    interface = interface_of(kind, args, kwargs) or ("::" if kind == "tcp6" else "0.0.0.0")
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((interface, port))
        except OSError as err:
            raise ConfigError(
                f"cannot listen on {interface} port {port}: {err.strerror}; is "
                "another server running? choose another --port"
            ) from err


def _number(options, name: str, low: float, cast=int):
    text = str(options[name])
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < low:
        kind = "a whole number" if cast is int else "a number"
        raise ConfigError(f"--{name} must be {kind} of at least {low:g}, got {text!r}")
    return value


DEFAULT_PORT, DEFAULT_INTERFACE = "5002", "127.0.0.1"


def _listeners(options, insecure: bool) -> list[str]:
    """The --listen descriptions plus the TCP listener --port and --interface make (which is
    there by default, and as well as any --listen when either is given); checked for safety."""
    listen = list(options["listen"])
    if not listen or options["port"] is not None or options["interface"] is not None:
        listen.append(_tcp_listener(options))
    return [check_listener(description, insecure) for description in listen]


def _tcp_listener(options) -> str:
    port = _number({"port": options["port"] or DEFAULT_PORT}, "port", 0)
    if port > 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {port}")
    address = options["interface"] or DEFAULT_INTERFACE
    kind = "tcp6" if ":" in address else "tcp"
    interface = address.replace(":", "\\:")
    return f"{kind}:{port}:interface={interface}"


def read_allow_list(path: str) -> tuple[str, ...]:
    """--allow-programs FILE: one absolute path or glob a line; blank lines and # comments
    are skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.split("#", 1)[0].strip() for line in handle]
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read --allow-programs {path}: {err}") from err
    patterns = tuple(line for line in lines if line)
    for pattern in patterns:
        if not pattern.startswith("/"):
            raise ConfigError(
                f"--allow-programs {path}: {pattern!r} is not an absolute path or glob"
            )
    return patterns


def _server_log(path: str | None) -> str | None:
    """--server-log as an absolute path in a directory that exists (twistd changes directory
    to / when it daemonizes)."""
    if path is None:
        return None
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(os.path.dirname(path)):
        raise ConfigError(f"--server-log {path}: its directory does not exist")
    return path


def build_config(options) -> ServerConfig:
    """Check the parsed command-line options and turn them into a ServerConfig."""
    insecure = bool(options["insecure"])
    listen = _listeners(options, insecure)
    if options["no-auth"] and not insecure and not all(map(is_local_listener, listen)):
        raise ConfigError(
            "refusing --no-auth on a listener other machines can reach: anyone "
            "could start programs. Drop --no-auth, or add --insecure"
        )
    state_dir = os.path.abspath(os.path.expanduser(options["state-dir"] or default_state_dir()))
    problem = check_state_dir(state_dir)
    if problem:
        raise ConfigError(problem)
    if options["signal-scope"] not in SCOPES:
        raise ConfigError(
            f"--signal-scope must be owned or managed, got {options['signal-scope']!r}"
        )
    return ServerConfig(
        listen=listen,
        state_dir=state_dir,
        token_file=options["token-file"],
        no_auth=bool(options["no-auth"]),
        insecure=insecure,
        signal_scope=options["signal-scope"],
        idle_timeout=_number(options, "idle-timeout", 0, float),
        max_managed=_number(options, "max-managed", 1),
        keep_ended=_number(options, "keep-ended", 0),
        audit_keep_days=_number(options, "audit-keep-days", 0, float),
        max_connections=_number(options, "max-connections", 1),
        max_connections_per_peer=_number(options, "max-connections-per-peer", 1),
        stop_children_on_exit=bool(options["stop-children-on-exit"]),
        port_file=options["port-file"],
        log_max_bytes=_number(options, "log-max-bytes", MIN_LOG_BYTES),
        programs=os.path.abspath(options["programs"]) if options["programs"] else None,
        metrics=check_listener(options["metrics"], insecure) if options["metrics"] else None,
        server_log=_server_log(options["server-log"]),
        server_log_size=_number(options, "server-log-size", 64 * 1024),
        server_log_keep=_number(options, "server-log-keep", 1),
        contain=True,
        allowed_programs=(
            read_allow_list(options["allow-programs"]) if options["allow-programs"] else None
        ),
    )
