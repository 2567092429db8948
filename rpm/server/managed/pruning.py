"""Bounded state: what ended long ago is forgotten. The newest --keep-ended programs that
ended for good keep their records and log files; older ones lose both. Audit records go
after --audit-keep-days, or beyond AUDIT_ROWS. Pruning runs at start and a moment after
programs end (at most once a PRUNE_DELAY), in the store's thread and a worker thread."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rpm.clock import wall_time
from rpm.server.managed.asyncstore import AsyncStore
from rpm.server.managed.logfiles import LogFiles
from rpm.server.managed.records import ManagedRecord

log = Logger()
PRUNE_DELAY = 1.0
AUDIT_ROWS = 100_000
DAY = 86_400.0


class Pruner:
    """Forgets ended programs beyond keep_ended, and old audit records."""

    def __init__(
        self,
        reactor,
        store: AsyncStore,
        logfiles: LogFiles,
        keep_ended: int,
        audit_days: float,
        in_thread: Callable[..., Deferred] = threads.deferToThread,
    ):
        self._reactor, self._store, self._logfiles = reactor, store, logfiles
        self.keep_ended, self.audit_days = keep_ended, audit_days
        self._in_thread = in_thread
        self._call = None

    def observe(self, event: str, record: ManagedRecord) -> None:
        """A supervisor observer: prune a moment after programs exit."""
        if event == "exited" and (self._call is None or not self._call.active()):
            self._call = self._reactor.callLater(PRUNE_DELAY, self.prune)

    def prune(self) -> Deferred:
        self._call = None
        cutoff = wall_time(self._reactor) - self.audit_days * DAY
        pruned = self._store.prune(self.keep_ended, cutoff, AUDIT_ROWS)
        pruned.addCallback(self._remove_logs)
        pruned.addErrback(lambda failure: log.failure("cannot prune the registry", failure))
        return pruned

    def _remove_logs(self, managed_ids: list[int]) -> Deferred | None:
        if not managed_ids:
            return None
        log.info("forgot {n} programs that ended long ago", n=len(managed_ids))
        return self._in_thread(self._logfiles.remove, managed_ids)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
