"""What the server remembers of managed programs and of the commands it was given (pure
data, shared by the store, the supervisor and what reports on them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ManagedRecord:
    """A program this server started, and its latest run."""

    id: int
    argv: tuple[str, ...]
    cwd: str | None
    env: dict[str, str]
    restart: str
    created: float
    restarts: int = 0
    policy_ended: bool = False
    run_id: int | None = None
    pid: int | None = None
    started: float | None = None
    spawned_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    exit_known: bool = False
    name: str | None = None  # given with START --name: the program can be addressed by it
    settings: dict = field(default_factory=dict)  # stop_signal, stop_grace, limits (file)
    restart_reason: str | None = field(default=None, compare=False)  # why RESTART ran it

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


@dataclass
class AuditRecord:
    """One mutating command (or failed AUTH): when, from whom, what, and how it ended."""

    time: float
    peer: str
    authenticated: bool
    command: str
    result: str
    id: int | None = field(default=None)
