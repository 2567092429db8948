"""The launcher alone: how a program is found, checked, wrapped and spawned (a recording
stand-in for the spawn; no process runs)."""

import errno
import os
import threading
from types import SimpleNamespace

import pytest

from rpm.errors import BadArgument, NotFound, NotPermitted, SpawnFailed
from rpm.server.managed.launch import Launcher, check_cwd, resolve_program
from rpm.server.managed.records import ManagedRecord


def executable(path) -> str:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def record(*argv, cwd=None, env=None, settings=None) -> ManagedRecord:
    made = ManagedRecord(1, argv, cwd, env or {}, "no", 0.0)
    made.settings = settings or {}
    return made


class Spawns:
    """Records each spawn, with the umask in force at that moment."""

    def __init__(self, error=None):
        self.calls, self.error = [], error

    def __call__(self, protocol, program, args, env, path=None, childFDs=None, limits=()):
        umask = os.umask(0o022)
        os.umask(umask)
        self.calls.append(
            SimpleNamespace(program=program, args=args, env=env, umask=umask, limits=limits)
        )
        if self.error:
            raise self.error
        return SimpleNamespace(pid=123)


def test_a_relative_program_is_found_in_the_directory_asked_for(tmp_path):
    executable(tmp_path / "tool")
    found = resolve_program("./tool", str(tmp_path), "/nowhere")
    assert found == os.path.join(str(tmp_path), "./tool")


def test_a_program_is_looked_up_on_the_path_given_and_errors_say_where(tmp_path):
    (tmp_path / "bin").mkdir()
    tool = executable(tmp_path / "bin" / "rpm-test-tool")
    assert resolve_program("rpm-test-tool", None, str(tmp_path / "bin")) == tool
    with pytest.raises(NotFound) as caught:
        resolve_program("rpm-test-tool", None, "/nowhere")
    assert caught.value.message == (
        "program 'rpm-test-tool' is not on the server's PATH (/nowhere)"
    )
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(NotFound) as caught:
        resolve_program("./plain", str(tmp_path), "/nowhere")
    assert caught.value.message == "program './plain' is not an executable file"


def test_a_missing_directory_is_named():
    with pytest.raises(BadArgument) as caught:
        check_cwd("/nowhere/at/all")
    assert caught.value.message == (
        "the working directory '/nowhere/at/all' does not exist or is not a directory"
    )


def test_prepare_looks_in_the_programs_directory_and_on_the_launchers_path(tmp_path):
    (tmp_path / "bin").mkdir()
    tool = executable(tmp_path / "bin" / "rpm-test-tool")
    launcher = Launcher(None, spawn_session=Spawns(), environ={"PATH": str(tmp_path / "bin")})
    assert launcher.search_path == str(tmp_path / "bin")
    assert launcher.prepare(record("rpm-test-tool")) == tool
    assert launcher.prepare(record("./rpm-test-tool", cwd=str(tmp_path / "bin"))).endswith(
        "/bin/./rpm-test-tool"
    )


def test_the_launchers_environment_defaults_to_the_servers():
    assert Launcher(None).search_path == os.environ.get("PATH", os.defpath)


def test_allowed_programs_are_matched_on_the_resolved_path(tmp_path):
    allowed = executable(tmp_path / "allowed")
    other = executable(tmp_path / "other")
    launcher = Launcher(None, environ={"PATH": str(tmp_path)}, allowed=(f"{tmp_path}/allow*",))
    assert launcher.prepare(record("allowed")) == allowed
    with pytest.raises(NotPermitted) as caught:
        launcher.prepare(record("other"))
    assert caught.value.message == (
        f"{other} is not one of the programs the server's --allow-programs file allows"
    )


def test_limits_go_to_the_spawn_and_leave_the_command_line_alone():
    spawns = Spawns()
    launcher = Launcher(None, spawn_session=spawns, environ={"PATH": "/bin"})
    limited = record("sleep", "30", settings={"limits": [("nofile", 64), ("nproc", 9)]})
    launcher.spawn(limited, "/bin/sleep", None, {1: 1, 2: 2})
    launcher.spawn(record("sleep", "30"), "/bin/sleep", None, {1: 1, 2: 2})
    assert [(call.args, call.limits) for call in spawns.calls] == [
        (["sleep", "30"], [("nofile", 64), ("nproc", 9)]),
        (["sleep", "30"], ()),
    ]


