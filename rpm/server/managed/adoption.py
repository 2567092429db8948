"""A server starting on an existing state directory takes over its registry: programs whose
run is still going are adopted (the same pid with the same start time, so a reused pid is
never taken for one), runs that ended while no server ran are closed with their exit status
where the kernel still has it, and restart policies carry on.

An adopted process is not our child: its end is noticed through its pidfd, or by polling
where pidfds are missing, and its exit status only while it is a zombie not yet reaped.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from rpm.server.managed.records import ManagedRecord
from rpm.server.procs.identity import (
    PidfdExitWatch,
    alive_with_start,
    find_runs,
    process_gone,
    zombie_exit_status,
)

log = Logger()
POLL_SECONDS = 0.5


def take_over(
    reactor,
    supervisor,
    records: list[ManagedRecord],
    next_id: int,
    next_run_id: int,
    find=find_runs,
):
    """Give the supervisor the registry's unfinished programs: adopt, close or restart each.
    A program with no pid committed (a START cut short) or due to restart (a restart cut
    short) may have a run going all the same: it is found by its RPM_RUN marker and adopted,
    never started twice; a START with nothing running is marked failed."""
    supervisor.set_next_ids(next_id, next_run_id)
    unsure = [record for record in records if record.run_id is None or record.ended]
    found = find({supervisor.marker_of(record) for record in unsure}) if unsure else {}
    for record in records:
        managed = supervisor.restore(record)
        survivor = found.get(supervisor.marker_of(record)) if record in unsure else None
        if survivor is not None:
            supervisor.adopt_run(managed, *survivor)
            supervisor.adopt(managed, _exit_watch(reactor, supervisor, managed))
        elif record.run_id is None:
            log.warn("the START of {argv} was cut short before it ran", argv=record.argv)
            supervisor.never_ran(managed)
        elif not record.ended and alive_with_start(record.pid, record.started):
            supervisor.adopt(managed, _exit_watch(reactor, supervisor, managed))
        elif not record.ended:
            _close_run(supervisor, managed)
        elif record.restart != "no" and not record.policy_ended:
            supervisor.resume_policy(managed)


def _exit_watch(reactor, supervisor, managed):
    """Tell the supervisor when an adopted run ends: through its pidfd, else by polling."""
    pid, started = managed.record.pid, managed.record.started

    def ended() -> None:
        if managed.running:
            _close_run(supervisor, managed)

    watch = PidfdExitWatch.maybe(reactor, pid, ended)
    return watch or _Poll(reactor, lambda: process_gone(pid, started), ended)


def _close_run(supervisor, managed) -> None:
    """A run we are not the parent of ended: its status is known only while it is a zombie
    its parent has not reaped yet."""
    record = managed.record
    status = None
    if record.pid is not None and record.started is not None:
        status = zombie_exit_status(record.pid, record.started)
    code, signum = status or (None, None)
    supervisor.run_ended(managed, code, signum, known=status is not None)


class _Poll:
    """A fallback exit watch for systems without pidfds: ask `gone` every half second."""

    def __init__(self, reactor, gone: Callable[[], bool], on_exit: Callable[[], None]):
        self._gone, self._on_exit = gone, on_exit
        self._loop = LoopingCall(self._check)
        self._loop.clock = reactor
        self._loop.start(POLL_SECONDS, now=False)

    def _check(self) -> None:
        if self._gone():
            self.cancel()
            self._on_exit()

    def cancel(self) -> None:
        if self._loop.running:
            self._loop.stop()
