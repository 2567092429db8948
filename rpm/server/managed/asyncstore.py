"""The registry seen from the reactor: every Store call runs in one dedicated thread, and
writes asked for in the same reactor turn share one transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from rpm.server.managed.records import AuditRecord, ManagedRecord
from rpm.server.managed.store import Store, is_damage


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
        self._batch: list[tuple[Callable, tuple, Deferred]] = []
        self._flush_call = None

    def start(self) -> None:
        self._pool.start()

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

    def _write(self, method, *args) -> Deferred:
        """A Deferred firing with method(*args) once the transaction it joins is committed."""
        done = Deferred()
        self._batch.append((method, args, done))
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)
        return done

    def _flush(self) -> None:
        """Send the writes waiting in this turn to the store's thread as one transaction."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        batch, self._batch = self._batch, []
        if not batch:
            return
        operations = [(method, args) for method, args, _ in batch]
        written = deferToThreadPool(self._reactor, self._pool, self.sync.write, operations)
        written.addErrback(self._note_damage)

        def settle(results: list) -> None:
            for (_, _, done), result in zip(batch, results, strict=True):
                done.callback(result)

        def fail(failure: Failure) -> None:
            for _, _, done in batch:
                done.errback(failure)

        written.addCallbacks(settle, fail)

    # Each write takes a copy of the record: the caller goes on changing its own.

    def add_program(self, record: ManagedRecord):
        return self._write(self.sync.add_program, dataclasses.replace(record))

    def add_run(self, record: ManagedRecord):
        return self._write(self.sync.add_run, dataclasses.replace(record))

    def end_run(self, record: ManagedRecord):
        return self._write(self.sync.end_run, dataclasses.replace(record))

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
