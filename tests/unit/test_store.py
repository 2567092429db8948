"""The SQLite registry: schema versions, records of runs, the audit trail."""

import os
import sqlite3
import subprocess
import sys

import pytest

from rpm.server.faults import fault_error
from rpm.server.managed.records import AuditRecord, ManagedRecord
from rpm.server.managed.store import MIGRATIONS, Store, is_damage


def record(**changes):
    base = ManagedRecord(
        1,
        ("sleep", "5"),
        "/tmp",
        {"A": "1"},
        "on-failure",
        10.0,
        run_id=1,
        pid=500,
        started=11.0,
        spawned_at=10.5,
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_a_new_database_gets_the_current_schema(tmp_path):
    store = Store(str(tmp_path / "db"))
    assert store.schema_version == len(MIGRATIONS)
    assert store.integrity() == "ok"
    assert store.next_id() == 1 and store.next_run_id() == 1


def test_a_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "db")
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()  # (SQLite holds a file's descriptors while any connection to it is open)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(RuntimeError, match="upgrade rpm"):
        Store(path)
    assert len(os.listdir("/proc/self/fd")) == before, "nothing of it left open"


def add(store, program):
    """A program and its first run, as a START commits them (intent, then pid)."""
    store.write([(store.add_program, (program,)), (store.add_run, (program,))])


def test_runs_and_their_end_are_recorded(tmp_path):
    store = Store(str(tmp_path / "db"))
    first = record()
    add(store, first)
    assert [r.pid for r in store.records(only_unfinished=True)] == [500]
    first.ended_at, first.exit_code, first.exit_known = 20.0, 1, True
    store.end_run(first)
    again = record(run_id=2, pid=501, restarts=1, ended_at=None, exit_code=None, exit_known=False)
    store.add_run(again)
    loaded = Store(str(tmp_path / "db")).records()
    assert len(loaded) == 1
    assert (loaded[0].pid, loaded[0].restarts, loaded[0].env) == (501, 1, {"A": "1"})
    old = store.record_for_pid(500)
    assert (old.exit_code, old.exit_known, old.argv) == (1, True, ("sleep", "5"))
    assert store.record_for_pid(12345) is None


def test_unfinished_means_alive_or_waiting_for_a_restart(tmp_path):
    store = Store(str(tmp_path / "db"))
    done = record(id=1, restart="no")
    add(store, done)
    done.ended_at = 5.0
    store.end_run(done)
    policy = record(id=2, run_id=2, pid=600, restart="always")
    add(store, policy)
    policy.ended_at = 6.0
    store.end_run(policy)
    assert [r.id for r in store.records(only_unfinished=True)] == [2]
    store.end_policy(2)
    assert store.records(only_unfinished=True) == []


def test_audit_history_is_newest_last_and_bounded(tmp_path):
    store = Store(str(tmp_path / "db"))
    store.add_audits(
        [AuditRecord(float(n), "127.0.0.1:1", n % 2 == 0, f"STOP {n}", "OK") for n in range(30)]
    )
    history = store.history(5)
    assert [h.command for h in history] == [f"STOP {n}" for n in range(25, 30)]
    assert history[-1].authenticated is False


def test_the_registry_and_its_journal_are_private_whatever_the_umask(tmp_path):
    loose = tmp_path / "loose.db"
    loose.touch(mode=0o644)
    loose.chmod(0o644)
    previous = os.umask(0o022)
    try:
        for path in (tmp_path / "rpm.db", loose):
            store = Store(str(path))
            store.add_audits([])  # a write, so the WAL files exist
            for name in (path.name, path.name + "-wal", path.name + "-shm"):
                assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
            store.close()
    finally:
        os.umask(previous)


def test_prune_keeps_the_newest_ended_programs_and_never_the_newest_id(tmp_path):
    store = Store(str(tmp_path / "db"))
    for number in range(1, 8):
        program = record(id=number, run_id=number, pid=700 + number, restart="no")
        add(store, program)
        program.ended_at = 100.0 - number  # the newest id ended first
        store.end_run(program)
    newest = record(id=8, run_id=8, pid=800, restart="no")
    add(store, newest)
    newest.ended_at = 1.0  # the oldest end of all, but its id must not come back
    store.end_run(newest)
    store.add_audits([AuditRecord(float(t), "p", True, f"STOP {t}", "OK") for t in range(10)])
    forgotten = store.prune(keep_ended=3, audit_before=5.0, audit_rows=3)
    assert sorted(forgotten) == [4, 5, 6, 7]
    assert sorted(r.id for r in store.records()) == [1, 2, 3, 8]
    assert store.next_id() == 9
    assert [h.command for h in store.history(100)] == ["STOP 7", "STOP 8", "STOP 9"]


