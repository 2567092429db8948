"""rpmctl: run one subcommand against one server (or, for ps, several) and exit with a
status scripts can trust (see cli.EXIT_CODES)."""

from __future__ import annotations

import os
import signal
import sys
from functools import partial

from twisted.internet import defer, error, task

from rpm.addresses import Address, parse_address
from rpm.client import CommandError, ProtocolError, connect
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


def addresses(args) -> list[Address]:
    hosts = args.host or [os.environ.get("RPM_HOST") or "127.0.0.1:5002"]
    if len(hosts) > 1 and args.command != "ps":
        raise fail(USAGE, f"{args.command} takes one -H; only ps merges several servers")
    try:
        return [parse_address(host) for host in hosts]
    except ValueError as err:
        raise fail(USAGE, str(err)) from err


async def session(reactor, args, targets: list[Address], tokens: list) -> None:
    """Connect to every server, run the subcommand, and exit with its status. Ctrl-C (the
    way watch and logs -f end) stops the reactor, closing the connections: that is 0."""
    clients, interrupted = [], []
    reactor.addSystemEventTrigger("before", "shutdown", interrupted.append, True)
    try:
        for address, token in zip(targets, tokens, strict=True):
            try:
                clients.append(await connect(reactor, address, token, args.ca, CONNECT_TIMEOUT))
            except CommandError:
                raise  # AUTH refused: status 4
            except Exception as err:  # refused, unknown host, TLS not verified, not rpm...
                raise fail(CONNECTION, f"cannot reach {address}: {describe(err)}") from err
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
    targets = addresses(args)
    if args.ca and not os.path.isfile(args.ca):
        raise fail(USAGE, f"--ca {args.ca}: no such file")
    try:
        tokens = [token_for(address, args.token_file) for address in targets]
    except TokenError as err:
        raise fail(AUTH, str(err)) from err
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(session(reactor, args, targets, tokens))
    )


if __name__ == "__main__":
    main()
