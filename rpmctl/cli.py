"""rpmctl's command line: every subcommand, its options and an example, defined once (the
parser, `--help` and the shell completions all come from here)."""

from __future__ import annotations

import argparse

import shtab

from rpm import __version__
from rpm.limits import RESTART_POLICIES

EXIT_CODES = """exit status:
  0  success (for stop: the process is gone)
  1  the server answered ERR (printed on stderr as `rpmctl: CODE: message`)
  2  a usage error
  3  cannot connect to a server, or the connection broke
  4  authentication needed or refused"""

HOSTS = """hosts and credentials, as for rpm-tui:
  -H HOST[:PORT] | tls://HOST:PORT | unix:/PATH (default $RPM_HOST, else 127.0.0.1:5002)
  --hosts FILE: a fleet file (rpm-tui's); -H NAME picks a host of it, ps asks them all
  the token: --token-file FILE, else $RPM_TOKEN, else a local server's own token file"""

# (name, aliases, summary, example)
SUBCOMMANDS = (
    ("ps", ["list"], "the process table", "rpmctl ps --managed sleep"),
    ("info", [], "one process in detail", "rpmctl info 4242"),
    ("start", [], "start a program; prints its pid", "pid=$(rpmctl start -- sleep 60)"),
    ("stop", [], "stop a process: SIGTERM, then SIGKILL", "rpmctl stop 4242 --grace 10"),
    ("kill", [], "send a signal (default TERM)", "rpmctl kill 4242 HUP"),
    ("signal", [], "send a signal", "rpmctl signal 4242 USR1"),
    ("pause", [], "stop a process with SIGSTOP", "rpmctl pause 4242"),
    ("resume", [], "continue a paused process", "rpmctl resume 4242"),
    ("restart", [], "restart a managed program", "rpmctl restart web"),
    ("logs", [], "a managed program's output", "rpmctl logs 4242 -n 50 -f"),
    ("history", [], "the audit trail of changes", "rpmctl history -n 5"),
    ("watch", [], "a refreshing process table", "rpmctl watch --json"),
    ("reload", [], "re-read the server's programs file", "rpmctl reload"),
    ("ping", [], "check that a server answers", "rpmctl ping"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rpmctl",
        description="Control rpm servers from the command line: list, start, stop, signal "
        "and read the output of processes.",
        epilog=f"{HOSTS}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rpmctl {__version__}")
    shtab.add_argument_to(parser, ["--print-completion"], help="print a bash or zsh completion")
    _connection_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, aliases, summary, example in SUBCOMMANDS:
        sub = commands.add_parser(
            name,
            aliases=aliases,
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _connection_options(sub, argparse.SUPPRESS)
        _ARGUMENTS.get(name, lambda _: None)(sub)
        sub.set_defaults(command=name)
    return parser


def _connection_options(parser: argparse.ArgumentParser, default=None) -> None:
    """The options every subcommand takes too (before or after its name)."""
    parser.add_argument(
        "-H",
        "--host",
        action="append",
        default=default,
        metavar="HOST",
        help="the server: HOST[:PORT], tls://HOST:PORT or unix:/PATH (repeat for ps)",
    )
    parser.add_argument("--token-file", metavar="FILE", default=default, help="the token")
    parser.add_argument(
        "--hosts",
        dest="fleet",
        metavar="FILE",
        default=default,
        help="a fleet file (as rpm-tui's): -H may name its hosts; ps asks them all",
    )
    parser.add_argument(
        "--ca", metavar="CERT", default=default, help="CA certificate (PEM) for tls:// servers"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default if default is not None else False,
        help="print the server's JSON objects, one a line",
    )


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="a pid, or a program's name")


def _ps(parser):
    parser.add_argument("--managed", action="store_true", help="only programs rpm started")
    parser.add_argument("pattern", nargs="?", default="", help="a part of a name or command")


def _start(parser):
    parser.add_argument("--name", help="a name for the program")
    parser.add_argument("--cwd", metavar="DIR", help="its working directory")
    parser.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="an environment variable"
    )
    parser.add_argument("--restart", choices=RESTART_POLICIES, help="its restart policy")
    parser.add_argument("--max-memory", metavar="SIZE", help="restart it above this memory")
    parser.add_argument(
        "argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...", help="the command line"
    )


def _stop(parser):
    _target(parser)
    parser.add_argument("--grace", type=float, metavar="S", help="seconds before SIGKILL")
    parser.add_argument("-v", "--verbose", action="store_true", help="say how it ended")


def _kill(parser):
    _target(parser)
    parser.add_argument("signal", nargs="?", default="TERM", help="a name or number")


def _signal(parser):
    _target(parser)
    parser.add_argument("signal", help="a name (HUP, SIGUSR1) or a number")


def _logs(parser):
    _target(parser)
    parser.add_argument("-n", "--lines", type=int, default=100, help="how many (default 100)")
    parser.add_argument(
        "-f", "--follow", action="store_true", help="go on until Ctrl-C or the program ends"
    )
    parser.add_argument("--timestamps", action="store_true", help="prefix the time each line")


def _history(parser):
    parser.add_argument("-n", "--count", type=int, default=20, help="how many (default 20)")


def _watch(parser):
    parser.add_argument(
        "-n", "--interval", type=float, default=2.0, metavar="S", help="seconds (default 2)"
    )


_ARGUMENTS = {
    "ps": _ps,
    "info": _target,
    "start": _start,
    "stop": _stop,
    "kill": _kill,
    "signal": _signal,
    "pause": _target,
    "resume": _target,
    "restart": _target,
    "logs": _logs,
    "history": _history,
    "watch": _watch,
}
