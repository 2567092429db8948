"""A START run whole in the registry's thread (starting.py), with a stand-in registry that
does the thread's part at once: real children, a fake reactor, no cgroups."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
from types import SimpleNamespace

import pytest
from twisted.internet import defer, process
from twisted.python.failure import Failure

from rpm.commands import Start
from rpm.errors import LimitReached, SpawnFailed
from rpm.server.managed import program, session
from rpm.server.managed.asyncstore import Spawned
from rpm.server.managed.cgroups import ProgramCgroups
from rpm.server.managed.launch import Launcher
from rpm.server.managed.logfiles import LogFiles
from rpm.server.managed.outputs import OutputTracker
from rpm.server.managed.supervisor import Supervisor
from rpm.server.procs.identity import read_stat, same_start, start_time
from tests.support import wait_until
from tests.unit.test_supervisor import FakeProcessReactor, FakeStore


def ended(pid: int) -> bool:
    """Whether our child has exited (a zombie, waiting to be reaped)."""
    stat = read_stat(pid)
    return stat is None or stat[1][0] == b"Z"


class InlineStore(FakeStore):
    """The registry, its thread's part of a START done at once: the spawn, then the pid's
    commit, failing if asked, and the answer (once the run has exited, if asked)."""

    def __init__(self):
        super().__init__()
        self.umask = True  # its thread's umask is its own
        self.intent_refused: Exception | None = None
        self.unrecorded: Exception | None = None
        self.wait_for_exit = True
        self.after_spawns = lambda: None
        self.meanwhile = lambda: None  # what happens between the spawn and the answer
        self.started = []  # each child's start time, read before Twisted reaps it

    def start_program(self, record, spawn):
        self.calls.append(("start_program", record))
        if self.intent_refused is not None:
            return defer.fail(self.intent_refused)
        try:
            run = Spawned(*spawn())
        except Exception as err:
            return defer.succeed(Spawned(refused=err))
        finally:
            self.after_spawns()
        self.started.append(start_time(run.pid))
        if self.wait_for_exit:
            wait_until(lambda: ended(run.pid), timeout=10)
        self.meanwhile()
        run.unrecorded = self.unrecorded
        return defer.succeed(run)


RIGS = []  # closed after each test


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


def make_rig(tmp_path, spawn_in_store=True, umask=None, cgroups=None):
    reactor = FakeProcessReactor()
    reactor.advance(1234.0)
    store = InlineStore()
    watcher = OutputTracker(reactor, LogFiles(str(tmp_path / "logs")), max_bytes=1024 * 1024)
    launcher = Launcher(reactor, environ={"PATH": os.environ["PATH"]}, umask=umask)
    supervisor = Supervisor(
        reactor, store, launcher, watcher, cgroups=cgroups, spawn_in_store=spawn_in_store
    )
    events = []
    supervisor.observe(lambda event, record: events.append((event, record.exit_code)))
    RIGS.append((reactor, launcher))
    return SimpleNamespace(reactor=reactor, store=store, supervisor=supervisor, events=events)


@pytest.fixture(autouse=True)
def tidy():
    """No child left to Twisted's global reaper, no log writer channel left open."""
    yield
    process.reapAllProcesses()
    while RIGS:
        reactor, launcher = RIGS.pop()
        launcher.close_writer_channel()
        for channel in reactor.shared_writers:
            channel.close()


def started(rig, command):
    out = []
    rig.supervisor.start(command).addBoth(out.append)
    return out[0]


