"""The registry of managed processes and the audit trail, in SQLite in the state directory.

WAL mode with synchronous=NORMAL: a committed transaction survives a crash (even kill -9) of
the server. The schema is versioned with PRAGMA user_version and migrated forward at open.
All access after start-up goes through one dedicated thread (asyncstore.AsyncStore), the
only writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable

from rpm.server.managed.records import AuditRecord, ManagedRecord

MIGRATIONS = (
    """
    CREATE TABLE managed (
        id INTEGER PRIMARY KEY,
        argv TEXT NOT NULL,
        cwd TEXT,
        env TEXT NOT NULL,
        restart TEXT NOT NULL,
        created REAL NOT NULL,
        restarts INTEGER NOT NULL DEFAULT 0,
        policy_ended INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        managed_id INTEGER NOT NULL REFERENCES managed(id),
        pid INTEGER NOT NULL,
        started REAL NOT NULL,
        spawned_at REAL NOT NULL,
        ended_at REAL,
        exit_code INTEGER,
        exit_signal INTEGER,
        exit_known INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_pid ON runs(pid);
    CREATE INDEX runs_by_managed ON runs(managed_id);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        peer TEXT NOT NULL,
        authenticated INTEGER NOT NULL,
        command TEXT NOT NULL,
        result TEXT NOT NULL
    );
    """,
    "ALTER TABLE managed ADD COLUMN name TEXT",
    "ALTER TABLE managed ADD COLUMN settings TEXT",
)


_COLUMNS = """
    m.id, m.argv, m.cwd, m.env, m.restart, m.created, m.restarts, m.policy_ended,
    r.id, r.pid, r.started, r.spawned_at, r.ended_at, r.exit_code, r.exit_signal, r.exit_known,
    m.name, m.settings
"""
_LATEST_RUNS = f"""
    SELECT {_COLUMNS} FROM managed m
    LEFT JOIN runs r ON r.id = (SELECT max(id) FROM runs WHERE managed_id = m.id)
"""
# Programs ended for good, the most recently ended first: their latest run ended and they
# will not restart, or their START failed before anything ran (no run, policy ended).
_ENDED_FOR_GOOD = """
    SELECT m.id FROM managed m
    LEFT JOIN runs r ON r.id = (SELECT max(id) FROM runs WHERE managed_id = m.id)
    WHERE CASE WHEN r.id IS NULL THEN m.policy_ended = 1
          ELSE r.ended_at IS NOT NULL AND (m.restart = 'no' OR m.policy_ended = 1) END
    ORDER BY coalesce(r.ended_at, m.created) DESC
"""
# Programs alive, to restart, or whose START was interrupted before its pid was committed.
_UNFINISHED = """
    WHERE CASE WHEN r.id IS NULL THEN m.policy_ended = 0
          ELSE r.ended_at IS NULL OR (m.restart != 'no' AND m.policy_ended = 0) END
"""
_RUN_BY_PID = f"""
    SELECT {_COLUMNS} FROM runs r JOIN managed m ON m.id = r.managed_id
    WHERE r.pid = ? ORDER BY r.id DESC LIMIT 1
"""


SQLITE_HEADER = b"SQLite format 3\0"  # the first bytes of every SQLite database
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26


def is_damage(err: BaseException) -> bool:
    """Whether SQLite found the database file damaged: a malformed page, or not a database."""
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    return isinstance(err, sqlite3.DatabaseError) and code in (SQLITE_CORRUPT, SQLITE_NOTADB)


def _record(row) -> ManagedRecord:
    return ManagedRecord(
        id=row[0],
        argv=tuple(json.loads(row[1])),
        cwd=row[2],
        env=json.loads(row[3]),
        restart=row[4],
        created=row[5],
        restarts=row[6],
        policy_ended=bool(row[7]),
        run_id=row[8],
        pid=row[9],
        started=row[10],
        spawned_at=row[11],
        ended_at=row[12],
        exit_code=row[13],
        exit_signal=row[14],
        exit_known=bool(row[15]),
        name=row[16],
        settings=json.loads(row[17] or "{}"),
    )


def _open_private(path: str) -> int:
    """Open (creating) the database file readable by its owner only (SQLite gives its -wal
    and -shm files the same mode), tightening one a looser umask made; returns the
    descriptor, which the Store holds as long as its connection (see needs_rebuild)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(descriptor).st_mode & 0o077:
            os.fchmod(descriptor, 0o600)
    except OSError:
        os.close(descriptor)
        raise
    return descriptor


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