def test_a_path_in_the_programs_environment_does_not_change_which_program_runs():
    launcher = Launcher(None, environ={"PATH": "/bin"})
    moved = record("sleep", "1", env={"PATH": "/elsewhere"})
    assert launcher.argv_for(moved, "/bin/sleep") == ("/bin/sleep", ["/bin/sleep", "1"])
    assert launcher.argv_for(record("./x"), "/tmp/x") == ("./x", ["./x"])


def test_the_child_gets_the_umask_asked_for_and_the_server_keeps_its_own():
    spawns = Spawns()
    launcher = Launcher(None, spawn_session=spawns, environ={"PATH": "/bin"}, umask=0o077)
    before = os.umask(0o022)
    os.umask(before)
    launcher.spawn(record("sleep", "1"), "/bin/sleep", None, {1: 1, 2: 2})
    after = os.umask(0o022)
    os.umask(after)
    assert spawns.calls[0].umask == 0o077 and after == before
    assert spawns.calls[0].env["RPM_RUN"] == "rpm.1" and spawns.calls[0].env["PATH"] == "/bin"


def test_a_spawn_the_system_refuses_says_what_and_why():
    spawns = Spawns(error=OSError(11, "Resource temporarily unavailable"))
    launcher = Launcher(None, spawn_session=spawns, environ={"PATH": "/bin"}, umask=0o077)
    before = os.umask(0o022)
    os.umask(before)
    with pytest.raises(SpawnFailed) as caught:
        launcher.spawn(record("sleep", "1"), "/bin/sleep", None, {1: 1, 2: 2})
    assert caught.value.message == (
        "cannot start 'sleep': the server's user runs as many processes as it may "
        "(ulimit -u), or the system as many as it can"
    )
    after = os.umask(0o022)
    os.umask(after)
    assert after == before, "the server's umask is back even when the spawn failed"


@pytest.mark.parametrize(
    ("first_line", "why"),
    [
        (
            b"#!/no/such/interpreter -x\n",
            "its interpreter '/no/such/interpreter' (its #! line) does not exist",
        ),
        (b"#!\n", "No such file or directory"),
        (b"echo no #! line\n", "No such file or directory"),
    ],
)
def test_a_script_whose_interpreter_is_missing_is_told_apart(tmp_path, first_line, why):
    script = tmp_path / "script"
    script.write_bytes(first_line + b"echo hi\n")
    script.chmod(0o755)
    spawns = Spawns(error=OSError(errno.ENOENT, "No such file or directory"))
    launcher = Launcher(None, spawn_session=spawns, environ={"PATH": "/bin"})
    with pytest.raises(SpawnFailed) as caught:
        launcher.spawn(record(str(script)), str(script), None, {1: 1, 2: 2})
    assert caught.value.message == f"cannot start {str(script)!r}: {why}"


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (OSError(errno.EACCES, "Permission denied"), "Permission denied"),  # not its #! line
        (OSError("an odd refusal"), "an odd refusal"),  # no errno, no strerror
    ],
)
def test_other_refusals_of_a_script_keep_the_systems_words(tmp_path, error, why):
    script = tmp_path / "script"
    script.write_bytes(b"#!/no/such/interpreter\n")
    spawns = Spawns(error=error)
    launcher = Launcher(None, spawn_session=spawns, environ={"PATH": "/bin"})
    with pytest.raises(SpawnFailed) as caught:
        launcher.spawn(record(str(script)), str(script), None, {1: 1, 2: 2})
    assert caught.value.message == f"cannot start {str(script)!r}: {why}"


# -- the log writer: the shared one, one of the run's own, or none for a while --------------


def writer_rig(tmp_path):
    from rpm.server.managed.logfiles import LogFiles
    from tests.unit.test_supervisor import FakeProcessReactor

    reactor = FakeProcessReactor()
    launcher = Launcher(reactor, spawn_session=reactor.spawn_session, environ={"PATH": "/bin"})
    return reactor, launcher, LogFiles(str(tmp_path / "logs"))


def close_all(fds) -> None:
    for fd in fds:
        os.close(fd)


def close_run(fds, handed) -> None:
    """What the server holds of a run's output: the program's ends, the writer's done end and
    its own copies of the pipes."""
    close_all([*fds.values(), handed.done, *handed.pipes])


