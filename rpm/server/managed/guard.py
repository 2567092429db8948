"""The registry under foot: once a second the server checks that its database file is the
one it opened, with a database's header. If it was deleted, replaced or overwritten while
the server runs, the server says so
loudly, once, and writes a new one from what it holds in memory, so that the next server
still adopts every program."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from rpm.server.managed.asyncstore import AsyncStore
from rpm.server.managed.records import ManagedRecord

log = Logger()
CHECK_EVERY = 1.0


class RegistryGuard:
    """Checks the registry file every second, and rebuilds it if it is gone."""

    def __init__(self, reactor, store: AsyncStore, records: Callable[[], list[ManagedRecord]]):
        self._store, self._records = store, records
        self._checking = False
        self._loop = LoopingCall(self.check)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(CHECK_EVERY, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def check(self) -> None:
        if self._checking:
            return
        self._checking = True
        checked = self._store.replaced()
        checked.addCallback(self._rebuild_if_gone)
        checked.addErrback(lambda failure: log.failure("cannot check the registry", failure))
        checked.addBoth(self._checked)

    def _rebuild_if_gone(self, replaced: bool):
        if not replaced:
            return None
        records = self._records()
        log.critical(
            "the registry {path} was deleted, replaced or overwritten while the server ran; "
            "writing a new "
            "one from the {n} programs the server holds in memory",
            path=self._store.sync.path,
            n=len(records),
        )
        rebuilt = self._store.rebuild(records)
        rebuilt.addCallback(
            lambda _: log.critical("the new registry holds {n} programs", n=len(records))
        )
        return rebuilt

    def _checked(self, _) -> None:
        self._checking = False
