"""STOP, SIGNAL, PAUSE and RESUME: who gets the signal, and when a stop is finished.

A managed process is addressed as its whole process group (it leads one), plus any of its
descendants that left the group; anything else goes to the one process, after the policy's
checks, through a pid-reuse-safe delivery. Two STOPs of the same pid share one escalation.
"""

from __future__ import annotations

import contextlib
import os
import signal

from twisted.internet.defer import DeferredList

from rpm.errors import NoSuchProcess
from rpm.policy import SignalPolicy, same_start
from rpm.rows import Row
from rpm.sampler import Sampler
from rpm.signalling import (
    ExitWatch,
    group_alive,
    process_gone,
    send_to_group,
    send_to_process,
)
from rpm.stopping import Escalation
from rpm.supervisor import Managed, Supervisor


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

    def _managed_target(self, pid: int, seen_started: float | None) -> Managed | None:
        """The running managed process with this pid, or None if it is not one of ours."""
        managed = self._supervisor.by_pid(pid)
        if managed is None or managed.record.pid != pid:
            return None
        if not managed.running:
            if managed.restart_call is not None:
                self._supervisor.end_policy(managed)
                raise NoSuchProcess(
                    f"pid {pid} has already exited; its pending restart is cancelled"
                )
            return None
        if seen_started is not None and not same_start(seen_started, managed.record.started):
            raise NoSuchProcess(
                f"pid {pid} now names another process than the one you listed "
                "(the pid was reused); LIST again"
            )
        return managed

    def stop(self, pid: int, grace: float, seen_started: float | None = None):
        """SIGTERM, then SIGKILL after grace; fires with the signal that ended the process."""
        running = self._stops.get(pid)
        if running is not None and not running.finished:
            return running.result()
        managed = self._managed_target(pid, seen_started)
        if managed is not None:
            self._supervisor.end_policy(managed)
            target = _ManagedTarget(managed, self._descendants(pid))
            escalation = Escalation(self._reactor, pid, target.send, target.gone, grace)
            self._supervisor.when_exited(pid, escalation.poke)
        else:
            started = self._policy.check(pid, seen_started)
            escalation = Escalation(
                self._reactor,
                pid,
                lambda signum: send_to_process(pid, started, signum),
                lambda _killed: process_gone(pid, started),
                grace,
            )
            watch = ExitWatch.maybe(self._reactor, pid, escalation.poke)
            if watch is not None:
                escalation.result().addBoth(lambda _: watch.cancel())
        self._stops[pid] = escalation
        result = escalation.result()
        escalation.start()
        result.addBoth(self._forget_stop, pid, escalation)
        self._sampler.invalidate()
        return result

    def _forget_stop(self, outcome, pid: int, escalation: Escalation):
        if self._stops.get(pid) is escalation:
            del self._stops[pid]
        return outcome

    def _descendants(self, pid: int) -> list[Row]:
        """Everything below pid in the latest table (at most max_age old)."""
        snapshot = self._sampler.latest
        return snapshot.descendants_of(pid) if snapshot is not None else []

    def signal(self, pid: int, signum: int, seen_started: float | None = None) -> None:
        """Send one signal to one process."""
        managed = self._managed_target(pid, seen_started)
        if managed is not None:
            send_to_process(pid, managed.record.started, signum)
        else:
            send_to_process(pid, self._policy.check(pid, seen_started), signum)

    def pause(self, pid: int, seen_started: float | None = None) -> None:
        self._group_signal(pid, signal.SIGSTOP, seen_started)

    def resume(self, pid: int, seen_started: float | None = None) -> None:
        self._group_signal(pid, signal.SIGCONT, seen_started)

    def _group_signal(self, pid: int, signum: int, seen_started: float | None) -> None:
        managed = self._managed_target(pid, seen_started)
        if managed is not None and _leads_group(pid):
            send_to_group(pid, signum)
        else:
            self.signal(pid, signum, seen_started)

    def stop_all(self, grace: float):
        """Stop every managed process (for --stop-children-on-exit)."""
        pids = [m.record.pid for m in self._supervisor.running()]
        return DeferredList([self.stop(pid, grace) for pid in pids], consumeErrors=True)