def test_the_run_is_taken_over_by_twisted_and_its_end_recorded(rig):
    rig.store.meanwhile = lambda: rig.reactor.advance(5)
    record = started(rig, Start(("true",)))
    assert not isinstance(record, Failure)
    [(verb, committed)] = rig.store.calls
    assert verb == "start_program"
    [channel] = rig.reactor.shared_writers  # its output handed to the log writer, capped
    request, pipes, _, _ = socket.recv_fds(channel, 8192, 3)
    assert request.decode().split("\0")[-1] == str(512 * 1024), "half of --log-max-bytes"
    for fd in pipes:
        os.close(fd)
    assert same_start(record.started, rig.store.started[0]), "the child's own start time"
    assert record.spawned_at == record.created == 1234.0, "when it was spawned, not told of"
    assert (committed.id, committed.run_id) == (record.id, record.run_id) == (1, 1)
    with pytest.raises(ChildProcessError):
        os.waitpid(record.pid, os.WNOHANG)  # Twisted reaped it, told of it
    assert record.exit_known and record.exit_code == 0
    assert rig.supervisor.unadopted.pending == {}, "the reaper may reap it now"
    rig.reactor.finish_writers()  # its output written: the run is finished
    assert [call[0] for call in rig.store.calls] == ["start_program", "end_run"]
    assert [event for event, _ in rig.events] == ["started", "exited"]
    started(rig, Start(("true",)))
    assert rig.supervisor.records()[-1].run_id == 2, "runs are numbered on"


