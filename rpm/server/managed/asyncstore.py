"""The registry seen from the reactor: every Store call runs in one dedicated thread, and
writes asked for in the same reactor turn share one transaction. A START can run there
whole: its intent committed, its program spawned, its pid committed, in one trip."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from rpm.server.managed.records import AuditRecord, ManagedRecord
from rpm.server.managed.session import umask_of_this_thread
from rpm.server.managed.store import Store, is_damage

SOON = 0.005  # seconds a write no reply waits for may wait for the next one


@dataclasses.dataclass
class Spawned:
    """What start() did once the intent was committed: the run's pid, its start time (the
    kernel's) and when it was spawned; or why it could not be spawned (`refused`), or why
    its pid could not be committed (`unrecorded`: then it must die)."""

    pid: int | None = None
    started: float | None = None
    spawned_at: float | None = None
    refused: Exception | None = None
    unrecorded: Exception | None = None


def _spawned(spawn: Callable[[], tuple[int, float, float]]) -> Spawned:
    try:
        return Spawned(*spawn())
    except Exception as err:  # SpawnFailed, or whatever else kept the START from running
        return Spawned(refused=err)


class AsyncStore:
    """Runs Store methods in one dedicated thread, so the reactor never waits on the disk.

    Writes asked for in the same reactor turn share one transaction (50 pipelined STARTs
    cost a few commits, not 50), and each write's Deferred fires only once that transaction
    is durable. Everything runs in the order it was asked for: a read first sends the
    writes waiting before it."""

    def __init__(self, reactor, store: Store):
        self.sync = store
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="rpm-store")
        self._batch: list[tuple[Callable | None, tuple, Deferred]] = []  # None: a start
        self._flush_call = None
        self.umask = False  # whether the store's thread has a umask of its own (see start)
        # called in the store's thread once a batch's STARTs are spawned, before their pids
        # are committed: the server leaves the last program's cgroup (and its lock) there
        # (ProgramCgroups.end_visit), so no wait on the disk ever holds it
        self.after_spawns: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Start the store's thread, which first makes its umask its own: a START spawned
        there sets the children's without changing the reactor thread's."""
        self._pool.start()
        self._pool.callInThread(self._own_umask)

    def _own_umask(self) -> None:
        self.umask = umask_of_this_thread()

    def stop(self) -> None:
        self._flush()
        self._pool.stop()
        self.sync.close()

    def _run(self, method, *args):
        """A Deferred firing with method(*args), run in the store's thread."""
        self._flush()
        ran = deferToThreadPool(self._reactor, self._pool, method, *args)
        return ran.addErrback(self._note_damage)

    def _note_damage(self, failure: Failure) -> Failure:
        """A query found the file damaged: the registry's guard rebuilds it at its next
        check (within a second), and until then requests get `storage`."""
        if is_damage(failure.value):
            self.sync.damaged = True
        return failure

    def _write(self, method, *args, soon: bool = False) -> Deferred:
        """A Deferred firing with method(*args) once the transaction it joins is committed:
        the one sent at the end of this reactor turn, or (`soon`: a write no reply waits
        for) the next write's, if one comes within SOON."""
        done = Deferred()
        self._batch.append((method, args, done))
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(SOON if soon else 0, self._flush)
        elif not soon and self._flush_call.getTime() > self._reactor.seconds():
            self._flush_call.reset(0)
        return done

    def _flush(self) -> None:
        """Send the writes waiting in this turn to the store's thread as one transaction,
        with the STARTs among them (see start_program)."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        batch, self._batch = self._batch, []
        if batch:
            self._pool.callInThread(self._run_batch, batch)

    def _run_batch(self, batch: list) -> None:
        """In the store's thread: the batch's writes and STARTs, their results sent to the
        reactor thread."""
        operations = [(method, args) for method, args, _ in batch if method is not None]
        starts = [args for method, args, _ in batch if method is None]
        try:
            results = self._write_and_spawn(operations, starts)
        except BaseException:
            self._reactor.callFromThread(self._fail, batch, Failure())
        else:
            self._reactor.callFromThread(self._settle, batch, results)

    @staticmethod
    def _settle(batch: list, results: tuple[list, list]) -> None:
        writes, starts = iter(results[0]), iter(results[1])
        for method, _, done in batch:
            done.callback(next(writes) if method is not None else next(starts))

    def _fail(self, batch: list, failure: Failure) -> None:
        self._note_damage(failure)
        for _, _, done in batch:
            done.errback(failure)

    def _write_and_spawn(self, operations: list, starts: list) -> tuple[list, list]:
        """In the store's thread: the writes and the STARTs' intents in one transaction (if
        it fails, nothing is spawned), each START's spawn, then their pids in another; the
        writes' results and, for each START, what it spawned or why it could not."""
        intents = [(self.sync.add_program, (record,)) for record, _ in starts]
        results = self.sync.write(operations + intents)[: len(operations)]
        try:
            outcomes = [_spawned(spawn) for _, spawn in starts]
        finally:
            if starts:
                self.after_spawns()
        ran = [
            (record, run)
            for (record, _), run in zip(starts, outcomes, strict=True)
            if not run.refused
        ]
        for record, run in ran:
            record.pid, record.started, record.spawned_at = run.pid, run.started, run.spawned_at
        try:
            if ran:
                self.sync.write([(self.sync.add_run, (record,)) for record, _ in ran])
        except Exception as err:  # the registry's fault (SQLite, the disk): the runs must die
            self.sync.damaged = self.sync.damaged or is_damage(err)
            for _, run in ran:
                run.unrecorded = err
        return results, outcomes

    def start_program(self, record: ManagedRecord, spawn: Callable[[], tuple[int, float, float]]):
        """A START whole, in the store's thread: commit its record (the intent), call spawn()
        for (pid, start time, spawn time), commit the run. Fails if the intent could not be
        committed (nothing ran), else fires with the Spawned, or one that says why it did
        not run; STARTs asked for in the same reactor turn share their two transactions.
        The reactor thread hears of the batch once, when it is done: each wake-up of
        another thread costs as much as a step of the START (see docs/performance.md)."""
        return self._write(None, dataclasses.replace(record), spawn)

    # Each write takes a copy of the record: the caller goes on changing its own.

    def add_program(self, record: ManagedRecord):
        return self._write(self.sync.add_program, dataclasses.replace(record))

    def add_run(self, record: ManagedRecord):
        return self._write(self.sync.add_run, dataclasses.replace(record))

    def end_run(self, record: ManagedRecord):
        """A run's end, with the next write (a START's, as often as not) or within SOON: a
        trip of its own to this thread, amid a START, costs that START a wake-up of each
        thread."""
        return self._write(self.sync.end_run, dataclasses.replace(record), soon=True)

    def end_policy(self, managed_id: int):
        return self._write(self.sync.end_policy, managed_id)

    def reopen_policy(self, managed_id: int):
        return self._write(self.sync.reopen_policy, managed_id)

    def add_audits(self, records: list[AuditRecord]):
        return self._write(self.sync.add_audits, records)

    def record_for_pid(self, pid: int):
        return self._run(self.sync.record_for_pid, pid)

    def history(self, count: int):
        return self._run(self.sync.history, count)

    def prune(self, keep_ended: int, audit_before: float, audit_rows: int):
        return self._run(self.sync.prune, keep_ended, audit_before, audit_rows)

    def needs_rebuild(self):
        """Fires with whether the database file was deleted, replaced or damaged under us."""
        return self._run(self.sync.needs_rebuild)

    def rebuild(self, records: list[ManagedRecord]):
        return self._run(self.sync.rebuild, [dataclasses.replace(r) for r in records])
