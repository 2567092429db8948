"""A managed program at run time, and the process protocol of its runs we spawned."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from rpm.errors import BadArgument
from rpm.rows import RESTARTING, Row
from rpm.server.managed.records import ManagedRecord
from rpm.server.managed.written import WriterDone
from rpm.server.procs.identity import boot_ticks, start_time, start_time_at

log = Logger()
BACKOFF_FIRST = 1.0


@dataclass(eq=False)
class Managed:
    """A managed program at run time: its record plus what only this server holds."""

    record: ManagedRecord
    transport: object | None = None  # our child's process transport, while it runs
    exit_watch: object | None = None  # pidfd watch or poll of an adopted process
    restart_call: object | None = None  # the pending restart (getTime() says when)
    blocked: str | None = None  # why its last restart could not happen
    stop_requested: bool = False
    spawning: bool = False
    writer: WriterDone | None = None  # when this run's log writer is done, if it has one
    finishing: WriterDone | None = None  # the last run's writer, until that run is finished
    backoff: float = BACKOFF_FIRST

    @property
    def running(self) -> bool:
        return self.record.pid is not None and not self.record.ended

    @property
    def adopted(self) -> bool:
        return self.running and self.transport is None

    @property
    def restarting(self) -> bool:
        """Between runs: ended, with a restart scheduled."""
        return self.restart_call is not None


class Child(ProcessProtocol):
    """Tells the supervisor when our child exists and when it ended."""

    def __init__(self, supervisor, managed: Managed):
        self._supervisor, self._managed = supervisor, managed

    def connectionMade(self) -> None:
        self._supervisor._spawned(self._managed, self.transport)

    def processEnded(self, reason) -> None:
        value = reason.value
        self._supervisor.run_ended(
            self._managed,
            getattr(value, "exitCode", None),
            getattr(value, "signal", None),
            known=True,
        )


def child_start_time(pid: int) -> float:
    """The start time of our child (not reaped yet, so it is there to read)."""
    started = start_time(pid)
    return time.time() if started is None else started


def timed_spawn(spawn: Callable[[], int]) -> tuple[int, float]:
    """spawn() and the child's start time: the clock tick it started in, where the boot
    clock read just before and just after the spawn shows the same tick (all but about one
    spawn in fifty: a spawn takes a fraction of a tick), else read from /proc. Reading
    /proc/<pid>/stat of a child that is still starting costs 0.02 to 0.17 ms."""
    before = boot_ticks()
    pid = spawn()
    after = boot_ticks()
    if before is not None and before == after:
        return pid, start_time_at(before)
    return pid, child_start_time(pid)


def restarting_row(managed: Managed, restart_at: float | None) -> Row:
    """The LIST row of a program between runs: its last pid, status restarting."""
    record = managed.record
    return Row(
        record.pid,
        os.getpid(),
        None,
        os.path.basename(record.argv[0]),
        tuple(record.argv),
        RESTARTING,
        0.0,
        0,
        record.started or 0.0,
        True,
        restart_at=restart_at,
        program=record.name,
    )


SESSION_WAIT = 2.0  # seconds a new run may take to lead its own session, at most


def own_session(reactor, pid: int) -> Deferred:
    """Fires once a new run leads its own session and process group (setsid has run), so
    that a signal to the server's group, sent the moment START answered, cannot reach it:
    at once for a posix_spawned run, after a moment for a forked one (see session.py)."""

    async def wait() -> None:
        deadline = reactor.seconds() + SESSION_WAIT
        while reactor.seconds() < deadline:
            try:
                if os.getpgid(pid) == pid:
                    return
            except OSError:  # gone already (or never ours): nothing to wait for
                return
            await task.deferLater(reactor, 0.001, lambda: None)

    return Deferred.fromCoroutine(wait())


def kill_run(managed: Managed, cgroups, failure) -> None:
    """SIGKILL a run we spawned (our child: it cannot have been reaped and its pid reused
    yet) whose pid the registry could not take (failure): its process, group and cgroup."""
    pid = managed.record.pid
    log.warn(
        "killed pid {pid} ({argv}): its run could not be recorded: {error}",
        pid=pid,
        argv=managed.record.argv,
        error=failure.getErrorMessage(),
    )
    if cgroups is not None:
        cgroups.kill(managed.record.id)
    if managed.transport is None:
        return
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:  # setsid has run: its group may hold more
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError, ProcessExitedAlready):
        managed.transport.signalProcess("KILL")


class Names:
    """The names of programs that have not ended for good (running, starting, or waiting to
    restart): one program per name, so a name always means one current run."""

    def __init__(self) -> None:
        self._by_name: dict[str, Managed] = {}

    def claim(self, managed: Managed) -> None:
        """Give the program its record's name; BadArgument if another program holds it."""
        name = managed.record.name
        holder = self._by_name.get(name) if name is not None else None
        if holder is not None and holder is not managed:
            raise BadArgument(f"name {name!r} is taken by pid {holder.record.pid}")
        if name is not None:
            self._by_name[name] = managed

    def release(self, managed: Managed) -> None:
        """The program ended for good: its name is free again."""
        if self._by_name.get(managed.record.name) is managed:
            del self._by_name[managed.record.name]

    def get(self, name: str) -> Managed | None:
        return self._by_name.get(name)

    def of_runs(self) -> dict[tuple[int, float], str]:
        """(pid, start time) -> name, for the named programs running now."""
        return {
            (m.record.pid, m.record.started): name for name, m in self._by_name.items() if m.running
        }
