"""What each rpmctl subcommand asks the server and prints. Each takes the connected
clients, the parsed arguments and the output streams, and returns the exit status; a
server's ERR reply raises CommandError, which the caller turns into status 1 or 4."""

from __future__ import annotations

import json
import shlex
import sys
import time

from twisted.internet import defer, error

from rpm.client import Client
from rpm.wire import escape_text
from rpmctl import output


class Streams:
    """Where rpmctl writes: stdout for results, stderr for the program's stderr and errors."""

    def __init__(self, out=None, err=None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def json(self, obj) -> None:
        self.out.write(json.dumps(obj, ensure_ascii=True) + "\n")


async def ps(clients: list[Client], args, io: Streams) -> int:
    request = "LIST" + (" --managed" if args.managed else "")
    if args.pattern:
        request += " " + quote(args.pattern)
    replies = [await client.command(request) for client in clients]
    if args.json:
        io.json([row for reply in replies for row in reply["processes"]])
        return 0
    hosts = [(c.name, r["processes"]) for c, r in zip(clients, replies, strict=True)]
    colour = output.colour_wanted(io.out)
    for line in output.table(hosts, output.terminal_width(io.out), colour):
        io.say(line)
    return 0


async def shown(clients: list[Client], args, io: Streams, request: str, lines=None) -> int:
    """Send one request; print the server's object with --json, else lines(reply), if any."""
    reply = await clients[0].command(request)
    if args.json:
        io.json(reply)
    else:
        for line in lines(reply) if lines is not None else ():
            io.say(line)
    return 0


async def info(clients: list[Client], args, io: Streams) -> int:
    request = f"INFO {quote(args.target)}"
    return await shown(
        clients, args, io, request, lambda reply: output.info_lines(reply["process"])
    )


async def start(clients: list[Client], args, io: Streams) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UsageError("start needs a command line, as in: rpmctl start -- sleep 60")
    options = [f"--env {quote(pair)}" for pair in args.env]
    for flag, value in (
        ("--name", args.name),
        ("--cwd", args.cwd),
        ("--restart", args.restart),
        ("--max-memory", args.max_memory),
    ):
        if value is not None:
            options.append(f"{flag} {quote(value)}")
    command = " ".join(quote(word) for word in argv)
    reply = await clients[0].command(" ".join(["START", *options, "--", command]))
    io.json(reply) if args.json else io.say(str(reply["pid"]))
    return 0


async def stop(clients: list[Client], args, io: Streams) -> int:
    grace = f" {args.grace:g}" if args.grace is not None else ""
    reply = await clients[0].command(f"STOP {quote(args.target)}{grace}")
    if args.json:
        io.json(reply)
    elif args.verbose:
        how = f"stopped by {reply['signal']}" if reply.get("signal") else reply.get("message")
        io.say(f"{reply['pid']} {how}")
    return 0


async def signal(clients: list[Client], args, io: Streams) -> int:
    return await shown(clients, args, io, f"SIGNAL {quote(args.target)} {quote(args.signal)}")


async def simple(verb: str, clients: list[Client], args, io: Streams) -> int:
    """A verb whose success needs no words: PAUSE, RESUME, RESTART."""
    return await shown(clients, args, io, f"{verb} {quote(args.target)}")


async def reload(clients: list[Client], args, io: Streams) -> int:
    """RELOAD: the changes it made, one a line (`+ web started 4242`)."""
    return await shown(
        clients, args, io, "RELOAD", lambda reply: [escape_text(c) for c in reply["changes"]]
    )


async def ping(clients: list[Client], args, io: Streams) -> int:
    return await shown(clients, args, io, "PING", lambda reply: [reply["message"]])


async def history(clients: list[Client], args, io: Streams) -> int:
    request = f"HISTORY {args.count}"
    return await shown(clients, args, io, request, lambda r: output.history_lines(r["history"]))


async def logs(clients: list[Client], args, io: Streams) -> int:
    """The program's lines as it wrote them: its stdout on stdout, its stderr on stderr."""
    client = clients[0]
    if args.follow:
        return await follow(client, args, io)
    reply = await client.command(f"LOGS {quote(args.target)} {args.lines}")
    if args.json:
        io.json(reply)
        return 0
    for stream, text in zip(reply["streams"], reply["lines"], strict=True):
        write_line(io, stream, text, None)
    if reply.get("note"):
        io.err.write(f"rpmctl: {reply['note']}\n")
    return 0


def write_line(io: Streams, stream: str, text: str, when: float | None) -> None:
    target = io.err if stream == "stderr" else io.out
    target.write(output.log_line(text, when) + "\n")
    target.flush()


async def follow(client: Client, args, io: Streams) -> int:
    """FOLLOW until the program ends for good (an exit that no restart follows)."""
    ended: defer.Deferred = defer.Deferred()
    pid = None

    def on_event(event: dict) -> None:
        if args.json and event.get("event") in ("output", "gap"):
            io.json(event)
        elif event.get("event") == "output":
            write_line(io, event["stream"], event["line"], time.time() if args.timestamps else None)
        elif event.get("event") == "gap":
            io.err.write(f"rpmctl: {event['bytes']} bytes of {event['stream']} were lost\n")
        elif event.get("event") == "exited" and event.get("pid") == pid and not ended.called:
            ended.callback(None)

    client.on_event = on_event
    await client.command("WATCH 3600 --delta")  # for the exited event; tables are ignored
    reply = await client.command(f"FOLLOW {quote(args.target)} {min(args.lines, 10_000)}")
    pid = reply["pid"]
    while True:
        await ended
        details = (await client.command(f"INFO {pid}"))["process"]
        if details.get("status") != "restarting":
            return 0
        ended = defer.Deferred()


async def watch(clients: list[Client], args, io: Streams) -> int:
    """A table refreshed at each interval (WATCH), or with --json every event as it comes."""
    client = clients[0]
    done: defer.Deferred = defer.Deferred()
    colour, clear = output.colour_wanted(io.out), io.out.isatty()

    def on_event(event: dict) -> None:
        if args.json:
            io.json(event)
        elif event.get("event") == "table":
            lines = output.table(
                [(client.name, event["processes"])], output.terminal_width(io.out), colour
            )
            io.out.write(("\x1b[H\x1b[2J" if clear else "\n") + "\n".join(lines) + "\n")
        io.out.flush()

    def closed(_) -> None:
        if not done.called:
            done.errback(error.ConnectionLost("the server closed the connection"))

    client.on_event = on_event
    client.closed.addBoth(closed)
    await client.command(f"WATCH {args.interval:g}")
    await done  # ends only with the connection (Ctrl-C, or the server going away)
    return 0


def quote(text: str) -> str:
    """One protocol argument, quoted as the server splits them (shlex rules)."""
    if "\n" in text or "\r" in text:
        raise UsageError("arguments cannot hold line breaks: the protocol is one line a request")
    return shlex.quote(text)


class UsageError(Exception):
    """A request rpmctl cannot send as asked (exit status 2)."""