def test_a_start_that_cannot_be_spawned_is_refused_and_recorded_as_failed(rig, tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    failure = started(rig, Start((str(script),), name="web"))
    assert failure.check(SpawnFailed)
    assert "its interpreter '/no/such/interpreter' (its #! line) does not exist" in str(
        failure.value
    )
    assert [call[0] for call in rig.store.calls] == ["start_program", "end_policy"]
    assert rig.events == [] and rig.supervisor.running() == []
    assert not isinstance(started(rig, Start(("true",), name="web")), Failure), "name freed"


def test_a_run_whose_pid_cannot_be_committed_is_killed_before_the_answer(rig):
    rig.store.unrecorded = sqlite3.OperationalError("database or disk is full")
    rig.store.wait_for_exit = False
    failure = started(rig, Start(("sleep", "30")))
    assert failure.check(sqlite3.OperationalError)
    [managed] = rig.supervisor.running()
    pid = managed.record.pid
    wait_until(lambda: ended(pid), timeout=10)  # SIGKILLed
    process.reapAllProcesses()
    assert managed.record.exit_signal == 9 and managed.stop_requested
    rig.reactor.finish_writers()
    assert [event for event, _ in rig.events] == ["started", "exited"], "its end is told"


def test_only_runs_posix_spawn_can_start_whole_are_started_in_the_registrys_thread(tmp_path):
    launcher = Launcher(None, environ={"PATH": "/bin"})
    here = SimpleNamespace(cwd=None, settings={})
    assert launcher.spawns_anywhere(here, umask_of_its_own=False)
    assert launcher.spawns_anywhere(SimpleNamespace(cwd=os.getcwd(), settings={}), False)
    elsewhere = SimpleNamespace(cwd=str(tmp_path), settings={})
    assert not launcher.spawns_anywhere(elsewhere, True), "posix_spawn cannot chdir"
    limited = SimpleNamespace(cwd=None, settings={"limits": [("nofile", 64)]})
    assert not launcher.spawns_anywhere(limited, True), "nor set limits"
    masked = Launcher(None, environ={"PATH": "/bin"}, umask=0o022)
    assert masked.spawns_anywhere(here, True)
    assert not masked.spawns_anywhere(here, False), "the umask would be the reactor's too"
    stand_in = Launcher(None, spawn_session=lambda *a, **k: None, environ={"PATH": "/bin"})
    assert not stand_in.spawns_anywhere(here, True)


def test_a_run_taken_over_counts_once_against_max_managed(rig):
    """Taken over, the run is no longer `starting` but running: --max-managed counts it
    once, and refuses the next START."""
    rig.supervisor.max_managed = 1
    rig.store.wait_for_exit = False
    record = started(rig, Start(("sleep", "30")))
    assert record.pid is not None and not rig.supervisor._starting
    with pytest.raises(LimitReached):
        started(rig, Start(("true",)))
    os.kill(record.pid, 9)
    wait_until(lambda: ended(record.pid), timeout=10)
    process.reapAllProcesses()


def test_a_start_whose_intent_cannot_be_committed_runs_nothing_and_keeps_nothing(rig):
    rig.store.intent_refused = sqlite3.OperationalError("database is locked")
    failure = started(rig, Start(("true",), name="web"))
    assert failure.check(sqlite3.OperationalError)
    assert rig.supervisor.records() == [] and not rig.supervisor._starting
    assert rig.reactor.held == [] and rig.reactor.readers == set(), "the writer lets go"
    rig.reactor.finish_writers()
    assert not any(rig.reactor.held), "nothing left for the log writer to wait for"
    rig.store.intent_refused = None
    assert not isinstance(started(rig, Start(("true",), name="web")), Failure), "name freed"


def test_without_the_registrys_thread_or_its_own_umask_the_reactor_thread_spawns(tmp_path):
    """The reactor thread's path: its intent and pid committed around the spawn there."""
    for rig in (
        make_rig(tmp_path / "off", spawn_in_store=False),
        make_rig(tmp_path / "umask", umask=0o022),
    ):
        rig.store.umask = False  # (the second: unshare(CLONE_FS) was refused)
        record = started(rig, Start(("true",)))
        assert [call[0] for call in rig.store.calls][:2] == ["add_program", "add_run"]
        wait_until(lambda record=record: ended(record.pid), timeout=10)
    with_umask = make_rig(tmp_path / "own", umask=0o022)
    started(with_umask, Start(("true",)))
    assert [call[0] for call in with_umask.store.calls] == ["start_program"]


@pytest.mark.parametrize("clone_into", [False, True])
def test_the_child_is_born_in_its_programs_cgroup(tmp_path, clone_into):
    """Where the kernel cannot clone the child straight into the program's cgroup (without
    clone3, or as here, a stand-in cgroupfs, which clone3 refuses), the registry's thread
    visits the cgroup for the spawn, and leaves it once the batch is spawned; a run that
    cannot be spawned has its new cgroup removed."""
    if clone_into and session.into_cgroup is None:
        pytest.skip("rpm was installed without its C part (no C compiler there)")
    (tmp_path / "rpm-test").mkdir()
    cgroups = ProgramCgroups(str(tmp_path / "rpm-test"))
    cgroups.clone_into = clone_into
    rig = make_rig(tmp_path, cgroups=cgroups)
    visits, removed = [], []
    rig.store.after_spawns = cgroups.end_visit
    move = cgroups._move_server
    cgroups._move_server = lambda cgroup: visits.append(os.path.basename(cgroup)) or move(cgroup)
    remove = cgroups.remove
    cgroups.remove = lambda managed_id: removed.append(managed_id) or remove(managed_id)
    started(rig, Start(("true",)))
    assert visits == ["program-1", str(tmp_path.name)], "in for the spawn, then home"
    script = tmp_path / "script"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    assert started(rig, Start((str(script),))).check(SpawnFailed)
    assert removed == [2]


def test_where_no_log_writer_can_start_the_program_writes_its_files_itself(rig, tmp_path):
    def refuse(*args, **kwargs):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    rig.reactor.spawnProcess = refuse  # the log writer's spawn (the program's is ours)
    record = started(rig, Start(("sh", "-c", "echo hello")))
    assert not isinstance(record, Failure)
    managed = rig.supervisor._by_id[record.id]
    assert managed.writer is None and managed.finishing is None, "no writer to wait for"
    assert (tmp_path / "logs" / "1.out").read_text() == "hello\n"


def spawn_true() -> int:
    return os.posix_spawn("/bin/true", ["true"], os.environ)


def test_a_childs_start_time_from_the_boot_clock_is_the_one_proc_gives():
    """Read around the spawn, the boot clock's tick is the child's start time, exactly as
    /proc/<pid>/stat (and so psutil) gives it, without reading /proc."""
    for _ in range(50):
        pid, started = program.timed_spawn(spawn_true)
        try:
            assert started == start_time(pid)
        finally:
            os.waitpid(pid, 0)


def test_where_the_spawn_spans_two_ticks_the_start_time_is_read_from_proc(monkeypatch):
    for clock in (iter([10, 11]), iter([None, None])):
        monkeypatch.setattr(program, "boot_ticks", lambda clock=clock: next(clock))
        pid, started = program.timed_spawn(spawn_true)
        try:
            assert started == start_time(pid)
        finally:
            os.waitpid(pid, 0)
