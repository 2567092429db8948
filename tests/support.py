"""Helpers for tests that talk to a real server: a raw text-mode line client, waiting."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.protocols.basic import LineReceiver

from rpm.server.procs.identity import children_of, read_stat

TIMEOUT = 10.0
BODY_EVENTS = re.compile(r"^\* (table|delta) ")


class LineClient(LineReceiver):
    """Speaks to the server like telnet would; every server line must end in CRLF."""

    delimiter = b"\r\n"
    MAX_LENGTH = 64 * 1024 * 1024

    def __init__(self) -> None:
        self.queue: defer.DeferredQueue = defer.DeferredQueue()
        self.events: list = []
        self.closed: defer.Deferred = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        assert b"\n" not in line and b"\r" not in line, f"bare CR or LF in {line!r}"
        self.queue.put(line.decode("utf-8"))

    def connectionLost(self, reason=None) -> None:
        self.queue.put(None)
        self.closed.callback(None)

    def send(self, text: str | bytes) -> None:
        self.transport.write(text if isinstance(text, bytes) else text.encode() + b"\n")

    async def line(self, timeout: float = TIMEOUT) -> str | None:
        """The next line the server sent (None once the connection is closed)."""
        return await self.queue.get().addTimeout(timeout, reactor)

    async def body(self, timeout: float = TIMEOUT) -> list[str]:
        """Body lines up to the terminating '.', with dot-stuffing undone."""
        lines = []
        while (line := await self.line(timeout)) != ".":
            assert line is not None, "connection closed inside a body"
            lines.append(line[1:] if line.startswith("..") else line)
        return lines

    async def reply(self, timeout: float = TIMEOUT, body: bool = False):
        """The next reply (events before it are kept in self.events): its line, or
        (line, body lines) when body=True."""
        while True:
            line = await self.line(timeout)
            if line is not None and line.startswith("* "):
                event_body = await self.body(timeout) if BODY_EVENTS.match(line) else None
                self.events.append((line, event_body))
                continue
            if body and line is not None and line.startswith("OK "):
                return line, await self.body(timeout)
            return line

    async def event(self, prefix: str, timeout: float = TIMEOUT):
        """Wait for an event line starting with prefix; returns (line, body or None)."""
        deadline = time.monotonic() + timeout
        while True:
            for index, (line, event_body) in enumerate(self.events):
                if line.startswith(prefix):
                    del self.events[: index + 1]
                    return line, event_body
            line = await self.line(max(0.01, deadline - time.monotonic()))
            assert line is not None, "connection closed while waiting for an event"
            event_body = await self.body(timeout) if BODY_EVENTS.match(line) else None
            self.events.append((line, event_body))

    async def request(self, text: str, body: bool = False, timeout: float = TIMEOUT):
        self.send(text)
        return await self.reply(timeout, body)

    async def json(self, text: str, timeout: float = TIMEOUT) -> dict:
        """Send in JSON mode; skip events; return the reply object."""
        self.send(text)
        while True:
            line = await self.line(timeout)
            assert line is not None, "connection closed"
            message = json.loads(line)
            if "event" not in message:
                return message
            self.events.append(message)


async def connect(port: int, token: str | None = None, host: str = "127.0.0.1") -> LineClient:
    client = LineClient()
    endpoint = TCP4ClientEndpoint(reactor, host, port)
    await connectProtocol(endpoint, client).addTimeout(TIMEOUT, reactor)
    greeting = await client.line()
    assert greeting.startswith("OK rpm "), greeting
    client.greeting = greeting
    if token is not None:
        assert await client.request(f"AUTH {token}") == "OK authenticated"
    return client


async def start(client, command: str) -> int:
    """START command through client; return the new pid, failing on any other reply."""
    reply = await client.request(f"START {command}")
    assert reply.startswith("OK ") and reply.endswith(" started"), reply
    return int(reply.split()[1])


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def wait_for(predicate, timeout: float = TIMEOUT, interval: float = 0.05):
    """Poll predicate (sync) until it returns a truthy value; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        await sleep(interval)


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05):
    """Poll predicate until it returns a truthy value, blocking (for tests that drive other
    processes rather than this reactor); fail after timeout."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(interval)
    return value


def at_least(count: int, items: list) -> list | None:
    """items, once there are count of them (a predicate for wait_for and wait_until)."""
    return items if len(items) >= count else None


def pid_alive(pid: int) -> bool:
    """Whether pid runs (a zombie does not count), as the server's identity module reads it."""
    stat = read_stat(pid)
    return stat is not None and stat[1][0] != b"Z"


def kill_tree(pid: int) -> None:
    """SIGKILL a process group this test created (never pid <= 1)."""
    assert pid > 1
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def is_zombie(pid: int) -> bool:
    """Whether pid has exited and waits to be reaped."""
    stat = read_stat(pid)
    return stat is not None and stat[1][0] == b"Z"


def zombie_children(parent: int) -> list[int]:
    """Children of parent that have exited and wait to be reaped."""
    return [pid for pid in children_of(parent) if is_zombie(pid)]


@contextlib.contextmanager
def held_in_a_thread(inside=contextlib.nullcontext):
    """Another thread of this process, within inside() for the whole block (it waits there
    until the block ends); yields its native id."""
    entered, finish = threading.Event(), threading.Event()
    ids = []

    def run():
        with inside():
            ids.append(threading.get_native_id())
            entered.set()
            finish.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert entered.wait(10)
        yield ids[0]
    finally:
        finish.set()
        thread.join(10)
