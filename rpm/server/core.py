"""The parts every connection shares, built once per server by the service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rpm.server.auth import AuthThrottle
from rpm.server.config import ServerConfig
from rpm.server.control import Controller
from rpm.server.managed.logfiles import LogFiles
from rpm.server.managed.outputs import OutputTracker
from rpm.server.managed.records import AuditRecord, ManagedRecord
from rpm.server.managed.store import AsyncStore
from rpm.server.managed.supervisor import Supervisor
from rpm.server.procs.sampler import Sampler
from rpm.server.tablefeed import lifecycle_event

log = Logger()
AUDIT_DELAY = 0.02


@dataclass
class Core:
    """Shared state and services; connections hold only their own session."""

    reactor: object
    config: ServerConfig
    token: str | None
    store: AsyncStore
    logfiles: LogFiles
    outputs: OutputTracker
    sampler: Sampler
    supervisor: Supervisor
    controller: Controller
    throttle: AuthThrottle = field(default_factory=AuthThrottle)
    watching: set = field(default_factory=set)
    in_thread: Callable[..., Deferred] = threads.deferToThread  # blocking reads go here
    _audits: list[AuditRecord] = field(default_factory=list)
    _audit_call: object = None

    def audit(self, session, command: str, result: str) -> None:
        """Record a mutating command in the store and the log (never a token). Written a
        moment later, in batches: a reply goes out only when its reactor turn ends, and this
        work would delay it."""
        self._audits.append(
            AuditRecord(
                self.reactor.seconds(), session.peer, session.authenticated, command, result
            )
        )
        if self._audit_call is None:
            self._audit_call = self.reactor.callLater(AUDIT_DELAY, self.flush_audit)

    def flush_audit(self) -> None:
        """Log and store the pending audit records now."""
        if self._audit_call is not None and self._audit_call.active():
            self._audit_call.cancel()
        self._audit_call = None
        records, self._audits = self._audits, []
        for record in records:
            log.info(
                "{peer} {auth} {command} -> {result}",
                peer=record.peer,
                auth="auth" if record.authenticated else "anon",
                command=record.command,
                result=record.result,
            )
        if records:
            self.store.add_audits(records).addErrback(
                lambda failure: log.failure("cannot write the audit records", failure)
            )

    def broadcast(self, event: str, record: ManagedRecord) -> None:
        """Send a lifecycle event to every watching connection."""
        self.sampler.invalidate()
        message = lifecycle_event(event, record)
        for connection in list(self.watching):
            connection.send_lifecycle(message)
