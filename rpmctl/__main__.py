"""rpmctl: run one subcommand against one server (or, for ps, several) and exit with a
status scripts can trust (see cli.EXIT_CODES)."""

from __future__ import annotations

import os
import signal
import sys
from functools import partial

from twisted.internet import defer, error, task

from rpm.addresses import parse_address
from rpm.client import CommandError, ProtocolError, connect
from rpm.clock import monotonic_timers
from rpm.fleet import FleetError, FleetHost, read_fleet
from rpm.tokens import TokenError, token_for
from rpmctl import actions
from rpmctl.cli import build_parser

OK, SERVER_ERROR, USAGE, CONNECTION, AUTH = 0, 1, 2, 3, 4
AUTH_CODES = ("auth-required", "auth-failed")
CONNECT_TIMEOUT = 10.0
ACTIONS = {
    "ps": actions.ps,
    "info": actions.info,
    "start": actions.start,
    "stop": actions.stop,
    "kill": actions.signal,
    "signal": actions.signal,
    "pause": partial(actions.simple, "PAUSE"),
    "resume": partial(actions.simple, "RESUME"),
    "restart": partial(actions.simple, "RESTART"),
    "reload": actions.reload,
    "logs": actions.logs,
    "history": actions.history,
    "watch": actions.watch,
    "ping": actions.ping,
}
# What a broken or unreachable connection raises, as opposed to a bug.
CONNECTION_ERRORS = (
    error.ConnectError,
    error.ConnectionLost,
    error.ConnectionDone,
    error.DNSLookupError,
    defer.TimeoutError,
    ProtocolError,
    OSError,
)


def fail(status: int, message: str) -> SystemExit:
    print(f"rpmctl: {message}", file=sys.stderr)
    return SystemExit(status)


def targets(args) -> list[FleetHost]:
    """The servers to ask, with their tokens and CAs: -H values (a fleet file's names or
    addresses), else every host of --hosts FILE, else $RPM_HOST, else the local server."""
    try:
        fleet = {host.name: host for host in read_fleet(args.fleet)} if args.fleet else {}
    except FleetError as err:
        raise fail(USAGE, str(err)) from err
    given = args.host or ([] if fleet else [os.environ.get("RPM_HOST") or "127.0.0.1:5002"])
    hosts = [fleet[name] if name in fleet else _address(name, args) for name in given]
    hosts = hosts or list(fleet.values())
    if len(hosts) > 1 and args.command != "ps":
        raise fail(USAGE, f"{args.command} takes one -H; only ps merges several servers")
    return hosts


def _address(text: str, args) -> FleetHost:
    try:
        address = parse_address(text)
        return FleetHost(str(address), address, token_for(address, args.token_file), args.ca)
    except ValueError as err:
        raise fail(USAGE, str(err)) from err
    except TokenError as err:
        raise fail(AUTH, str(err)) from err


async def session(reactor, args, hosts: list[FleetHost]) -> None:
    """Connect to every server, run the subcommand, and exit with its status. Ctrl-C (the
    way watch and logs -f end) stops the reactor, closing the connections: that is 0."""
    monotonic_timers(reactor)
    clients, interrupted = [], []
    reactor.addSystemEventTrigger("before", "shutdown", interrupted.append, True)
    try:
        for host in hosts:
            try:
                connecting = connect(reactor, host.address, host.token, host.ca, CONNECT_TIMEOUT)
                clients.append(await connecting)
                clients[-1].name = host.name
            except CommandError:
                raise  # AUTH refused: status 4
            except Exception as err:  # refused, unknown host, TLS not verified, not rpm...
                raise fail(CONNECTION, f"cannot reach {host.name}: {describe(err)}") from err
        status = await ACTIONS[args.command](clients, args, actions.Streams())
    except CommandError as err:
        code = AUTH if err.code in AUTH_CODES else SERVER_ERROR
        raise fail(code, f"{err.code}: {err.message}") from err
    except actions.UsageError as err:
        raise fail(USAGE, str(err)) from err
    except CONNECTION_ERRORS as err:
        if interrupted:
            raise SystemExit(OK) from err
        raise fail(CONNECTION, f"the connection broke: {describe(err)}") from err
    finally:
        for client in clients:
            client.close()
    raise SystemExit(OK if interrupted else status)


def describe(err: BaseException) -> str:
    if isinstance(err, defer.TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    return str(err) or type(err).__name__


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `rpmctl ps | head` ends quietly
    args = build_parser().parse_args(argv)
    if args.ca and not os.path.isfile(args.ca):
        raise fail(USAGE, f"--ca {args.ca}: no such file")
    hosts = targets(args)
    task.react(lambda reactor: defer.Deferred.fromCoroutine(session(reactor, args, hosts)))


if __name__ == "__main__":
    main()
