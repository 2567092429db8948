"""The supervisor with a fake process reactor and a Clock: spawning, exits, restart policies."""

import contextlib
import errno
import os
import socket
import sqlite3
import stat
from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from rpm.commands import Start
from rpm.errors import BadArgument, LimitReached, NotFound, SpawnFailed
from rpm.server.managed.adoption import take_over
from rpm.server.managed.launch import LOG_WRITER, Launcher
from rpm.server.managed.logfiles import LogFiles
from rpm.server.managed.outputs import OutputTracker
from rpm.server.managed.records import ManagedRecord
from rpm.server.managed.supervisor import Supervisor
from rpm.server.managed.written import WriterDone, drained

FAKE_PID = 5_000_000


class FakeProcessReactor(Clock):
    def __init__(self):
        super().__init__()
        self.spawned = []
        self.shared_writers = []
        self.writers = []
        self.shared_writer_spawns = []
        self.held = []  # what the log writers were handed and hold
        self.readers = set()
        self.next_pid = FAKE_PID  # above Linux's PID_MAX_LIMIT: no real process has it

    def spawnProcess(
        self, protocol, executable, args, env=None, path=None, childFDs=None, limits=()
    ):
        if LOG_WRITER in args and args[-1] == "--serve":  # the shared log writer: its channel
            assert env == {}
            self.shared_writer_spawns.append(SimpleNamespace(executable=executable, args=args))
            self.shared_writers.append(socket.socket(fileno=os.dup(childFDs[3])))
            return SimpleNamespace(pid=None)
        if LOG_WRITER in args:  # a log writer started directly: what it was given
            self.writers.append(SimpleNamespace(args=args, env=env, childFDs=childFDs))
            return SimpleNamespace(pid=None)
        transport = SimpleNamespace(pid=self.next_pid, signals=[])
        pid_given = self.next_pid
        transport.signalProcess = transport.signals.append
        self.next_pid += 1
        self.spawned.append(
            SimpleNamespace(
                protocol=protocol,
                executable=executable,
                args=args,
                env=env,
                path=path,
                childFDs=childFDs,
                files=[stat.S_ISREG(os.fstat(fd).st_mode) for fd in childFDs.values()],
                pid_given=pid_given,
            )
        )
        protocol.makeConnection(transport)
        return transport

    def spawn_session(self, *args, **kwargs):
        """The Launcher's spawn of a program: spawnProcess, as a test may have replaced it."""
        return self.spawnProcess(*args, **kwargs)

    def addReader(self, reader):  # an adopted run's pidfd watch
        self.readers.add(reader)

    def removeReader(self, reader):
        self.readers.discard(reader)

    def finish_writers(self) -> None:
        """The log writers do what real ones do: take the runs handed to them (queued in the
        shared writer's channel) and, for each run whose pipes every program end has closed
        and that holds no more output, drop its descriptors, so its WriterDone sees the end."""
        for channel in self.shared_writers:
            channel.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    _, fds, _, _ = socket.recv_fds(channel, 8192, 3)
                    self.held.append(fds)
        for fds in [fds for fds in self.held if drained(tuple(fds[:2]))]:
            self.held.remove(fds)
            for fd in fds:
                os.close(fd)
        for reader in list(self.readers):
            if isinstance(reader, WriterDone):
                reader.doRead()

    def end(self, index=-1, code=0, signal=None):
        if code == 0 and signal is None:
            reason = ProcessDone(0)
        else:
            reason = ProcessTerminated(exitCode=None if signal else code, signal=signal)
        self.spawned[index].protocol.processEnded(Failure(reason))
        self.finish_writers()


