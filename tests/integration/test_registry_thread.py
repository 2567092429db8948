"""The registry's thread: writes of one reactor turn share a transaction, and a read waits
for the writes asked for before it."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer, reactor

from rpm.server.managed.asyncstore import AsyncStore
from rpm.server.managed.records import AuditRecord, ManagedRecord
from rpm.server.managed.store import Store


@pytest_twisted.ensureDeferred
async def test_writes_of_one_turn_share_a_transaction_and_a_read_comes_after_them(tmp_path):
    store = Store(str(tmp_path / "rpm.db"))
    transactions = []
    write = store.write
    store.write = lambda operations: transactions.append(len(operations)) or write(operations)
    registry = AsyncStore(reactor, store)
    registry.start()
    try:
        programs = [ManagedRecord(n, ("true",), None, {}, "no", 1.0) for n in range(1, 6)]
        writes = [registry.add_program(program) for program in programs]
        writes.append(registry.add_audits([AuditRecord(1.0, "peer", True, "START true", "OK")]))
        history = registry.history(10)
        together = defer.gatherResults([*writes, history], consumeErrors=True)
        results = await together.addTimeout(10, reactor)
        assert [h.command for h in results[-1]] == ["START true"], "the read saw the writes"
        assert transactions == [6], "six writes, one transaction"
        assert [r.id for r in store.records(only_unfinished=True)] == [1, 2, 3, 4, 5]
    finally:
        registry.stop()
