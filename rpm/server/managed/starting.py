"""How START starts a program, durably or not at all: its record (the intent) committed
before anything runs, its pid committed before the reply (a run whose pid cannot be is
killed at once).

Where posix_spawn does it all (Launcher.spawns_anywhere), the whole START runs in the
registry's thread (AsyncStore.start_program): intent, spawn and pid in one trip there, where
the reactor thread would wait for two trips and spawn in between; the reactor thread then
only hands Twisted the child to reap. Other STARTs (a directory of their own, limits), and
every restart, are spawned by the reactor thread between the two commits.

Two things keep a spawn in another thread safe: the child is cloned straight into its
cgroup (session.spawn_into_cgroup), or else the server steps into the cgroup for it under
ProgramCgroups.lock, which every cgroup.kill, freeze and other spawn takes too; and the
child's take-over waits in reaper.Unadopted until the START is answered (or the child
exits), so nothing else reaps it before Twisted has it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from rpm.clock import wall_time
from rpm.commands import Start
from rpm.errors import RPMError
from rpm.server.managed.asyncstore import Spawned
from rpm.server.managed.program import Child, Managed, kill_run, own_session, timed_spawn
from rpm.server.managed.records import ManagedRecord
from rpm.server.managed.session import IntoCgroupRefused
from rpm.server.managed.written import WriterDone


class SpawnedChild(Child):
    """The protocol of a run spawned in the registry's thread, once Twisted takes it over."""

    def __init__(self, supervisor, managed: Managed, run: Spawned, run_id: int):
        super().__init__(supervisor, managed)
        self._run, self._run_id = run, run_id

    def connectionMade(self) -> None:
        self._supervisor._taken_over(self._managed, self.transport, self._run, self._run_id)