def test_a_writer_is_started_directly_when_the_shared_writer_is_gone(tmp_path):
    reactor, launcher, logfiles = writer_rig(tmp_path)
    fds, handed = launcher.outputs(logfiles, record("true"), 4096)  # starts the shared writer
    close_run(fds, handed)
    [channel] = reactor.shared_writers
    channel.close()  # the shared writer died: its end of the channel is gone
    fds, handed = launcher.outputs(logfiles, record("true"), 4096)
    [writer] = reactor.writers
    assert writer.args[-3:] == [logfiles.path(1, "stdout"), logfiles.path(1, "stderr"), "4096"]
    assert writer.env == {} and sorted(writer.childFDs) == [0, 1, 2, 3, 4, 5]
    close_run(fds, handed)
    assert launcher._channel is None, "a new shared writer is started at the next need"
    fds, handed = launcher.outputs(logfiles, record("true"), 4096)
    assert len(reactor.shared_writers) == 2
    close_run(fds, handed)
    reactor.shared_writers[1].close()


def test_a_log_writer_is_spawned_under_the_spawn_guard(tmp_path):
    """Never while the server is inside a program's cgroup for a spawn in the registry's
    thread (the guard is ProgramCgroups.lock): the writer would be born in there with it."""
    reactor, launcher, logfiles = writer_rig(tmp_path)
    guard = threading.Lock()
    launcher.spawn_guard = guard
    held = []
    spawn = reactor.spawnProcess
    reactor.spawnProcess = lambda *args, **kwargs: (
        held.append(guard.locked()) or spawn(*args, **kwargs)
    )
    fds, handed = launcher.outputs(logfiles, record("true"), 4096)
    close_run(fds, handed)
    reactor.shared_writers[0].close()
    assert held == [True] and not guard.locked()


def test_where_no_writer_can_start_programs_write_their_files_for_a_minute(tmp_path):
    reactor, launcher, logfiles = writer_rig(tmp_path)

    def refuse(*args, **kwargs):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    reactor.spawnProcess = refuse
    fds, handed = launcher.outputs(logfiles, record("true"), 4096)
    assert handed is None and sorted(fds) == [1, 2]
    assert os.fstat(fds[1]).st_ino == os.stat(logfiles.path(1, "stdout")).st_ino
    close_all(fds.values())
    reactor.advance(59)
    fds, handed = launcher.outputs(logfiles, record("true"), 4096)
    assert handed is None, "no new try within the minute"
    close_all(fds.values())
    del reactor.spawnProcess
    reactor.advance(2)
    fds, handed = launcher.outputs(logfiles, record("true"), 4096)
    assert handed is not None and len(reactor.shared_writers) == 1
    close_run(fds, handed)


def test_log_files_that_cannot_be_opened_are_a_spawn_failure_naming_the_program(tmp_path):
    reactor, launcher, logfiles = writer_rig(tmp_path)

    def refuse(*args, **kwargs):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    reactor.spawnProcess = refuse  # no writer: the program is to write its files itself
    os.mkdir(logfiles.path(1, "stdout"))  # where the file should be
    with pytest.raises(SpawnFailed) as caught:
        launcher.outputs(logfiles, record("true"), 4096)
    assert caught.value.message == "cannot open the log files for 'true': Is a directory"


def test_the_shared_writer_runs_isolated_on_a_channel_that_never_blocks_the_server(tmp_path):
    import fcntl
    import sys

    from rpm.server.managed.launch import LOG_WRITER

    reactor, launcher, logfiles = writer_rig(tmp_path)
    fds, handed = launcher.outputs(logfiles, record("true"), 4096)
    [spawn] = reactor.shared_writer_spawns
    assert spawn.args == [sys.executable, "-I", "-S", LOG_WRITER, "--serve"]
    assert reactor.writers == [], "the shared writer took the run: none is started directly"
    assert launcher._channel.getblocking() is False
    for fd in [*fds.values(), handed.done, *handed.pipes, launcher._null()]:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, "no other child inherits it"
    assert fcntl.fcntl(handed.done, fcntl.F_GETFL) & os.O_NONBLOCK
    close_run(fds, handed)


def test_an_old_shared_writers_end_does_not_close_the_current_channel(tmp_path):
    import socket

    reactor, launcher, logfiles = writer_rig(tmp_path)
    fds, handed = launcher.outputs(logfiles, record("true"), 4096)
    close_run(fds, handed)
    current = launcher._channel
    old, other = socket.socketpair()
    launcher.close_writer_channel(old)
    assert launcher._channel is current
    launcher.close_writer_channel(current)
    assert launcher._channel is None
    for end in (old, other, *reactor.shared_writers):
        end.close()