class FakeStore:
    """Records which of the store's methods were called, in order, and answers at once."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, method):
        def record(*args):
            self.calls.append((method, *args))
            return defer.succeed(None)

        return record


@pytest.fixture
def rig(tmp_path):
    reactor = FakeProcessReactor()
    store = FakeStore()
    watcher = OutputTracker(reactor, LogFiles(str(tmp_path / "logs")), max_bytes=1024 * 1024)
    launcher = Launcher(
        reactor,
        spawn_session=reactor.spawn_session,
        environ={"PATH": os.environ["PATH"], "HOME": "/home/x"},
    )
    supervisor = Supervisor(reactor, store, launcher, watcher, max_managed=3)
    events = []
    supervisor.observe(lambda event, record: events.append((event, record.pid, record.exit_code)))
    return SimpleNamespace(
        reactor=reactor, store=store, supervisor=supervisor, events=events, logs=tmp_path / "logs"
    )


def started(rig, command):
    out = []
    rig.supervisor.start(command).addBoth(out.append)
    return out[0]


def test_start_spawns_in_a_new_session_with_the_servers_environment_and_log_files(rig):
    record = started(rig, Start(("sleep", "30"), "/tmp", (("FOO", "bar"),)))
    spawn = rig.reactor.spawned[0]
    assert spawn.executable == "sleep"
    assert spawn.args == ["sleep", "30"]
    assert spawn.env == {
        "PATH": os.environ["PATH"],
        "HOME": "/home/x",
        "FOO": "bar",
        "RPM_RUN": "rpm.1",  # the marker every process of the run inherits
    }
    assert spawn.path == "/tmp"
    assert sorted(spawn.childFDs) == [0, 1, 2]
    assert spawn.files == [False, False, False], "stdout and stderr are pipes, not the files"
    [channel] = rig.reactor.shared_writers  # its output goes through pipes to a log writer
    request, pipes, _, _ = socket.recv_fds(channel, 8192, 3)
    assert request.decode().split("\0") == [
        str(rig.logs / "1.out"), str(rig.logs / "1.err"), str(512 * 1024)
    ]  # fmt: skip
    assert [stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in pipes] == [True, True, True]
    for fd in pipes:
        os.close(fd)
    channel.close()
    assert list(rig.logs.iterdir()) == [], "the writer creates the log files, not the reactor"
    assert record.pid == FAKE_PID and record.id == 1
    assert rig.events == [("started", FAKE_PID, None)]
    assert [call[0] for call in rig.store.calls] == ["add_program", "add_run"]
    assert rig.supervisor.is_managed(FAKE_PID, record.started)


def test_a_path_override_makes_the_program_absolute(rig):
    started(rig, Start(("sleep", "1"), None, (("PATH", "/nowhere"),)))
    assert rig.reactor.spawned[0].args[0].endswith("/sleep")
    assert rig.reactor.spawned[0].args[0].startswith("/")


def test_missing_or_unusable_programs_are_refused_before_anything_runs(rig, tmp_path):
    for command, error in [
        (Start(("no-such-program-rpm",)), NotFound),
        (Start(("./missing",)), NotFound),
        (Start((str(tmp_path),)), NotFound),
        (Start(("true",), "/no/such/dir"), BadArgument),
    ]:
        with pytest.raises(error):
            rig.supervisor.start(command)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o600)
    if os.geteuid() != 0:
        with pytest.raises(NotFound, match="not an executable"):
            rig.supervisor.start(Start((str(script),)))
    assert rig.reactor.spawned == []


def test_max_managed_is_enforced(rig):
    for _ in range(3):
        started(rig, Start(("sleep", "9")))
    with pytest.raises(LimitReached):
        rig.supervisor.start(Start(("sleep", "9")))
    rig.reactor.end(0)
    started(rig, Start(("sleep", "9")))


def test_exit_status_is_recorded_and_announced(rig):
    record = started(rig, Start(("false",)))
    rig.reactor.end(code=3)
    assert (record.exit_code, record.exit_signal, record.exit_known) == (3, None, True)
    assert rig.events[-1] == ("exited", FAKE_PID, 3)
    assert rig.store.calls[-1][0] == "end_run"
    rig.reactor.advance(120)
    assert len(rig.reactor.spawned) == 1, "restart policy 'no' never restarts"


def test_a_run_that_ends_during_spawn_is_started_then_exited(rig):
    original = rig.reactor.spawnProcess

    def spawn_and_end(protocol, executable, args, **kwargs):
        transport = original(protocol, executable, args, **kwargs)
        if LOG_WRITER not in args:
            rig.reactor.end(code=1)
        return transport

    rig.reactor.spawnProcess = spawn_and_end
    record = started(rig, Start(("false",)))
    rig.reactor.finish_writers()  # the server's copies of the program's ends are closed now
    assert [e[0] for e in rig.events] == ["started", "exited"]
    assert [call[0] for call in rig.store.calls] == ["add_program", "add_run", "end_run"]
    assert record.ended


def test_on_failure_restarts_with_exponential_backoff(rig):
    started(rig, Start(("false",), restart="on-failure"))
    delays = []
    for _ in range(8):
        rig.reactor.end(code=1)
        before = len(rig.reactor.spawned)
        waited = 0.0
        while len(rig.reactor.spawned) == before:
            rig.reactor.advance(0.5)
            waited += 0.5
        delays.append(waited)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert rig.supervisor.by_pid(rig.reactor.spawned[-1].protocol._managed.record.pid)
    assert rig.reactor.spawned[-1].protocol._managed.record.restarts == 8
    assert rig.store.calls[-1][0] == "add_run"


def test_on_failure_does_not_restart_after_success_but_always_does(rig):
    started(rig, Start(("true",), restart="on-failure"))
    rig.reactor.end(code=0)
    rig.reactor.advance(5)
    assert len(rig.reactor.spawned) == 1
    started(rig, Start(("true",), restart="always"))
    rig.reactor.end(code=0)
    rig.reactor.advance(1)
    assert len(rig.reactor.spawned) == 3


def test_backoff_resets_after_a_minute_of_uptime(rig):
    started(rig, Start(("false",), restart="always"))
    rig.reactor.end(code=1)
    rig.reactor.advance(1)
    rig.reactor.end(code=1)
    rig.reactor.advance(2)
    rig.reactor.advance(61)
    rig.reactor.end(code=1)
    rig.reactor.advance(1)
    assert len(rig.reactor.spawned) == 4


def test_stop_ends_the_policy(rig):
    record = started(rig, Start(("sleep", "9"), restart="always"))
    managed = rig.supervisor.by_pid(record.pid)
    rig.supervisor.end_policy(managed)
    rig.reactor.end(signal=15)
    rig.reactor.advance(120)
    assert len(rig.reactor.spawned) == 1
    assert ("end_policy", record.id) in rig.store.calls


def test_records_of_processes_that_ended_while_the_server_was_down(rig):
    dead = ManagedRecord(
        7,
        ("sleep", "1"),
        None,
        {},
        "no",
        1.0,
        run_id=3,
        pid=2**22 - 5,
        started=12.0,
        spawned_at=1.0,
    )
    to_restart = ManagedRecord(
        8, ("true",), None, {}, "always", 1.0, run_id=4, pid=2**22 - 6, started=12.0, spawned_at=1.0
    )
    take_over(
        rig.reactor,
        rig.supervisor,
        [dead, to_restart],
        next_id=9,
        next_run_id=5,
        find=lambda markers: {},
    )
    assert dead.ended and dead.exit_known is False and dead.exit_code is None
    assert [e[0] for e in rig.events] == ["exited", "exited"]
    rig.reactor.advance(1)
    assert rig.reactor.spawned[0].args == ["true"]
    assert to_restart.restarts == 1 and to_restart.run_id == 5
    assert started(rig, Start(("true",))).id == 9


def test_cancel_restarts_leaves_the_policy_for_the_next_server(rig):
    record = started(rig, Start(("false",), restart="always"))
    rig.reactor.end(code=1)
    assert rig.supervisor.by_pid(record.pid).restarting
    rig.supervisor.cancel_restarts()
    rig.reactor.advance(120)
    assert len(rig.reactor.spawned) == 1, "no restart after cancel_restarts"
    assert not record.policy_ended and "end_policy" not in [c[0] for c in rig.store.calls]


def test_programs_waiting_to_restart_count_against_max_managed(rig):
    started(rig, Start(("sleep", "1")))
    started(rig, Start(("false",), restart="always"))
    started(rig, Start(("false",), restart="always"))
    rig.reactor.end(index=1, code=1)
    rig.reactor.end(index=2, code=1)
    with pytest.raises(LimitReached, match="1 managed processes are running and 2 waiting"):
        rig.supervisor.start(Start(("sleep", "2")))


def test_a_restart_past_max_managed_waits_and_says_why(rig):
    first = started(rig, Start(("false",), restart="always"))
    started(rig, Start(("sleep", "1")))
    rig.reactor.end(index=0, code=1)
    rig.supervisor.max_managed = 1  # as after adopting more than a lower limit allows
    rig.reactor.advance(1)
    program = rig.supervisor.by_pid(first.pid)
    assert len(rig.reactor.spawned) == 2 and program.restarting
    assert program.blocked == "--max-managed 1 reached"
    rig.reactor.end(index=1, code=0)  # a slot frees up
    rig.reactor.advance(2)
    assert len(rig.reactor.spawned) == 3 and program.running and program.blocked is None


def test_a_record_whose_pid_now_names_another_process_is_not_adopted(rig):
    reused = ManagedRecord(
        5, ("sleep", "9"), None, {}, "no", 1.0, run_id=2, pid=os.getpid(), started=12.0
    )  # this very test process has that pid now, with another start time
    take_over(rig.reactor, rig.supervisor, [reused], next_id=6, next_run_id=3)
    assert not rig.supervisor.is_managed(os.getpid(), reused.started)
    assert rig.supervisor.running() == [] and reused.ended
    assert (reused.exit_known, reused.exit_code) == (False, None)


def test_start_runs_nothing_before_its_intent_is_committed_nor_answers_before_its_pid(rig):
    intent, pid_committed = defer.Deferred(), defer.Deferred()
    rig.store.add_program = lambda record: intent
    rig.store.add_run = lambda record: pid_committed
    answers = []
    rig.supervisor.start(Start(("sleep", "5"))).addBoth(answers.append)
    assert rig.reactor.spawned == [], "nothing runs before its record is durable"
    intent.callback(None)
    assert len(rig.reactor.spawned) == 1 and answers == [], "running, not yet answered"
    pid_committed.callback(1)
    assert [answer.argv for answer in answers] == [("sleep", "5")]


def test_a_start_whose_record_cannot_be_written_runs_nothing(rig):
    rig.store.add_program = lambda record: defer.fail(sqlite3.OperationalError("disk is full"))
    answer = rig.supervisor.start(Start(("sleep", "5")))
    assert rig.reactor.spawned == [] and rig.supervisor.records() == []
    assert answer.result.check(sqlite3.OperationalError)
    answer.addErrback(lambda _: None)


def test_a_start_whose_pid_cannot_be_committed_is_killed_before_the_reply(rig):
    rig.store.add_run = lambda record: defer.fail(sqlite3.OperationalError("database is locked"))
    answer = rig.supervisor.start(Start(("sleep", "5"), restart="always"))
    spawned = rig.reactor.spawned[0]
    assert spawned.protocol.transport.signals == ["KILL"]
    assert answer.result.check(sqlite3.OperationalError)
    answer.addErrback(lambda _: None)
    rig.reactor.end(signal=9)
    rig.reactor.advance(120)
    assert len(rig.reactor.spawned) == 1, "a killed uncommitted START is not restarted"


def test_a_start_that_cannot_spawn_is_marked_failed(rig):
    original = rig.reactor.spawnProcess

    def refuse(*args, **kwargs):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    rig.reactor.spawnProcess = refuse
    answer = rig.supervisor.start(Start(("sleep", "5")))
    assert answer.result.check(SpawnFailed)
    answer.addErrback(lambda _: None)
    assert [call[0] for call in rig.store.calls] == ["add_program", "end_policy"]
    rig.reactor.spawnProcess = original
    assert rig.supervisor.records() == []


def test_a_start_cut_short_is_adopted_if_its_run_exists_else_marked_failed(rig):
    ran = ManagedRecord(4, ("sleep", "9"), None, {}, "no", 1.0)
    never = ManagedRecord(5, ("sleep", "9"), None, {}, "no", 1.0)
    survivor = (os.getpid(), 12.0)
    take_over(
        rig.reactor,
        rig.supervisor,
        [ran, never],
        next_id=6,
        next_run_id=3,
        find=lambda markers: {"rpm.4": survivor} if "rpm.4" in markers else {},
    )
    assert (ran.pid, ran.started, ran.run_id) == (os.getpid(), 12.0, 3)
    assert [m.record for m in rig.supervisor.running()] == [ran]
    assert never.policy_ended and ("end_policy", 5) in rig.store.calls
    assert ("add_run", ran) in rig.store.calls
    for managed in rig.supervisor.running():
        managed.exit_watch.cancel()


def test_a_restart_cut_short_is_adopted_not_started_twice(rig):
    ended = ManagedRecord(
        4, ("sleep", "9"), None, {}, "always", 1.0, run_id=2, pid=5_000_001, started=5.0
    )
    ended.ended_at = 6.0
    take_over(
        rig.reactor,
        rig.supervisor,
        [ended],
        next_id=5,
        next_run_id=3,
        find=lambda markers: {"rpm.4": (os.getpid(), 12.0)},
    )
    assert (ended.pid, ended.run_id, ended.restarts, ended.ended) == (os.getpid(), 3, 1, False)
    rig.reactor.advance(120)
    assert rig.reactor.spawned == []
    for managed in rig.supervisor.running():
        managed.exit_watch.cancel()


def test_where_no_log_writer_can_start_programs_write_their_files_themselves(rig):
    original, attempts = rig.reactor.spawnProcess, []

    def no_writers(protocol, executable, args, **kwargs):
        if LOG_WRITER in args:
            attempts.append(args)
            raise OSError(errno.EACCES, "Permission denied")
        return original(protocol, executable, args, **kwargs)

    rig.reactor.spawnProcess = no_writers
    for _ in range(2):
        started(rig, Start(("sleep", "30")))
    assert len(attempts) == 1, "no new attempt for a minute"
    files = rig.reactor.spawned[0].files
    assert files == [False, True, True], "stdin /dev/null, stdout and stderr the log files"
    rig.reactor.advance(61)
    started(rig, Start(("sleep", "30")))
    assert len(attempts) == 2


def test_a_run_is_finished_once_its_writer_wrote_everything_and_restart_waits_for_that(rig):
    record = started(rig, Start(("sleep", "30"), name="web"))
    managed = rig.supervisor.by_pid(record.pid)
    rig.supervisor.end_policy(managed)  # as STOP does
    rig.reactor.spawned[0].protocol.processEnded(Failure(ProcessTerminated(signal=15)))
    assert rig.events == [("started", record.pid, None)], "no exited before the last output"
    assert rig.supervisor.names.get("web") is None, "stopped: its name is free at once"
    rerun = []
    rig.supervisor.rerun(managed).addBoth(rerun.append)
    assert len(rig.reactor.spawned) == 1 and rerun == [], "the new run waits for the old"
    rig.reactor.finish_writers()
    assert [event[0] for event in rig.events] == ["started", "exited", "started", "restarted"]
    assert len(rig.reactor.spawned) == 2 and rerun[0].pid == rig.reactor.spawned[1].pid_given
