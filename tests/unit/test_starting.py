"""A START run whole in the registry's thread (starting.py), with a stand-in registry that
does the thread's part at once: real children, a fake reactor, no cgroups."""

from __future__ import annotations

import os
import sqlite3
from types import SimpleNamespace

import pytest
from twisted.internet import defer, process
from twisted.python.failure import Failure

from rpm.commands import Start
from rpm.errors import SpawnFailed
from rpm.server.managed.asyncstore import Spawned
from rpm.server.managed.launch import Launcher
from rpm.server.managed.logfiles import LogFiles
from rpm.server.managed.outputs import OutputTracker
from rpm.server.managed.supervisor import Supervisor
from rpm.server.procs.identity import read_stat
from tests.support import wait_until
from tests.unit.test_supervisor import FakeProcessReactor, FakeStore


def ended(pid: int) -> bool:
    """Whether our child has exited (a zombie, waiting to be reaped)."""
    stat = read_stat(pid)
    return stat is None or stat[1][0] == b"Z"


class InlineStore(FakeStore):
    """The registry, its thread's part of a START done at once: the spawn, the reactor told
    of the run (once it has exited, if asked), then the pid's commit, failing if asked."""

    def __init__(self):
        super().__init__()
        self.umask = True  # its thread's umask is its own
        self.unrecorded: Exception | None = None
        self.wait_for_exit = True

    def start_program(self, record, spawn, told):
        self.calls.append(("start_program", record))
        try:
            run = Spawned(*spawn())
        except Exception as err:
            return defer.succeed(Spawned(refused=err))
        if self.wait_for_exit:
            wait_until(lambda: ended(run.pid), timeout=10)
        told(run)
        run.unrecorded = self.unrecorded
        return defer.succeed(run)


@pytest.fixture
def rig(tmp_path):
    reactor = FakeProcessReactor()
    store = InlineStore()
    watcher = OutputTracker(reactor, LogFiles(str(tmp_path / "logs")), max_bytes=1024 * 1024)
    launcher = Launcher(reactor, environ={"PATH": os.environ["PATH"]})
    supervisor = Supervisor(reactor, store, launcher, watcher, spawn_in_store=True)
    events = []
    supervisor.observe(lambda event, record: events.append((event, record.exit_code)))
    yield SimpleNamespace(reactor=reactor, store=store, supervisor=supervisor, events=events)
    for channel in reactor.shared_writers:
        channel.close()
    process.reapAllProcesses()  # none of ours is left to Twisted's global reaper


def started(rig, command):
    out = []
    rig.supervisor.start(command).addBoth(out.append)
    return out[0]


def test_the_run_is_taken_over_by_twisted_and_its_end_recorded(rig):
    record = started(rig, Start(("true",)))
    assert not isinstance(record, Failure)
    [(verb, committed)] = rig.store.calls
    assert verb == "start_program"
    assert (committed.id, committed.run_id) == (record.id, record.run_id) == (1, 1)
    with pytest.raises(ChildProcessError):
        os.waitpid(record.pid, os.WNOHANG)  # Twisted reaped it, told of it
    assert record.exit_known and record.exit_code == 0
    assert rig.supervisor.unadopted.pids == set(), "the orphan reaper may pass over it again"
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


def test_the_run_is_told_of_while_its_pid_is_committed_and_counts_once(rig):
    """Told of a run, the reactor thread takes it over before the commit's answer: the
    START is no longer `starting` then, so --max-managed counts it once."""
    rig.supervisor.max_managed = 1
    told = []
    start_program = rig.store.start_program

    def watching(record, spawn, tell):
        def tell_and_look(run):
            tell(run)
            told.append(len(rig.supervisor._starting))

        return start_program(record, spawn, tell_and_look)

    rig.store.start_program = watching
    rig.store.wait_for_exit = False
    record = started(rig, Start(("sleep", "30")))
    assert told == [0] and record.pid is not None
    os.kill(record.pid, 9)
    wait_until(lambda: ended(record.pid), timeout=10)
    process.reapAllProcesses()
