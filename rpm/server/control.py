"""STOP, SIGNAL, PAUSE and RESUME: who gets the signal, and when a stop is finished.

A managed process is addressed as its whole process group (it leads one), plus any of its
descendants that left the group; anything else goes to the one process, after the policy's
checks, through a pid-reuse-safe delivery. Two STOPs of the same pid share one escalation.
"""

from __future__ import annotations

import contextlib
import os
import signal

from twisted.internet.defer import DeferredList, succeed

from rpm.errors import NoSuchProcess
from rpm.rows import Row
from rpm.server.managed.supervisor import Managed, Supervisor
from rpm.server.procs.identity import PidfdExitWatch, alive_with_start, process_gone, same_start
from rpm.server.procs.policy import SignalPolicy
from rpm.server.procs.sampler import Sampler
from rpm.server.procs.signalling import group_alive, send_to_group, send_to_process
from rpm.server.procs.stopping import Escalation


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


class _ManagedTarget:
    """A managed process, its process group and its descendants, as one thing to stop.

    The group is signalled as a whole, and descendants that left it (found in the latest
    table) one by one. It is gone when the process has ended and nothing of its group or
    of those descendants still runs.
    """

    def __init__(self, managed: Managed, descendants: list[Row]):
        self._managed = managed
        self.pid, self.started = managed.record.pid, managed.record.started
        self._group = _leads_group(self.pid)
        self._escaped = [row for row in descendants if not self._in_group(row.pid)]

    def _in_group(self, pid: int) -> bool:
        try:
            return self._group and os.getpgid(pid) == self.pid
        except OSError:
            return False

    def send(self, signum: int) -> None:
        with contextlib.suppress(NoSuchProcess):
            if self._group:
                send_to_group(self.pid, signum)
            elif self._managed.running:
                send_to_process(self.pid, self.started, signum)
        for row in self._escaped:
            with contextlib.suppress(NoSuchProcess):
                send_to_process(row.pid, row.started, signum)

    def gone(self, killed: bool) -> bool:
        if self._managed.running and self._managed.record.pid == self.pid:
            return False
        if self._group and group_alive(self.pid):
            return False
        return all(process_gone(row.pid, row.started) for row in self._escaped)


class Controller:
    """Carries out signal commands for every client, within the policy."""

    def __init__(self, reactor, supervisor: Supervisor, policy: SignalPolicy, sampler: Sampler):
        self._reactor = reactor
        self._supervisor = supervisor
        self._policy = policy
        self._sampler = sampler
        self._stops: dict[int, Escalation] = {}

    def program(self, pid: int, seen_started: float | None = None) -> Managed | None:
        """The managed program this pid names: its current run's pid, or any earlier run's
        (the pid START returned keeps naming the program until it ends for good), while it
        runs or waits to restart. None if the pid is not one of ours, or if it is an earlier
        run's pid and the client listed the process that has since reused it."""
        managed = self._supervisor.program_for_pid(pid)
        if managed is None or managed.record.pid == pid:
            return managed
        if seen_started is not None and alive_with_start(pid, seen_started):
            return None
        return managed

    def _program(self, pid: int, seen_started: float | None) -> Managed | None:
        """program(), refusing a current pid that the client listed as another process."""
        managed = self.program(pid, seen_started)
        if (
            managed is not None
            and managed.record.pid == pid
            and seen_started is not None
            and not same_start(seen_started, managed.record.started)
        ):
            raise NoSuchProcess(
                f"pid {pid} now names another process than the one you listed "
                "(the pid was reused); LIST again"
            )
        return managed

    def _running_program(self, pid: int, seen_started: float | None) -> Managed | None:
        """Like _program, for commands that need a running process to act on."""
        managed = self._program(pid, seen_started)
        if managed is not None and not managed.running:
            raise NoSuchProcess(
                f"pid {pid}'s program is waiting to restart, so no process runs to act on; "
                "STOP cancels the restart"
            )
        return managed

    def stop(self, pid: int, grace: float, seen_started: float | None = None):
        """SIGTERM, then SIGKILL after grace; fires with the signal that ended the process,
        or None for a program that was waiting to restart (its restart is cancelled)."""
        managed = self._program(pid, seen_started)
        target_pid = managed.record.pid if managed is not None else pid
        running = self._stops.get(target_pid)
        if running is not None and not running.finished:
            return running.result()
        self._sampler.invalidate()
        if managed is not None:
            self._supervisor.end_policy(managed)
            if not managed.running:
                return succeed(None)
            escalation = self._managed_escalation(managed, grace)
        else:
            escalation = self._process_escalation(pid, grace, seen_started)
        self._stops[target_pid] = escalation
        result = escalation.result()
        escalation.start()
        result.addBoth(self._stop_finished, target_pid, escalation)
        return result

    def _managed_escalation(self, managed: Managed, grace: float) -> Escalation:
        pid = managed.record.pid
        target = _ManagedTarget(managed, self._descendants(pid))
        escalation = Escalation(self._reactor, pid, target.send, target.gone, grace)
        self._supervisor.when_exited(pid, escalation.poke)
        return escalation

    def _process_escalation(self, pid: int, grace: float, seen_started: float | None):
        started = self._policy.check(pid, seen_started)
        escalation = Escalation(
            self._reactor,
            pid,
            lambda signum: send_to_process(pid, started, signum),
            lambda _killed: process_gone(pid, started),
            grace,
        )
        watch = PidfdExitWatch.maybe(self._reactor, pid, escalation.poke)
        if watch is not None:
            escalation.result().addBoth(lambda _: watch.cancel())
        return escalation

    def _stop_finished(self, outcome, pid: int, escalation: Escalation):
        """However the stop ended (SIGTERM, SIGKILL, an error), tables taken while it ran are
        out of date: the next LIST waits for a scan that no longer shows the process."""
        self._sampler.invalidate()
        if self._stops.get(pid) is escalation:
            del self._stops[pid]
        return outcome

    def _descendants(self, pid: int) -> list[Row]:
        """Everything below pid in the latest table (at most max_age old)."""
        snapshot = self._sampler.latest
        return snapshot.descendants_of(pid) if snapshot is not None else []

    def signal(self, pid: int, signum: int, seen_started: float | None = None) -> None:
        """Send one signal to one process."""
        managed = self._running_program(pid, seen_started)
        if managed is not None:
            send_to_process(managed.record.pid, managed.record.started, signum)
        else:
            send_to_process(pid, self._policy.check(pid, seen_started), signum)

    def pause(self, pid: int, seen_started: float | None = None) -> None:
        self._group_signal(pid, signal.SIGSTOP, seen_started)

    def resume(self, pid: int, seen_started: float | None = None) -> None:
        self._group_signal(pid, signal.SIGCONT, seen_started)

    def _group_signal(self, pid: int, signum: int, seen_started: float | None) -> None:
        managed = self._running_program(pid, seen_started)
        if managed is not None and _leads_group(managed.record.pid):
            send_to_group(managed.record.pid, signum)
        elif managed is not None:
            send_to_process(managed.record.pid, managed.record.started, signum)
        else:
            self.signal(pid, signum, seen_started)

    def stop_all(self, grace: float):
        """Stop every managed process (for --stop-children-on-exit)."""
        pids = [m.record.pid for m in self._supervisor.running()]
        return DeferredList([self.stop(pid, grace) for pid in pids], consumeErrors=True)
