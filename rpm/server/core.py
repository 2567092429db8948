"""The parts every connection shares, built once per server by the service."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred

from rpm.server import faults
from rpm.server.auditing import Auditor
from rpm.server.auth import AuthThrottle
from rpm.server.config import ServerConfig
from rpm.server.control import Controller
from rpm.server.managed.asyncstore import AsyncStore
from rpm.server.managed.logfiles import LogFiles
from rpm.server.managed.outputs import OutputTracker
from rpm.server.managed.records import ManagedRecord
from rpm.server.managed.supervisor import Supervisor
from rpm.server.procs.sampler import Sampler
from rpm.server.tablefeed import lifecycle_event

CONTAINMENT_GROUPS = "process groups and RPM_RUN markers"


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
    containment: str = CONTAINMENT_GROUPS  # how STOP finds all of a program's processes
    watching: set = field(default_factory=set)
    in_thread: Callable[..., Deferred] = faults.in_thread  # blocking reads go here
    auditor: Auditor = field(init=False)
    declared: object | None = None  # the programs file in force (declared.py), if any
    requests: Counter = field(default_factory=Counter)  # (verb, ok or error code) -> count

    def __post_init__(self) -> None:
        self.auditor = Auditor(self.reactor, self.store)

    def audit(self, session, command: str, result: str) -> None:
        """Record a mutating command or a failed AUTH (see auditing.py)."""
        self.auditor.record(session, command, result)

    def flush_audit(self) -> None:
        """Write the pending audit records now."""
        self.auditor.flush()

    def broadcast(self, event: str, record: ManagedRecord) -> None:
        """Send a lifecycle event to every watching connection."""
        self.sampler.invalidate()
        message = lifecycle_event(event, record)
        for connection in list(self.watching):
            connection.send_lifecycle(message)
