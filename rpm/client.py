"""A Twisted client for the rpm protocol in JSON mode (used by the TUI, tests and benchmarks).

    client = await connect(reactor, parse_address("127.0.0.1:5002"), token=...)
    table = await client.command("LIST")
    client.on_event = print          # table / delta / started / exited / output events
    await client.command("WATCH 1 --delta")

Replies come back in request order; `{"ok": false}` replies raise CommandError.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable

from twisted.internet import defer, endpoints, ssl
from twisted.internet.error import ConnectionDone
from twisted.protocols.basic import LineReceiver

from rpm.addresses import Address

CLIENT_MAX_LINE = 256 * 1024 * 1024  # LIST of a very busy host is one long JSON line


class CommandError(Exception):
    """The server answered a request with `{"ok": false, ...}`."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class ProtocolError(Exception):
    """The peer does not speak rpm (no greeting, or a line that is not JSON)."""


class ClientProtocol(LineReceiver):
    """Sends one request at a time per call, matches replies in order, hands events over."""

    delimiter = b"\n"
    MAX_LENGTH = CLIENT_MAX_LINE

    def __init__(self) -> None:
        self.greeting: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self.on_event: Callable[[dict], None] | None = None
        self._pending: deque[defer.Deferred] = deque()
        self._greeted = False

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not self._greeted:
            self._greeted = True
            text = line.decode("utf-8", "replace")
            if text.startswith("OK rpm "):
                self.greeting.callback(text)
            else:
                self.greeting.errback(ProtocolError(f"not an rpm server: {text[:80]!r}"))
                self.transport.loseConnection()
            return
        try:
            message = json.loads(line)
        except ValueError:
            return  # not JSON: can only precede MODE json taking effect, nothing waits for it
        if "event" in message:
            if self.on_event is not None:
                self.on_event(message)
        elif self._pending:
            waiter = self._pending.popleft()
            if message.get("ok"):
                waiter.callback(message)
            else:
                waiter.errback(CommandError(message.get("error", "?"), message.get("message", "")))

    def request(self, line: str) -> defer.Deferred:
        waiter: defer.Deferred = defer.Deferred()
        self._pending.append(waiter)
        self.sendLine(line.encode("utf-8"))
        return waiter

    @property
    def unwrapped(self) -> ClientProtocol:
        """This protocol itself, even when reached through a wrapper that forwards only
        attribute reads (ClientService's proxy): callbacks must be set on the real one."""
        return self

    def connectionLost(self, reason=ConnectionDone) -> None:
        pending, self._pending = self._pending, deque()
        for waiter in pending:
            waiter.errback(reason)
        if not self.greeting.called:
            self.greeting.errback(reason)
        self.closed.callback(None)


class Client:
    """A connected, JSON-mode session with one server."""

    def __init__(self, protocol: ClientProtocol, address: Address, greeting: str):
        self.protocol = protocol
        self.address = address
        self.greeting = greeting
        self.name = str(address)  # how to show it: a fleet file's name, else its address

    @property
    def on_event(self):
        return self.protocol.on_event

    @on_event.setter
    def on_event(self, callback) -> None:
        self.protocol.on_event = callback

    @property
    def closed(self) -> defer.Deferred:
        return self.protocol.closed

    def command(self, line: str) -> defer.Deferred:
        """Send one request line; fires with the reply object or fails with CommandError."""
        return self.protocol.request(line)

    def close(self) -> None:
        self.protocol.transport.loseConnection()


def client_endpoint(reactor, address: Address, ca_file: str | None = None):
    """The Twisted endpoint for an address; TLS verifies the server against ca_file."""
    if address.unix:
        return endpoints.UNIXClientEndpoint(reactor, address.unix)
    if address.tls:
        if ca_file:
            with open(ca_file, "rb") as handle:
                trust = ssl.Certificate.loadPEM(handle.read())
        else:
            trust = ssl.platformTrust()
        options = ssl.optionsForClientTLS(address.host, trustRoot=trust)
        return endpoints.wrapClientTLS(
            options, endpoints.HostnameEndpoint(reactor, address.host, address.port)
        )
    return endpoints.HostnameEndpoint(reactor, address.host, address.port)


async def handshake(
    reactor, protocol: ClientProtocol, address: Address, token: str | None, timeout: float = 10.0
) -> Client:
    """On a new connection: read the greeting, switch to JSON mode, and authenticate if a
    token is given and the server wants one. The connection is closed if any step fails."""
    try:
        greeting = await protocol.greeting.addTimeout(timeout, reactor)
        client = Client(protocol, address, greeting)
        await client.command("MODE json").addTimeout(timeout, reactor)
        if token and "auth-required" in greeting:
            await client.command(f"AUTH {token}").addTimeout(timeout, reactor)
    except BaseException:
        protocol.transport.loseConnection()
        raise
    return client


async def connect(
    reactor,
    address: Address,
    token: str | None = None,
    ca_file: str | None = None,
    timeout: float = 10.0,
) -> Client:
    """Connect, then handshake (greeting, JSON mode, AUTH)."""
    protocol = ClientProtocol()
    endpoint = client_endpoint(reactor, address, ca_file)
    await endpoints.connectProtocol(endpoint, protocol).addTimeout(timeout, reactor)
    return await handshake(reactor, protocol, address, token, timeout)