class Store:
    """Synchronous access to the database; use it from one thread at a time."""

    def __init__(self, path: str):
        self.path = path
        self._open()

    def _open(self) -> None:
        self._file = _open_private(self.path)
        info = os.fstat(self._file)
        self._identity = (info.st_dev, info.st_ino)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except BaseException:  # a newer schema, a locked or full disk: keep nothing open
            self.close()
            raise
        self.damaged = False  # set by a query that found the file damaged
        self._journal = _identity(self.path + "-wal")  # SQLite keeps it while it is open
        self._stamp_own_writes()

    def _stamp_own_writes(self) -> None:
        """Note the file's time and size after this store wrote to it (a commit may copy
        the journal into it), so that a change by anyone else shows."""
        info = os.fstat(self._file)
        self._stamp = (info.st_mtime_ns, info.st_size)

    def needs_rebuild(self) -> bool:
        """Whether the database file was deleted or replaced since it was opened (writes
        would go on into a file nobody will read again), overwritten in place where SQLite
        keeps its header (the next server could not open it), or damaged: found so by a
        query, or failing SQLite's quick check once someone else wrote to it. Or its journal
        (`-wal`) was removed: this connection would go on committing into a file no one
        else can see, and a crash would lose what it holds.

        The header is read through the descriptor held since the open: SQLite's locks are
        POSIX locks, which a process loses when it closes any descriptor of the file, and
        without them a reader in another process, closing, would take itself for the last
        user and delete the journal this connection still writes to."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return True
        if (info.st_dev, info.st_ino) != self._identity:
            return True
        journal = _identity(self.path + "-wal")
        if self._journal is None:  # not made yet when the store opened: from now on
            self._journal = journal
        elif journal != self._journal:  # commits would go where no one else looks
            return True
        if info.st_size > 0 and os.pread(self._file, len(SQLITE_HEADER), 0) != SQLITE_HEADER:
            return True
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp and not self.damaged:  # written by someone else
            intact = self._quick_check()
            if intact is None:
                return False  # locked by its writer: look again at the next check
            self.damaged, self._stamp = not intact, stamp
        return self.damaged

    def _quick_check(self) -> bool | None:
        """SQLite's quick check of every page (16 ms for 10 MB), read from the file rather
        than from the connection's cache; None if it cannot run now."""
        try:
            self._db.execute("PRAGMA shrink_memory")
            return self._db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        except sqlite3.OperationalError:
            return None
        except sqlite3.DatabaseError as err:
            if is_damage(err):
                return False
            raise

    def rebuild(self, records: list[ManagedRecord]) -> None:
        """A new database at the path, holding these programs (what the server holds in
        memory). A foreign file found there is kept aside, never overwritten."""
        self.close()
        if os.path.exists(self.path):
            os.rename(self.path, f"{self.path}.replaced-{int(time.time())}")
        for journal in ("-wal", "-shm"):  # left by the old file: not this one's
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + journal)
        self._open()
        with self._db:
            self._db.execute("BEGIN")
            for record in records:
                self._insert_program(record)
                if record.run_id is not None:
                    self._insert_run(record)
                    if record.ended:
                        self.end_run(record)
        self._stamp_own_writes()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the state database has schema {version}, newer than this "
                f"rpm understands ({len(MIGRATIONS)}); upgrade rpm"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, script.split(";")):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={number}")
            self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        """Close the connection, then the descriptor that kept its locks (never before)."""
        with contextlib.suppress(sqlite3.Error):
            if hasattr(self, "_db"):  # not if the first open failed before connecting
                self._db.close()
        if self._file >= 0:
            os.close(self._file)
            self._file = -1

    def next_id(self) -> int:
        return (self._db.execute("SELECT max(id) FROM managed").fetchone()[0] or 0) + 1

    def next_run_id(self) -> int:
        return (self._db.execute("SELECT max(id) FROM runs").fetchone()[0] or 0) + 1

    def write(self, operations: list[tuple[Callable, tuple]]) -> list:
        """Run writes (Store methods with their arguments) in one transaction: all of them are
        durable when it returns, or none is and the error is raised. Returns their results."""
        self._db.execute("BEGIN")
        try:
            results = [method(*args) for method, args in operations]
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._stamp_own_writes()
        return results

    # The writes below are meant for write(), which makes a transaction of them.

    def add_program(self, record: ManagedRecord) -> None:
        """A new program, before anything runs: the intent of a START (no run yet)."""
        self._insert_program(record)

    def _insert_program(self, record: ManagedRecord) -> None:
        self._db.execute(
            "INSERT INTO managed "
            "(id, argv, cwd, env, restart, created, restarts, policy_ended, name, settings) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                record.id,
                json.dumps(record.argv),
                record.cwd,
                json.dumps(record.env),
                record.restart,
                record.created,
                record.restarts,
                int(record.policy_ended),
                record.name,
                json.dumps(record.settings),
            ),
        )

    def add_run(self, record: ManagedRecord) -> int:
        """A program's new run (its first, or a restart), with its pid; returns the run id."""
        self._db.execute("UPDATE managed SET restarts=? WHERE id=?", (record.restarts, record.id))
        return self._insert_run(record)

    def _insert_run(self, record: ManagedRecord) -> int:
        self._db.execute(
            "INSERT INTO runs (id, managed_id, pid, started, spawned_at) VALUES (?,?,?,?,?)",
            (record.run_id, record.id, record.pid, record.started, record.spawned_at),
        )
        return record.run_id

    def end_run(self, record: ManagedRecord) -> None:
        self._db.execute(
            "UPDATE runs SET ended_at=?, exit_code=?, exit_signal=?, exit_known=? WHERE id=?",
            (
                record.ended_at,
                record.exit_code,
                record.exit_signal,
                int(record.exit_known),
                record.run_id,
            ),
        )

    def end_policy(self, managed_id: int) -> None:
        """Nothing restarts the program any more (STOP); for a program without a run, its
        START failed before anything ran."""
        self._db.execute("UPDATE managed SET policy_ended=1 WHERE id=?", (managed_id,))

    def reopen_policy(self, managed_id: int) -> None:
        """RESTART: the program's restart policy holds again."""
        self._db.execute("UPDATE managed SET policy_ended=0 WHERE id=?", (managed_id,))

    def add_audits(self, records: list[AuditRecord]) -> None:
        self._db.executemany(
            "INSERT INTO audit (time, peer, authenticated, command, result) VALUES (?,?,?,?,?)",
            [(r.time, r.peer, int(r.authenticated), r.command, r.result) for r in records],
        )

    def records(self, only_unfinished: bool = False) -> list[ManagedRecord]:
        """Programs with their latest run; only_unfinished keeps those alive, to restart, or
        still starting (no run committed)."""
        query = _LATEST_RUNS + (_UNFINISHED if only_unfinished else "")
        return [_record(row) for row in self._db.execute(query + " ORDER BY m.id")]

    def record_for_pid(self, pid: int) -> ManagedRecord | None:
        """The program with the newest run that had this pid, described by that run."""
        row = self._db.execute(_RUN_BY_PID, (pid,)).fetchone()
        return None if row is None else _record(row)

    def history(self, count: int, text_limit: int = 200) -> list[AuditRecord]:
        """The newest `count` records, oldest first, each text cut to text_limit characters
        in the query (rows written by older servers may be long)."""
        rows = self._db.execute(
            "SELECT id, time, substr(peer, 1, ?), authenticated, substr(command, 1, ?), "
            "substr(result, 1, ?) FROM audit ORDER BY id DESC LIMIT ?",
            (text_limit, text_limit, text_limit, count),
        ).fetchall()
        return [AuditRecord(r[1], r[2], bool(r[3]), r[4], r[5], r[0]) for r in reversed(rows)]

    def prune(self, keep_ended: int, audit_before: float, audit_rows: int) -> list[int]:
        """Forget programs ended for good beyond the newest keep_ended (never the newest id,
        so ids are not reused), and audit records older than audit_before or beyond the
        newest audit_rows. Returns the ids of the programs forgotten (their logs go too)."""
        with self._db:
            self._db.execute("BEGIN")
            ended = [row[0] for row in self._db.execute(_ENDED_FOR_GOOD)]
            newest = self._db.execute("SELECT max(id) FROM managed").fetchone()[0]
            gone = [managed_id for managed_id in ended[keep_ended:] if managed_id != newest]
            for start in range(0, len(gone), 500):
                chunk = gone[start : start + 500]
                marks = ",".join("?" * len(chunk))
                self._db.execute(f"DELETE FROM runs WHERE managed_id IN ({marks})", chunk)
                self._db.execute(f"DELETE FROM managed WHERE id IN ({marks})", chunk)
            self._db.execute("DELETE FROM audit WHERE time < ?", (audit_before,))
            self._db.execute(
                "DELETE FROM audit WHERE id <= "
                "(SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (audit_rows,),
            )
        self._stamp_own_writes()
        return gone

    def integrity(self) -> str:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]
