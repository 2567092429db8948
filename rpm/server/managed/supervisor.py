"""Managed processes: start, exit status, restart policies, adoption after a server restart.

Each program started by START gets a registry record (its id names its log files), written
before anything runs, and one run per (re)start, whose pid is committed before START answers.
Twisted reaps our children; processes adopted from a previous server are watched through
their pidfd (or polled) instead, and their exit status is unknown.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from rpm.clock import wall_time
from rpm.errors import LimitReached, RPMError
from rpm.rows import Row
from rpm.server.managed.asyncstore import AsyncStore
from rpm.server.managed.cgroups import ProgramCgroups
from rpm.server.managed.launch import Launcher
from rpm.server.managed.outputs import OutputTracker
from rpm.server.managed.program import (
    BACKOFF_FIRST,
    Child,
    Managed,
    Names,
    child_start_time,
    kill_run,
    restarting_row,
)
from rpm.server.managed.records import ManagedRecord
from rpm.server.managed.restoring import Restoring
from rpm.server.managed.starting import Starting
from rpm.server.managed.written import WriterDone
from rpm.server.procs.identity import same_start
from rpm.server.procs.reaper import Unadopted

log = Logger()
BACKOFF_CAP, STABLE_UPTIME = 60.0, 60.0
KEEP_ENDED = 1000


class Supervisor(Restoring, Starting):
    """Owns every managed program; tells observers when one starts or exits."""

    def __init__(
        self,
        reactor,
        store: AsyncStore,
        launcher: Launcher,
        outputs: OutputTracker,
        max_managed: int = 1000,
        cgroups: ProgramCgroups | None = None,
        spawn_in_store: bool = False,
    ):
        self._reactor = reactor
        self._spawn_in_store = spawn_in_store  # STARTs whole in the registry's thread
        self.cgroups = cgroups  # each program in a cgroup of its own, where allowed
        self._store = store
        self._launcher = launcher
        self._outputs = outputs
        self.max_managed = max_managed
        self._by_id: dict[int, Managed] = {}
        self._by_pid: dict[int, Managed] = {}
        self._live: set[Managed] = set()  # running now
        self._finished: deque[Managed] = deque()  # ended for good, oldest first
        self._restarting: set[Managed] = set()  # between runs, a restart scheduled
        self._starting: set[Managed] = set()  # STARTs whose record is being written
        self.names = Names()
        self._observers: list[Callable[[str, ManagedRecord], None]] = []
        self._exit_listeners: dict[int, list[Callable[[], None]]] = {}
        self._next_id = self._next_run_id = 1
        self.unadopted = Unadopted()  # spawned in the registry's thread, not Twisted's yet

    # -- queries ---------------------------------------------------------------------------

    def observe(self, observer: Callable[[str, ManagedRecord], None]) -> None:
        """observer(event, record) for "started" and "exited"."""
        self._observers.append(observer)

    def running(self) -> list[Managed]:
        return list(self._live)

    def records(self) -> list[ManagedRecord]:
        """Every program the server holds in memory, with its latest run."""
        return [managed.record for managed in self._by_id.values()]

    def other_runs(self, managed: Managed) -> set[int]:
        """The pids of every other program's running run."""
        return {m.record.pid for m in self._live if m is not managed}

    def managed_keys(self) -> frozenset[tuple[int, float]]:
        return frozenset((m.record.pid, m.record.started) for m in self._live)

    def is_managed(self, pid: int, started: float) -> bool:
        managed = self._by_pid.get(pid)
        return (
            managed is not None and managed.running and same_start(managed.record.started, started)
        )

    def by_pid(self, pid: int) -> Managed | None:
        """The program whose current or last run had this pid, if still in memory."""
        return self._by_pid.get(pid)

    def program_for_pid(self, pid: int) -> Managed | None:
        """The program that any of its runs had this pid (the one START returned included),
        while it has not ended for good: running, or waiting to restart."""
        managed = self._by_pid.get(pid)
        if managed is None or not (managed.running or managed.restarting):
            return None
        return managed

    def restart_epoch(self, managed: Managed) -> float | None:
        """When a program waiting to restart will, in epoch seconds."""
        if managed.restart_call is None:
            return None
        return wall_time(self._reactor) + managed.restart_call.getTime() - self._reactor.seconds()

    def restarting_rows(self) -> list[Row]:
        """A row for each program waiting to restart, so LIST shows it (status restarting)."""
        return [
            restarting_row(managed, self.restart_epoch(managed))
            for managed in self._restarting
            if managed.record.pid is not None
        ]

    def record_for_pid(self, pid: int) -> Deferred:
        """Like by_pid, but falls back to the registry for runs long forgotten in memory."""
        managed = self._by_pid.get(pid)
        if managed is not None:
            return succeed(managed.record)
        return self._store.record_for_pid(pid)

    def marker_of(self, record: ManagedRecord) -> str:
        """The RPM_RUN value in the environment of every process of this program."""
        return self._launcher.marker(record)

    def when_exited(self, pid: int, listener: Callable[[], None]) -> None:
        """Call listener as soon as the managed run with this pid ends."""
        self._exit_listeners.setdefault(pid, []).append(listener)

    # -- start -----------------------------------------------------------------------------

    def _check_capacity(self) -> None:
        busy = len(self._live) + len(self._restarting) + len(self._starting)
        if busy >= self.max_managed:
            raise LimitReached(
                f"{len(self._live) + len(self._starting)} managed processes are running and "
                f"{len(self._restarting)} waiting to restart: the server's --max-managed is "
                f"{self.max_managed}; stop some first"
            )

    def rerun(self, managed: Managed) -> Deferred:
        """RESTART, once the program stopped: a new run of the same program (its command,
        directory, environment, policy and name), durable as START's, once the last run is
        finished (its output written); fires with the record."""
        waiting = managed.finishing.finished() if managed.finishing else succeed(None)
        return waiting.addCallback(lambda _: self._rerun_now(managed))

    def _rerun_now(self, managed: Managed) -> Deferred:
        self._check_capacity()
        record = managed.record
        executable = self._launcher.prepare(record)
        self.names.claim(managed)
        managed.stop_requested, managed.backoff = False, BACKOFF_FIRST
        record.policy_ended, record.restarts = False, record.restarts + 1
        self._store.reopen_policy(record.id)
        self._spawn(managed, executable)
        recorded = self._record_run(managed)
        self._emit("restarted", record)
        return recorded

    def _spawn(self, managed: Managed, executable: str) -> None:
        """Start a run; the record changes only once the process exists (see _spawned)."""
        record = managed.record
        fds, handed = self._launcher.outputs(
            self._outputs.logfiles, record, self._outputs.max_bytes // 2
        )
        born_inside = (
            self.cgroups.born_inside(record.id)
            if self.cgroups is not None and self.cgroups.prepare(record.id)
            else contextlib.nullcontext()
        )
        managed.writer = WriterDone(self._reactor, handed) if handed is not None else None
        managed.spawning = True
        try:
            with born_inside:
                self._launcher.spawn(record, executable, Child(self, managed), fds)
        except RPMError:
            if managed.writer is not None:
                managed.writer.finish()
            raise
        finally:
            managed.spawning = False
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _spawned(self, managed: Managed, transport) -> None:
        """The process exists (Twisted calls this before it could report its end)."""
        managed.transport = transport
        self._new_run(managed, transport.pid, child_start_time(transport.pid))
        self._live.add(managed)

    def _new_run(
        self,
        managed: Managed,
        pid: int,
        started: float,
        run_id: int | None = None,
        spawned_at: float | None = None,
    ) -> None:
        """The run is this pid's; numbered and timed now, unless the registry's thread did
        both (starting.py)."""
        record = managed.record
        if run_id is None:
            run_id, self._next_run_id = self._next_run_id, self._next_run_id + 1
        record.run_id, record.pid, record.started = run_id, pid, started
        record.spawned_at = wall_time(self._reactor) if spawned_at is None else spawned_at
        record.ended_at = record.exit_code = record.exit_signal = None
        record.exit_known = False
        self._by_pid[pid] = managed

    def _announce_run(self, managed: Managed) -> None:
        """After a spawn: tell observers, and finish a run that already ended meanwhile."""
        self._outputs.track(managed.record.id, new=managed.record.restarts == 0)
        self._emit("started", managed.record)
        if managed.record.ended:
            self._once_output_written(managed)

    def _once_output_written(self, managed: Managed) -> None:
        """Finish a run once its log writer wrote all it had (or at most a few seconds
        later), so followers get its last lines before its `exited` event."""
        writer, managed.writer = managed.writer, None
        managed.finishing = writer
        if writer is None:
            self._finish_run(managed)
        else:
            writer.then(lambda: self._finish_run(managed))

    # -- exit and restart ------------------------------------------------------------------

    def run_ended(
        self, managed: Managed, code: int | None, signum: int | None, known: bool
    ) -> None:
        """A run ended, with its exit status if known: record it, then restart or forget."""
        record = managed.record
        record.ended_at = wall_time(self._reactor)
        record.exit_code, record.exit_signal, record.exit_known = code, signum, known
        managed.transport = None
        self._live.discard(managed)
        if managed.exit_watch is not None:
            managed.exit_watch.cancel()
            managed.exit_watch = None
        if managed.stop_requested:  # STOP answers once it is gone: its name is free by then
            self.names.release(managed)
        for listener in self._exit_listeners.pop(record.pid, []):
            listener()
        if not managed.spawning:
            self._once_output_written(managed)

    def _finish_run(self, managed: Managed) -> None:
        self._outputs.release(managed.record.id)
        if self.cgroups is not None:  # kept while anything of the program still runs
            self.cgroups.remove(managed.record.id)
        self._store.end_run(managed.record)
        self._emit("exited", managed.record)
        self._schedule_restart(managed)
        if managed.restart_call is None:
            self.names.release(managed)
            self._forget_old_ended(managed)

    def _schedule_restart(self, managed: Managed) -> None:
        record = managed.record
        if managed.stop_requested or record.policy_ended or record.restart == "no":
            return
        if record.restart == "on-failure" and record.exit_known and record.exit_code == 0:
            return
        if record.ended_at - (record.spawned_at or record.ended_at) >= STABLE_UPTIME:
            managed.backoff = BACKOFF_FIRST
        delay, managed.backoff = managed.backoff, min(managed.backoff * 2, BACKOFF_CAP)
        managed.restart_call = self._reactor.callLater(delay, self._restart, managed)
        self._restarting.add(managed)

    def _forget_restart(self, managed: Managed) -> None:
        """No restart is pending for this program any more (cancelled, or due now)."""
        if managed.restart_call is not None and managed.restart_call.active():
            managed.restart_call.cancel()
        managed.restart_call = None
        self._restarting.discard(managed)

    def _restart(self, managed: Managed) -> None:
        self._forget_restart(managed)
        record = managed.record
        if len(self._live) >= self.max_managed:  # more were adopted than the limit allows
            managed.blocked = f"--max-managed {self.max_managed} reached"
            log.warn("restart of {argv} waits: {why}", argv=record.argv, why=managed.blocked)
            self._schedule_restart(managed)
            return
        managed.blocked = None
        try:
            self._spawn(managed, self._launcher.prepare(record))
        except RPMError as err:
            managed.blocked = err.message
            log.warn("cannot restart {argv}: {err}", argv=record.argv, err=err.message)
            record.ended_at = wall_time(self._reactor)
            self._schedule_restart(managed)
            return
        record.restarts += 1
        self._store.add_run(record).addErrback(
            self._kill_unrecorded_restart, managed, record.run_id
        )
        self._announce_run(managed)

    def _kill_unrecorded_restart(self, failure: Failure, managed: Managed, run_id: int) -> None:
        """As for a START, a restart whose pid is not recorded does not run; the policy tries
        again later (with its backoff)."""
        if managed.running and managed.record.run_id == run_id:
            kill_run(managed, self.cgroups, failure)

    def end_policy(self, managed: Managed) -> None:
        """STOP ends the restart policy: nothing restarts the program after it."""
        managed.stop_requested = True
        self._forget_restart(managed)
        if not managed.running:
            self.names.release(managed)
        if not managed.record.policy_ended:
            managed.record.policy_ended = True
            self._store.end_policy(managed.record.id)

    def _forget_old_ended(self, managed: Managed) -> None:
        """Keep the last KEEP_ENDED finished programs in memory; older ones are answered from
        the registry."""
        self._finished.append(managed)
        while len(self._finished) > KEEP_ENDED:
            old = self._finished.popleft()
            if old.running or old.restart_call is not None:
                continue  # restarted since
            self._by_id.pop(old.record.id, None)
            if self._by_pid.get(old.record.pid) is old:
                del self._by_pid[old.record.pid]

    def _emit(self, event: str, record: ManagedRecord) -> None:
        for observer in self._observers:
            try:
                observer(event, record)
            except Exception:
                log.failure("observer of {event} failed", event=event)

    def cancel_restarts(self) -> None:
        """Cancel every pending restart (the server is stopping); policies are kept, so the
        next server restarts those programs."""
        for managed in list(self._restarting):
            self._forget_restart(managed)
