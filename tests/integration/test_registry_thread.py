"""The registry's thread: writes of one reactor turn share a transaction, a read waits for
the writes asked for before it, and a START runs there whole (intent, spawn, pid)."""

from __future__ import annotations

import os
import sqlite3

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from rpm.errors import SpawnFailed
from rpm.server.managed.asyncstore import SOON, AsyncStore
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


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture
def registry(tmp_path):
    """A registry thread over a real store, with each transaction's size noted."""
    store = Store(str(tmp_path / "rpm.db"))
    store.transactions = []
    write = store.write
    store.write = lambda operations: store.transactions.append(len(operations)) or write(operations)
    registry = AsyncStore(reactor, store)
    registry.start()
    yield registry
    registry.stop()


def program(managed_id: int) -> ManagedRecord:
    return ManagedRecord(managed_id, ("true",), None, {}, "no", 1.0, run_id=managed_id)


@pytest_twisted.ensureDeferred
async def test_starts_of_one_turn_share_their_intent_and_their_pid_transactions(registry):
    """Each START's record is committed before its spawn runs, and its pid after; a START
    whose spawn fails is refused, and the others still run and are recorded."""
    spawned = []

    def spawn(pid):
        def run():
            committed = {r.id for r in registry.sync.records(only_unfinished=True)}
            spawned.append((pid, sorted(committed)))
            if pid == 102:
                raise SpawnFailed("cannot start 'true': no")
            return pid, 1000.0 + pid, 2000.0

        return run

    starts = [registry.start_program(program(n), spawn(100 + n)) for n in (1, 2, 3)]
    outcomes = await defer.gatherResults(starts).addTimeout(10, reactor)
    assert spawned == [(101, [1, 2, 3]), (102, [1, 2, 3]), (103, [1, 2, 3])]
    assert registry.sync.transactions == [3, 2], "three intents, then the two pids"
    assert [(o.pid, o.started, o.unrecorded) for o in outcomes] == [
        (101, 1101.0, None), (None, None, None), (103, 1103.0, None)
    ]  # fmt: skip
    assert isinstance(outcomes[1].refused, SpawnFailed)
    pids = {r.id: r.pid for r in registry.sync.records()}
    assert pids == {1: 101, 2: None, 3: 103}


@pytest_twisted.ensureDeferred
async def test_a_start_whose_intent_cannot_be_committed_spawns_nothing(registry):
    registry.sync.write = lambda operations: (_ for _ in ()).throw(
        sqlite3.OperationalError("database is locked")
    )
    spawned = []
    started = registry.start_program(program(1), lambda: spawned.append(1) or (1, 1.0, 1.0))
    with pytest.raises(sqlite3.OperationalError):
        await started.addTimeout(10, reactor)
    assert spawned == []


@pytest_twisted.ensureDeferred
async def test_a_start_whose_pid_cannot_be_committed_says_so(registry):
    """The run exists, so the caller must kill it: it learns why its pid is not recorded."""
    write = registry.sync.write

    def intents_only(operations):
        if operations and operations[0][0] == registry.sync.add_run:
            raise sqlite3.OperationalError("database or disk is full")
        return write(operations)

    registry.sync.write = intents_only
    started = registry.start_program(program(1), lambda: (4242, 1.0, 2.0))
    run = await started.addTimeout(10, reactor)
    assert run.pid == 4242 and "disk is full" in str(run.unrecorded)


@pytest_twisted.ensureDeferred
async def test_the_registry_thread_sets_the_childrens_umask_without_changing_the_servers(
    registry,
):
    """A spawn there gives its child the children's umask: the thread's own, so the rest of
    the server (which creates files for its user only) keeps its umask meanwhile."""
    ours = current_umask()
    seen = []

    def spawn():
        os.umask(0o002 if ours != 0o002 else 0o027)
        seen.append(current_umask())
        return 1, 1.0, 1.0

    await registry.start_program(program(1), spawn).addTimeout(10, reactor)
    assert registry.umask, "unshare(CLONE_FS) gave the thread a umask of its own"
    assert seen != [ours] and current_umask() == ours


@pytest_twisted.ensureDeferred
async def test_the_server_leaves_the_programs_cgroups_before_the_pids_are_committed(registry):
    """after_spawns (the server out of the last program's cgroup, its lock released) comes
    before the commit of the pids: a registry slow to write never holds that lock."""
    order = []
    registry.after_spawns = lambda: order.append("left")
    write = registry.sync.write
    registry.sync.write = lambda operations: order.append("commit") or write(operations)
    starts = [registry.start_program(program(n), lambda n=n: (n, 1.0, 1.0)) for n in (1, 2)]
    await defer.gatherResults(starts).addTimeout(10, reactor)
    assert order == ["commit", "left", "commit"]


@pytest_twisted.ensureDeferred
async def test_a_runs_end_shares_the_next_writes_transaction_or_goes_soon_alone(registry):
    """No reply waits for a run's end: it rides with the write that comes next within
    SOON (a START's, as often as not), else it is committed alone once SOON is up."""
    await registry.add_program(program(1)).addTimeout(10, reactor)
    ended = registry.end_run(program(1))
    await deferLater(reactor, SOON / 5, lambda: None)
    assert not ended.called, "it waits for the next write"
    await registry.add_program(program(2)).addTimeout(10, reactor)
    assert ended.called and registry.sync.transactions == [1, 2]
    began = reactor.seconds()
    await registry.end_run(program(2)).addTimeout(10, reactor)
    assert registry.sync.transactions == [1, 2, 1] and reactor.seconds() - began >= SOON