class Starting:
    """Mixed into Supervisor, whose state (_store, _launcher, cgroups, _live, ...) it uses."""

    def start(self, command: Start) -> Deferred:
        """Start a program, durably or not at all: its record is committed before anything
        runs, its pid after the spawn (a run whose pid cannot be committed is killed at
        once). Fires with the record once the registry has the pid."""
        self._check_capacity()
        now = wall_time(self._reactor)
        record = ManagedRecord(
            self._next_id, command.argv, command.cwd, dict(command.env), command.restart, now
        )
        record.name, record.settings = command.name, dict(command.settings)
        executable = self._launcher.prepare(record)  # a START that cannot run writes nothing
        managed = Managed(record)
        self.names.claim(managed)
        self._next_id += 1
        self._by_id[record.id] = managed
        self._starting.add(managed)
        if self._spawn_in_store and self._launcher.spawns_anywhere(record, self._store.umask):
            return self._start_in_store(managed, executable)
        intent = self._store.add_program(record)
        intent.addBoth(self._intent_settled, managed)
        intent.addCallback(lambda _: self._first_run(managed, executable))
        return intent

    def _intent_settled(self, result, managed: Managed):
        """The START's record is written (or could not be: then nothing runs)."""
        self._starting.discard(managed)
        if isinstance(result, Failure):
            self._by_id.pop(managed.record.id, None)
            self.names.release(managed)
        return result

    def _first_run(self, managed: Managed, executable: str) -> Deferred:
        try:
            self._spawn(managed, executable)
        except RPMError:
            self.never_ran(managed)
            raise
        return self._record_run(managed)

    def _record_run(self, managed: Managed) -> Deferred:
        """A new run's pid to the registry (if it cannot be, the run is killed); fires with
        the record once committed and the run leads its own session."""
        committed = self._store.add_run(managed.record)
        self._announce_run(managed)
        committed.addErrback(self._uncommitted, managed)
        committed.addCallback(lambda _: own_session(self._reactor, managed.record.pid))
        return committed.addCallback(lambda _: managed.record)

    def _uncommitted(self, failure: Failure, managed: Managed) -> Failure:
        """The registry did not take a START's pid: kill the run before the client hears of
        the failure, so nothing runs that a restarted server would not know."""
        managed.stop_requested = True
        kill_run(managed, self.cgroups, failure)
        return failure

    def _start_in_store(self, managed: Managed, executable: str) -> Deferred:
        """START's spawn and both its commits in the registry's thread; fires with the record
        once the registry has the pid (see start)."""
        record = managed.record
        fds, handed = self._launcher.outputs(
            self._outputs.logfiles, record, self._outputs.max_bytes // 2
        )
        managed.writer = WriterDone(self._reactor, handed) if handed is not None else None
        run_id, self._next_run_id = self._next_run_id, self._next_run_id + 1
        spawn = self._launcher.spawner(record, executable, fds)
        take_over = functools.partial(self._take_over, managed, run_id)
        done = self._store.start_program(
            dataclasses.replace(record, run_id=run_id),
            self._born_in_cgroup(record.id, spawn, take_over),
        )
        done.addBoth(_closing, fds)
        done.addErrback(self._intent_failed, managed)  # nothing ran
        done.addBoth(self._intent_settled, managed)
        return done.addCallback(self._spawned_in_store, managed)

    def _born_in_cgroup(
        self,
        managed_id: int,
        spawn: Callable[[int | None], int],
        take_over: Callable[[Spawned], None],
    ) -> Callable:
        """spawn, wrapped for the registry's thread: the child born in the program's cgroup
        where it has one (cloned into it, or else with the server visiting it: the server
        goes straight on to the next START's, and leaves once the batch is spawned,
        AsyncStore.after_spawns), kept from the reaper until it is taken over (Unadopted);
        returns (pid, start time, now)."""
        cgroups, unadopted, reactor = self.cgroups, self.unadopted, self._reactor

        def spawn_run() -> tuple[int, float, float]:
            into = cgroups.ready_to_spawn(managed_id) if cgroups is not None else None
            try:
                with unadopted.lock:
                    try:
                        pid, started = timed_spawn(functools.partial(spawn, into))
                    except IntoCgroupRefused as refused:
                        cgroups.clone_refused(managed_id, refused)
                        pid, started = timed_spawn(functools.partial(spawn, None))
                    run = Spawned(pid, started, wall_time(reactor))
                    unadopted.pending[pid] = functools.partial(take_over, run)
            except BaseException:
                if cgroups is not None:
                    cgroups.end_visit()
                    cgroups.remove(managed_id)
                raise
            finally:
                if into is not None:
                    os.close(into)
            return run.pid, run.started, run.spawned_at

        return spawn_run

    def _intent_failed(self, failure: Failure, managed: Managed) -> Failure:
        self._no_run(managed)
        return failure

    @staticmethod
    def _no_run(managed: Managed) -> None:
        """Nothing runs: the log writer handed the run's pipes has nothing to wait for."""
        if managed.writer is not None:
            managed.writer.finish()
            managed.writer = None

    def _take_over(self, managed: Managed, run_id: int, run: Spawned) -> None:
        """The registry's thread spawned the run: hand Twisted the child to reap, and tell
        the observers (Unadopted.adopt: once the START is answered, or at once if the reaper
        finds the child exited before)."""
        self._starting.discard(managed)
        managed.spawning = True
        try:
            self._launcher.take_over(
                managed.record, run.pid, SpawnedChild(self, managed, run, run_id)
            )
        finally:
            managed.spawning = False
        self._announce_run(managed)

    def _spawned_in_store(self, run: Spawned, managed: Managed):
        """The START's answer, once its pid is committed (or could not be: then the run is
        killed first, as for _record_run), the run taken over first. The run leads its own
        session already: posix_spawn returns once the child has exec'd, after its setsid."""
        if run.pid is not None:
            self.unadopted.adopt(run.pid)
        if run.refused is not None:
            self._no_run(managed)
            self.never_ran(managed)
            return Failure(run.refused)
        if run.unrecorded is not None:
            return self._uncommitted(Failure(run.unrecorded), managed)
        return managed.record

    def _taken_over(self, managed: Managed, transport, run: Spawned, run_id: int) -> None:
        """Twisted has the child spawned in the registry's thread (before it could report
        its end)."""
        managed.transport = transport
        self._new_run(managed, run.pid, run.started, run_id, run.spawned_at)
        self._live.add(managed)


def _closing(result, fds: dict[int, int]):
    """The server's copies of the ends the program writes to, closed once it has them."""
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    return result
