"""`twistd rpm` / `twist rpm`: the command-line options and makeService.

Everything that can be wrong with the options or the environment (a bad value, a port in
use, an unreadable or exposed token file, a state directory we cannot use) is found here,
before the server daemonizes, and ends it with one line saying what to fix.
"""

from __future__ import annotations

import os
import sqlite3

from twisted.python import usage

from rpm import __version__
from rpm.clock import monotonic_timers
from rpm.server.auth import load_token
from rpm.server.config import ConfigError, ServerConfig, build_config, probe_port
from rpm.server.managed.outputs import DEFAULT_MAX_BYTES
from rpm.server.managed.programsfile import ProgramsFileError, read_programs
from rpm.server.managed.store import Store
from rpm.server.statedir import StateDirBusy, StateLock, prepare_state_dir
from rpm.tokens import TokenError


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the rpm server: a line protocol (telnet-friendly, or JSON) to list, start, "
        "signal and stop processes. It listens on 127.0.0.1:5002 by default; the token "
        "clients need for AUTH is written to STATE_DIR/token on first start."
    )
    optFlags = [
        ["no-auth", None, "serve every command without AUTH (only for trusted local use)"],
        ["insecure", None, "allow plain TCP on a non-loopback address (prefer --listen ssl:...)"],
        [
            "stop-children-on-exit",
            None,
            "stop every managed process when the server stops (default: leave them running)",
        ],
    ]
    optParameters = [
        [
            "port",
            "p",
            None,
            "TCP port to listen on, on --interface (default 5002); with --listen, both apply",
        ],
        ["interface", "i", None, "address to bind the TCP port to (default 127.0.0.1)"],
        [
            "state-dir",
            "d",
            None,
            "token, registry and logs (default: $XDG_STATE_HOME/rpm or ~/.local/state/rpm)",
        ],
        [
            "token-file",
            None,
            None,
            "read the token from FILE (mode 0600) instead of STATE_DIR/token",
        ],
        [
            "signal-scope",
            None,
            "owned",
            "owned: any process the server's user may signal; managed: only those it started "
            "and their descendants",
        ],
        [
            "idle-timeout",
            None,
            "900",
            "close connections silent this many seconds (0: never); watchers are exempt",
        ],
        ["max-managed", None, "1000", "managed processes alive at once"],
        [
            "keep-ended",
            None,
            "1000",
            "programs ended for good whose records and logs are kept (older ones are deleted)",
        ],
        ["audit-keep-days", None, "90", "days of audit records kept (HISTORY)"],
        ["max-connections", None, "1000", "open connections in total"],
        ["max-connections-per-peer", None, "100", "open connections from one address"],
        ["port-file", None, None, "append each listening address to FILE once listening"],
        [
            "allow-programs",
            None,
            None,
            "START only programs matching a line of FILE (absolute paths or globs, one a line)",
        ],
        [
            "log-max-bytes",
            None,
            str(DEFAULT_MAX_BYTES),
            "size cap of each managed process's stdout and of its stderr; past it, older output "
            "moves to a .1 file of the same size",
        ],
        [
            "metrics",
            None,
            None,
            "serve Prometheus metrics at /metrics on this Twisted endpoint, e.g. "
            "tcp:9102:interface=127.0.0.1 (off by default; not loopback: ssl: or --insecure)",
        ],
        [
            "programs",
            None,
            None,
            "keep the programs of this TOML file running (see docs/programs.md); RELOAD or "
            "SIGHUP applies its changes",
        ],
        [
            "server-log",
            None,
            None,
            "write the server's own log to FILE, rotated at --server-log-size, keeping "
            "--server-log-keep old files (under twistd, in place of its -l file)",
        ],
        ["server-log-size", None, str(10 * 1024 * 1024), "size at which --server-log rotates"],
        ["server-log-keep", None, "5", "rotated --server-log files kept (older ones deleted)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """A Twisted endpoint to listen on: tcp:5002:interface=127.0.0.1,
        ssl:5003:privateKey=key.pem:certKey=cert.pem, unix:/run/rpm.sock (repeatable; replaces
        the default 127.0.0.1:5002 unless --port or --interface is also given)"""
        self["listen"].append(description)

    def opt_version(self) -> None:
        """Print the version of rpm and exit."""
        print(f"rpm {__version__}")
        raise SystemExit(0)


def preflight(config: ServerConfig) -> None:
    """Fail now, not after daemonizing, on what would stop the server from starting."""
    try:
        prepare_state_dir(config.state_dir)
    except OSError as err:  # a service user's home that does not exist, say
        raise ConfigError(
            f"cannot make the state directory {config.state_dir} ({err.strerror or err}): "
            "give --state-dir DIR, or set XDG_STATE_HOME, for a directory this user may write"
        ) from err
    probe = StateLock(config.state_dir)  # held for real by the service, once daemonized
    probe.acquire()
    probe.release()
    if not config.no_auth:
        load_token(config.state_dir, config.token_file)
    for description in config.listen:
        probe_port(description)
    Store(os.path.join(config.state_dir, "rpm.db")).close()  # schema readable and current
    if config.programs is not None:
        read_programs(config.programs)  # a bad file stops the server here, saying why


def keep_daemon_files_in_state_dir(twistd, config: ServerConfig) -> None:
    """A daemonizing `twistd rpm` writes its pid file and its log in the directory it was
    started from, unless told where. Where this user cannot write there (`/` for a service
    run by an ordinary user: twistd would die with a traceback), rpm puts them in its state
    directory instead: STATE_DIR/twistd.pid, and the rotated --server-log
    STATE_DIR/server.log, and says so. `twistd` is twistd's own options (this subcommand's
    parent), which it reads again after makeService."""
    if twistd is None or twistd.get("nodaemon", True):  # in the foreground, or under twist
        return
    if os.access(os.getcwd(), os.W_OK):
        return
    if twistd.get("pidfile") == os.path.abspath("twistd.pid"):  # the default
        twistd["pidfile"] = os.path.join(config.state_dir, "twistd.pid")
    if not (twistd.get("logfile") or twistd.get("syslog") or config.server_log):
        config.server_log = os.path.join(config.state_dir, "server.log")
    where = config.server_log or twistd.get("logfile") or "syslog"
    pid = f", its pid in {twistd['pidfile']}" if twistd.get("pidfile") else ""
    print(f"rpm: {os.getcwd()} is not writable: its log is {where}{pid}", flush=True)


def makeService(options: Options):
    from twisted.internet import reactor

    from rpm.server.service import RPMService

    monotonic_timers(reactor)  # before anything is scheduled: see rpm/clock.py

    # Everything the server writes (state, its own log) is for its user only; the programs
    # it starts keep the umask it was started with.
    child_umask = os.umask(0o077)
    try:
        config = build_config(options)
        config.child_umask = child_umask
        preflight(config)
        keep_daemon_files_in_state_dir(getattr(options, "parent", None), config)
    except (
        ConfigError,
        TokenError,
        StateDirBusy,
        OSError,
        sqlite3.Error,
        RuntimeError,
        ProgramsFileError,
    ) as err:
        raise SystemExit(f"rpm: {err}") from err
    return RPMService(config)
