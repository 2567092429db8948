"""rpm-tui: the processes of one or more machines running rpm servers, in a terminal."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from twisted.internet import defer, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from rpm import __version__
from rpm.addresses import Address, parse_address
from rpm.clock import monotonic_timers
from rpm.fleet import FleetError, FleetHost, read_fleet
from rpm.paths import default_state_dir
from rpm.tokens import TokenError, token_for
from tui.app import App, tune_garbage_collector
from tui.connection import HostLink
from tui.keys import help_lines
from tui.launches import LaunchHistory
from tui.model import ProcessModel


def tui_state_dir() -> str:
    return os.path.join(os.path.dirname(default_state_dir()), "rpm-tui")


DEFAULT_LOG = os.path.join(tui_state_dir(), "rpm-tui.log")


def help_epilog() -> str:
    """What --help says after the options: addresses, the token, keys, logs, exit status."""
    keys = "\n".join(f"  {keys:<24} {text}" for keys, text in help_lines())
    return f"""hosts:
  HOST[:PORT]              plain TCP (default 127.0.0.1:5002; the port defaults to 5002)
  [IPv6]:PORT              an IPv6 address
  tls://HOST:PORT          TLS, verifying the server's certificate (see --ca)
  unix:/PATH               a unix socket
  --hosts FILE             a fleet file: [hosts.NAME] tables with address, token_file or
                           token_env, and ca (each host its own token; see docs/fleet.md)
  Several hosts give one merged table with a HOST column.

token (needed to change anything; reading works without it on localhost):
  --token-file FILE, else $RPM_TOKEN, else for a local server its default token file
  ($XDG_STATE_HOME/rpm/token or ~/.local/state/rpm/token).

keys:
{keys}

Unexpected errors go to the log file ({DEFAULT_LOG} unless --log-file),
never to the screen. Exit status: 0 after q; 1 if a server cannot be reached at start
(without --wait) or an argument is wrong."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rpm-tui",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A live, full-screen table of the processes of machines running rpm "
        "servers: sort, filter, tree view, details, launch, stop, signal, pause and read "
        "the output of programs.",
        epilog=help_epilog(),
    )
    parser.add_argument("hosts", nargs="*", metavar="HOST[:PORT]", help="servers to show")
    parser.add_argument(
        "--hosts",
        dest="fleet",
        metavar="FILE",
        help="a fleet file (TOML): [hosts.NAME] with address, token_file or token_env, ca",
    )
    parser.add_argument("--token-file", metavar="FILE", help="file holding the server token")
    parser.add_argument(
        "--ca",
        metavar="CERT",
        help="CA certificate (PEM) for tls:// servers; default: the system's trusted CAs",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="start even if a server cannot be reached yet, and keep trying",
    )
    parser.add_argument(
        "--log-file",
        metavar="FILE",
        default=DEFAULT_LOG,
        help=f"where unexpected errors are logged (default {DEFAULT_LOG})",
    )
    parser.add_argument("--version", action="version", version=f"rpm-tui {__version__}")
    return parser.parse_args(argv)


def tui_token(address: Address, token_file: str | None) -> str | None:
    try:
        return token_for(address, token_file)
    except TokenError as err:
        raise SystemExit(f"rpm-tui: {err}") from err


def start_logging(path: str) -> None:
    """Send every log and warning to the file: nothing may write over the screen."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
    except OSError as err:
        raise SystemExit(f"rpm-tui: cannot write the log file {path}: {err.strerror}") from err
    globalLogBeginner.beginLoggingTo([textFileLogObserver(handle)], redirectStandardIO=False)
    logging.basicConfig(stream=handle, level=logging.WARNING)


async def run(reactor, args: argparse.Namespace, hosts: list[FleetHost]) -> int:
    monotonic_timers(reactor)
    model = ProcessModel()
    links = [
        HostLink(reactor, host.address, host.token, host.ca, model, label=host.name)
        for host in hosts
    ]
    results = await defer.DeferredList([link.start() for link in links], consumeErrors=True)
    failed = [  # a refused token is not a failure to reach: that host goes on read-only
        link
        for link, (ok, _) in zip(links, results, strict=True)
        if not ok and not link.auth_failed
    ]
    if failed and not args.wait:
        for link in links:
            link.stop()
        for link in failed:
            print(f"rpm-tui: cannot reach {link.label}: {link.problem}", file=sys.stderr)
        raise SystemExit(1)
    launches = LaunchHistory(os.path.join(tui_state_dir(), "history"))
    app = App(reactor, links, model, launches)
    return await app.start()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    hosts = fleet_hosts(args)
    start_logging(args.log_file)
    tune_garbage_collector()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, args, hosts)))


def fleet_hosts(args: argparse.Namespace) -> list[FleetHost]:
    """The fleet file's hosts, then those on the command line (the default if neither)."""
    try:
        hosts = read_fleet(args.fleet) if args.fleet else []
        addresses = [parse_address(host) for host in args.hosts]
    except (ValueError, FleetError) as err:
        raise SystemExit(f"rpm-tui: {err}") from err
    if args.ca and not os.path.isfile(args.ca):
        raise SystemExit(f"rpm-tui: --ca {args.ca}: no such file")
    if not hosts and not addresses:
        addresses = [parse_address("127.0.0.1:5002")]
    given = [
        FleetHost(str(address), address, tui_token(address, args.token_file), args.ca)
        for address in addresses
    ]
    return hosts + given


if __name__ == "__main__":
    main()
