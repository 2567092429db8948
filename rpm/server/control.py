"""STOP, SIGNAL, PAUSE and RESUME: who gets the signal, and when a stop is finished.

A managed program is stopped as its whole process group (it leads one), plus every process
of its run that left the group: descendants in the table, and processes whose environment
carries the run's RPM_RUN marker (a daemon that double-forked and called setsid); a STOP
succeeds only once none of them runs. Anything else is the one process, after the policy's
checks, through a pid-reuse-safe delivery. Two STOPs of the same pid share one outcome.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import NamedTuple

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.python.failure import Failure

from rpm.errors import NoSuchProcess, NotManaged, NotPermitted
from rpm.rows import Row
from rpm.server import faults
from rpm.server.managed.program import Managed
from rpm.server.managed.supervisor import Supervisor
from rpm.server.procs.identity import (
    PidfdExitWatch,
    alive_with_start,
    descendants,
    process_gone,
    processes_of_run,
    same_start,
    stopped_or_gone,
)
from rpm.server.procs.policy import SignalPolicy
from rpm.server.procs.sampler import Sampler
from rpm.server.procs.signalling import group_alive, send_to_group, send_to_process
from rpm.server.procs.stopping import KILL_TIMEOUT, POLL, Escalation

RESTART_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when RESTART stops a program
STOP_SETTLE = 1.0  # how long PAUSE waits for SIGSTOP to take effect before freezing


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


class _ManagedTarget:
    """A managed program's processes as one thing to stop: its cgroup where it has one, its
    process group, signalled as a whole, and each process of the run that left the group (a
    descendant in the latest table, or one whose environment carries the run's marker),
    signalled one by one. It is gone when the program has ended and none of them runs."""

    def __init__(self, managed: Managed, cgroups, descendants: list[Row], run: dict[int, float]):
        self._managed = managed
        self._id = managed.record.id
        self._cgroups = cgroups if cgroups is not None and cgroups.exists(self._id) else None
        self.pid, self.started = managed.record.pid, managed.record.started
        self._group = _leads_group(self.pid)
        others = {row.pid: row.started for row in descendants}
        others.update(run)
        others.pop(self.pid, None)
        self._escaped = {pid: started for pid, started in others.items() if not self._in_group(pid)}
        contained = set(self._cgroups.pids(self._id)) if self._cgroups is not None else set()
        self.count = len({self.pid, *others, *contained})  # every process of its run

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
        for pid, started in self._escaped.items():
            with contextlib.suppress(NoSuchProcess):
                send_to_process(pid, started, signum)
        if self._cgroups is not None:
            _signal_cgroup(self._cgroups, self._id, signum)

    def gone(self, killed: bool) -> bool:
        if self._managed.running and self._managed.record.pid == self.pid:
            return False
        if self._group and group_alive(self.pid):
            return False
        if self._cgroups is not None and self._cgroups.populated(self._id):
            return False
        return all(process_gone(pid, started) for pid, started in self._escaped.items())


def _signal_cgroup(cgroups, managed_id: int, signum: int) -> None:
    """Every process in a program's cgroup: SIGKILL all at once, other signals one by one."""
    if signum == signal.SIGKILL:
        cgroups.kill(managed_id)
    else:
        cgroups.signal_each(managed_id, signum)


class Stopped(NamedTuple):
    """How a STOP ended: the signal that did it (None: the program was waiting to restart,
    and its restart is cancelled), and how many processes it stopped."""

    signum: int | None
    processes: int


class _Shared:
    """One STOP's outcome, for every client that asked for the same stop."""

    def __init__(self, outcome: Deferred):
        self.finished = False
        self._result = None
        self._waiting: list[Deferred] = []
        outcome.addBoth(self._done)

    def _done(self, result) -> None:
        self.finished, self._result = True, result
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            self._deliver(waiter)

    def _deliver(self, waiter: Deferred) -> None:
        if isinstance(self._result, Failure):
            waiter.errback(self._result)
        else:
            waiter.callback(self._result)

    def result(self) -> Deferred:
        waiter = Deferred()
        if self.finished:
            self._deliver(waiter)
        else:
            self._waiting.append(waiter)
        return waiter


class Controller:
    """Carries out signal commands for every client, within the policy."""

    def __init__(
        self,
        reactor,
        supervisor: Supervisor,
        policy: SignalPolicy,
        sampler: Sampler,
        in_thread: Callable[..., Deferred] = faults.in_thread,
    ):
        self._reactor = reactor
        self._in_thread = in_thread
        self._supervisor = supervisor
        self._policy = policy
        self._sampler = sampler
        self._stops: dict[int, _Shared] = {}

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

    def stop(self, pid: int, grace: float, seen_started: float | None = None) -> Deferred:
        """SIGTERM, then SIGKILL after grace; fires with Stopped once everything is gone."""
        managed = self._program(pid, seen_started)
        key = managed.record.pid if managed is not None else pid
        running = self._stops.get(key)
        if running is not None and not running.finished:
            return running.result()
        self._sampler.invalidate()
        if managed is not None:
            self._supervisor.end_policy(managed)
            if not managed.running:
                return succeed(Stopped(None, 0))
            outcome = Deferred.fromCoroutine(self._stop_program(managed, grace))
        else:
            outcome = self._stop_process(pid, grace, seen_started)
        shared = self._stops[key] = _Shared(outcome)
        return shared.result().addBoth(self._stop_finished, key, shared)

    async def restart(self, pid: int, seen_started: float | None = None, reason=None):
        """RESTART: stop a managed program as STOP does, then run it again (its policy and
        name back in force); fires with its record, the new run's pid in it. The reason
        (a memory restart's) goes to watchers with the `restarted` event."""
        managed = self._program(pid, seen_started)
        if managed is None:
            raise NotManaged(f"pid {pid} is not a program this server started; RESTART needs one")
        await self.stop(pid, managed.record.settings.get("stop_grace", RESTART_GRACE), seen_started)
        managed.record.restart_reason = reason
        return await self._supervisor.rerun(managed)

    async def _stop_program(self, managed: Managed, grace: float) -> Stopped:
        """The whole program: its group, what left it, and whatever it forked meanwhile."""
        pid, marker = managed.record.pid, self._supervisor.marker_of(managed.record)
        group = pid if _leads_group(pid) else None
        adopted = managed.adopted  # before it stops: an ended run is adopted no more
        table, candidates = await self._where_its_processes_can_be(managed, adopted)
        run = await self._in_thread(lambda: processes_of_run(candidates(), group, marker))
        below = table.descendants_of(pid) if table is not None else []
        target = _ManagedTarget(managed, self._supervisor.cgroups, below, run)
        first = managed.record.settings.get("stop_signal", signal.SIGTERM)
        escalation = Escalation(self._reactor, pid, target.send, target.gone, grace, first=first)
        self._supervisor.when_exited(pid, escalation.poke)
        ended = escalation.result()
        escalation.start()
        signum = await ended
        _, candidates = await self._where_its_processes_can_be(managed, adopted)
        swept = await self._sweep(pid, managed.record.id, marker, candidates)
        return Stopped(signum, target.count + swept)

    async def _where_its_processes_can_be(self, managed: Managed, adopted: bool):
        """(the table used, a function listing candidate pids, called in a worker thread).
        Below the server: its children, and what they orphan to it as subreaper. For a
        program adopted from an earlier server, whose orphans went elsewhere, also every
        process started since the program was, from a fresh table (a scan, so only then).
        Never another program's run or what runs below it, which carry their own RPM_RUN:
        with a thousand programs, a STOP would read a thousand environments."""
        table = await self._sampler.fresh() if adopted else self._sampler.latest
        others = self._supervisor.other_runs(managed)
        since = managed.record.started - 0.01
        young = [
            row.pid
            for row in (table.rows if table is not None else [])
            if row.started >= since and not table.within(row, others)
        ]
        return table, lambda: [*young, *descendants(os.getpid(), skip=others)]

    async def _sweep(self, pid: int, managed_id: int, marker: str, candidates) -> int:
        """Processes of the run still there once it stopped (forked while it was stopping)
        get SIGKILL; if any survives that, the STOP fails and names them."""
        cgroups = self._supervisor.cgroups
        contained = cgroups is not None and cgroups.populated(managed_id)
        if contained:
            cgroups.kill(managed_id)
        left = await self._in_thread(lambda: processes_of_run(candidates(), None, marker))
        left.pop(pid, None)
        for other, started in left.items():
            with contextlib.suppress(NoSuchProcess):
                send_to_process(other, started, signal.SIGKILL)

        def still_running() -> list[int]:
            running = {p for p, started in left.items() if not process_gone(p, started)}
            if contained:
                running.update(cgroups.pids(managed_id))
            return sorted(running)

        deadline = self._reactor.seconds() + KILL_TIMEOUT
        while running := still_running():
            if self._reactor.seconds() > deadline:
                raise NotPermitted(f"pid {pid} stopped, but its processes {running} still run")
            await task.deferLater(self._reactor, POLL, lambda: None)
        return len(left)

    def _stop_process(self, pid: int, grace: float, seen_started: float | None) -> Deferred:
        started = self._policy.check(pid, seen_started)
        escalation = Escalation(
            self._reactor,
            pid,
            lambda signum: send_to_process(pid, started, signum),
            lambda _killed: process_gone(pid, started),
            grace,
        )
        watch = PidfdExitWatch.maybe(self._reactor, pid, escalation.poke)
        ended = escalation.result()
        if watch is not None:
            ended.addBoth(lambda outcome: (watch.cancel(), outcome)[1])
        escalation.start()
        return ended.addCallback(lambda signum: Stopped(signum, 1))

    def _stop_finished(self, outcome, pid: int, shared: _Shared):
        """However the stop ended (SIGTERM, SIGKILL, an error), tables taken while it ran are
        out of date: the next LIST waits for a scan that no longer shows the process."""
        self._sampler.invalidate()
        if self._stops.get(pid) is shared:
            del self._stops[pid]
        return outcome

    def signal(self, pid: int, signum: int, seen_started: float | None = None) -> None:
        """Send one signal to one process."""
        managed = self._running_program(pid, seen_started)
        if managed is not None:
            send_to_process(managed.record.pid, managed.record.started, signum)
        else:
            send_to_process(pid, self._policy.check(pid, seen_started), signum)

    def pause(self, pid: int, seen_started: float | None = None) -> Deferred:
        """SIGSTOP: a managed program as its group, and its cgroup frozen too where it has
        one (so what left the group pauses as well); anything else alone. Fires once done."""
        managed = self._running_program(pid, seen_started)
        if managed is None:
            self.signal(pid, signal.SIGSTOP, seen_started)
            return succeed(None)
        self._signal_group(managed, signal.SIGSTOP)
        cgroups = self._supervisor.cgroups
        if cgroups is None or not cgroups.exists(managed.record.id):
            return succeed(None)
        return Deferred.fromCoroutine(self._freeze_once_stopped(managed))

    async def _freeze_once_stopped(self, managed: Managed) -> None:
        """A process acts on SIGSTOP only when it runs next; frozen before that, it would
        stay frozen but not stopped (listed as sleeping, not paused). So wait, briefly,
        until it shows as stopped, then freeze its cgroup."""
        deadline = self._reactor.seconds() + STOP_SETTLE
        while not stopped_or_gone(managed.record.pid) and self._reactor.seconds() < deadline:
            await task.deferLater(self._reactor, POLL / 10, lambda: None)
        self._supervisor.cgroups.freeze(managed.record.id, True)

    def resume(self, pid: int, seen_started: float | None = None) -> None:
        """SIGCONT, to a managed program's group after thawing its cgroup."""
        managed = self._running_program(pid, seen_started)
        if managed is None:
            self.signal(pid, signal.SIGCONT, seen_started)
            return
        cgroups = self._supervisor.cgroups
        if cgroups is not None and cgroups.exists(managed.record.id):
            cgroups.freeze(managed.record.id, False)  # thawed first, so SIGCONT arrives
        self._signal_group(managed, signal.SIGCONT)

    @staticmethod
    def _signal_group(managed: Managed, signum: int) -> None:
        if _leads_group(managed.record.pid):
            send_to_group(managed.record.pid, signum)
        else:
            send_to_process(managed.record.pid, managed.record.started, signum)

    def stop_all(self, grace: float):
        """Stop every managed process (for --stop-children-on-exit)."""
        pids = [m.record.pid for m in self._supervisor.running()]
        return DeferredList([self.stop(pid, grace) for pid in pids], consumeErrors=True)
