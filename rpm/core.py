"""The parts every connection shares, built once per server by the service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rpm.auth import AuthThrottle
from rpm.config import ServerConfig
from rpm.control import Controller
from rpm.logfiles import LogFiles
from rpm.logwatch import LogWatcher
from rpm.sampler import Sampler
from rpm.store import AsyncStore, AuditRecord, ManagedRecord
from rpm.supervisor import Supervisor
from rpm.watch import lifecycle_event

log = Logger()


@dataclass
class Core:
    """Shared state and services; connections hold only their own session."""

    reactor: object
    config: ServerConfig
    token: str | None
    store: AsyncStore
    logfiles: LogFiles
    logwatch: LogWatcher
    sampler: Sampler
    supervisor: Supervisor
    controller: Controller
    throttle: AuthThrottle = field(default_factory=AuthThrottle)
    watching: set = field(default_factory=set)
    in_thread: Callable[..., Deferred] = threads.deferToThread  # blocking reads go here

    def audit(self, session, command: str, result: str) -> None:
        """Record a mutating command in the store and the log (never a token)."""
        record = AuditRecord(
            self.reactor.seconds(), session.peer, session.authenticated, command, result
        )
        log.info(
            "{peer} {auth} {command} -> {result}",
            peer=session.peer,
            command=command,
            auth="auth" if session.authenticated else "anon",
            result=result,
        )
        self.store.call("add_audit", record).addErrback(
            lambda failure: log.failure("cannot write the audit record", failure)
        )

    def broadcast(self, event: str, record: ManagedRecord) -> None:
        """Send a lifecycle event to every watching connection."""
        self.sampler.invalidate()
        message = lifecycle_event(event, record)
        for connection in list(self.watching):
            connection.send_lifecycle(message)