def test_a_start_without_a_pid_is_unfinished_until_it_is_marked_failed(tmp_path):
    store = Store(str(tmp_path / "db"))
    starting = record(id=1, run_id=None, pid=None, started=None, spawned_at=None)
    store.write([(store.add_program, (starting,))])
    [loaded] = store.records(only_unfinished=True)
    assert (loaded.id, loaded.run_id, loaded.pid) == (1, None, None)
    store.write([(store.end_policy, (1,))])
    assert store.records(only_unfinished=True) == []
    add(store, record(id=2, run_id=1, pid=900))
    assert store.prune(keep_ended=0, audit_before=0.0, audit_rows=10) == [1]


def test_writes_in_one_transaction_land_together_or_not_at_all(tmp_path):
    store = Store(str(tmp_path / "db"))
    add(store, record(id=1))
    duplicate = record(id=1, run_id=9, pid=901)
    with pytest.raises(sqlite3.IntegrityError):
        store.write(
            [(store.add_run, (record(id=1, run_id=2, pid=902),)), (store.add_program, (duplicate,))]
        )
    assert [r.run_id for r in store.records()] == [1], "the first write was rolled back too"
    assert store.write([(store.end_policy, (1,)), (store.add_audits, ([],))]) == [None, None]


def test_checking_the_file_keeps_the_servers_locks_so_no_reader_takes_its_journal(tmp_path):
    """SQLite's locks are POSIX locks, which a process loses when it closes *any* descriptor
    of the file: a check that opened and closed the database let a reader in another
    process, closing, take itself for the last user and delete the server's journal."""
    path = str(tmp_path / "rpm.db")
    store = Store(path)
    store.write([(store.add_program, (record(id=1),))])
    assert not store.needs_rebuild()
    reader = (
        "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
        "db.execute('SELECT 1 FROM managed').fetchall(); db.close()"
    )
    subprocess.run([sys.executable, "-c", reader, path], check=True, timeout=30)
    assert os.path.exists(path + "-wal"), "the server's journal is still there"
    store.write([(store.add_program, (record(id=2),))])
    later = Store(path)
    try:
        assert [r.id for r in later.records()] == [1, 2], "what it wrote after is kept"
    finally:
        later.close()
        store.close()


def damage_past_the_header(path: str) -> None:
    """Overwrite every page but the first in place, as a stray `dd` would."""
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xa5" * (size - 4096))


def checkpoint_from_outside(path: str) -> None:
    """Another connection copies the journal into the file: someone else wrote to it, and
    the store's cached pages are stale."""
    outside = sqlite3.connect(path)
    outside.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    outside.close()


@pytest.fixture
def full_store(tmp_path):
    """A registry holding 40 programs: pages enough past the header to damage."""
    store = Store(str(tmp_path / "rpm.db"))
    for number in range(1, 41):
        add(store, record(id=number, run_id=number, pid=1000 + number))
    yield store
    store.close()


def test_a_registry_written_by_someone_else_is_checked_and_rebuilt_if_damaged(tmp_path, full_store):
    assert not full_store.needs_rebuild(), "its own writes need no check"
    checkpoint_from_outside(full_store.path)
    assert not full_store.needs_rebuild(), "checked, and whole"
    damage_past_the_header(full_store.path)
    assert full_store.needs_rebuild(), "its header is intact, its pages are not"
    full_store.rebuild([record(id=7, run_id=7, pid=1007)])
    assert not full_store.needs_rebuild()
    assert [r.id for r in full_store.records()] == [7]
    assert list(tmp_path.glob("rpm.db.replaced-*")), "the damaged file is kept aside"


def test_a_query_that_meets_a_damaged_page_is_a_storage_fault(full_store):
    checkpoint_from_outside(full_store.path)
    damage_past_the_header(full_store.path)
    with pytest.raises(sqlite3.DatabaseError) as raised:
        full_store.records()
    assert is_damage(raised.value)
    fault = fault_error(raised.value)
    assert fault.code == "storage" and "the registry is damaged" in fault.message


def test_a_removed_journal_needs_a_rebuild(tmp_path):
    path = str(tmp_path / "rpm.db")
    store = Store(path)
    try:
        add(store, record())
        assert not store.needs_rebuild()
        os.unlink(path + "-wal")  # the next commits would go into a file no one else sees
        assert store.needs_rebuild()
    finally:
        store.close()
