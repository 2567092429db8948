"""Accepting connections: one RPMProtocol each, within the total and per-peer caps, and
while file descriptors are left for the requests of the connections already open."""

from __future__ import annotations

from collections import Counter

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from rpm.server.faults import DESCRIPTORS_KEPT, descriptors_left
from rpm.server.protocol import RPMProtocol
from rpm.server.session import Session, describe_peer, peer_key
from rpm.wire import err_line

log = Logger()


class _Refusal(Protocol):
    """Answers a connection over a limit with ERR limit and closes it."""

    def __init__(self, message: str):
        self._message = message

    def connectionMade(self) -> None:
        self.transport.write(err_line("limit", self._message))
        self.transport.loseConnection()


class RPMFactory(Factory):
    """Builds one RPMProtocol per connection, within the total and per-peer caps."""

    def __init__(self, core):
        self.core = core
        self._per_host: Counter[str] = Counter()
        self._total = 0

    def buildProtocol(self, addr):
        config = self.core.config
        peer, host, local = describe_peer(addr)
        if self._total >= config.max_connections:
            log.warn("refused {peer}: {n} connections open", peer=peer, n=self._total)
            return _Refusal(
                f"the server has {self._total} connections open, its "
                "--max-connections; try again later"
            )
        left = descriptors_left()
        if left is not None and left < DESCRIPTORS_KEPT:
            log.warn("refused {peer}: {n} file descriptors left", peer=peer, n=left)
            return _Refusal(
                "the server is out of file descriptors (too many open files); try again "
                "once some connections close"
            )
        if self._per_host[host] >= config.max_connections_per_peer:
            log.warn("refused {peer}: too many connections from {host}", peer=peer, host=host)
            return _Refusal(
                f"{host} already has {self._per_host[host]} connections, the "
                "server's --max-connections-per-peer; close some first"
            )
        self._total += 1
        self._per_host[host] += 1
        session = Session(peer, host, local, authenticated=self.core.token is None)
        session.throttle_key = peer_key(host, local)
        protocol = RPMProtocol(self.core, session)
        protocol.factory = self
        return protocol

    @property
    def connections(self) -> int:
        return self._total

    def released(self, host: str) -> None:
        self._total -= 1
        self._per_host[host] -= 1
        if self._per_host[host] <= 0:
            del self._per_host[host]
