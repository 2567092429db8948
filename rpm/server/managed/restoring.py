"""The part of the supervisor that takes over a registry at start (called by adoption.py):
programs known again by id, pid and name, runs adopted, policies resumed, STARTs that never
ran marked failed."""

from __future__ import annotations

from twisted.logger import Logger

from rpm.server.managed.program import Managed
from rpm.server.managed.records import ManagedRecord

log = Logger()


class Restoring:
    """Mixed into Supervisor, whose state (_by_id, _by_pid, _live, names, ...) it fills."""

    def set_next_ids(self, next_id: int, next_run_id: int) -> None:
        """Go on numbering programs and runs after those in the registry."""
        self._next_id, self._next_run_id = next_id, next_run_id

    def restore(self, record: ManagedRecord) -> Managed:
        """Know a program from the registry again, by its id and its latest pid."""
        managed = Managed(record)
        self._by_id[record.id] = managed
        if record.pid is not None:
            self._by_pid[record.pid] = managed
        self.names.claim(managed)
        return managed

    def adopt(self, managed: Managed, exit_watch) -> None:
        """A restored program whose run is still going: manage it again; `exit_watch` tells
        run_ended when it ends."""
        managed.exit_watch = exit_watch
        self._live.add(managed)
        self._outputs.track(managed.record.id)
        log.info(
            "adopted managed process {pid} ({argv})",
            pid=managed.record.pid,
            argv=managed.record.argv,
        )

    def adopt_run(self, managed: Managed, pid: int, started: float) -> None:
        """A restored program has a run the registry has no pid for (found by its marker):
        record it as the program's run, before adopting it."""
        if managed.record.run_id is not None:
            managed.record.restarts += 1
        self._new_run(managed, pid, started)
        self._store.add_run(managed.record)
        log.warn(
            "found pid {pid} ({argv}), started but not recorded", pid=pid, argv=managed.record.argv
        )

    def resume_policy(self, managed: Managed) -> None:
        """A restored program that ended while no server ran and should restart: restart it."""
        self._schedule_restart(managed)

    def never_ran(self, managed: Managed) -> None:
        """A START whose program could not be spawned (or whose server died before it ran):
        its record says it failed."""
        managed.record.policy_ended = True
        self._by_id.pop(managed.record.id, None)
        self.names.release(managed)
        failed = self._store.end_policy(managed.record.id)
        failed.addErrback(lambda f: log.warn("cannot record a failed START: {f}", f=f.value))
