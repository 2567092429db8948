"""The registry under foot: once a second the server checks that its database file is the
one it opened, with a database's header, and whole (SQLite's quick check, once anyone else
wrote to it, or as soon as a query found a damaged page). If it was deleted, replaced,
overwritten or damaged while the server runs, the server says so loudly, once, and writes a
new one from what it holds in memory, so that the next server still adopts every program."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rpm.server.managed.asyncstore import AsyncStore
from rpm.server.managed.periodic import PeriodicCheck
from rpm.server.managed.records import ManagedRecord

log = Logger()


class RegistryGuard(PeriodicCheck):
    """Checks the registry file every second, and rebuilds it if it is gone."""

    def __init__(self, reactor, store: AsyncStore, records: Callable[[], list[ManagedRecord]]):
        super().__init__(reactor)
        self._store, self._records = store, records

    def check(self) -> Deferred:
        checked = self._store.needs_rebuild()
        checked.addCallback(self._rebuild_if_gone)
        return checked.addErrback(lambda failure: log.failure("cannot check the registry", failure))

    def _rebuild_if_gone(self, lost: bool):
        if not lost:
            return None
        records = self._records()
        log.critical(
            "the registry {path} was deleted, replaced, overwritten or damaged while the "
            "server ran; writing a new one from the {n} programs the server holds in memory",
            path=self._store.sync.path,
            n=len(records),
        )
        rebuilt = self._store.rebuild(records)
        rebuilt.addCallback(
            lambda _: log.critical("the new registry holds {n} programs", n=len(records))
        )
        return rebuilt
