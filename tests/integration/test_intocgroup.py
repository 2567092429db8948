"""The C part (_intocgroup.c): a child cloned straight into a real cgroup, with what
posix_spawn gives it (a session of its own, signals at their defaults, its descriptors,
its environment), and its failures told as posix_spawn tells them. Needs a cgroup v2
hierarchy the tests' user may create cgroups in, and the extension built."""

from __future__ import annotations

import errno
import os
import signal
import uuid
from pathlib import Path

import pytest

from rpm.server.managed import session
from rpm.server.managed.cgroups import ProgramCgroups
from rpm.server.managed.session import IntoCgroupRefused, spawn_into_cgroup
from rpm.server.procs.identity import read_stat
from tests.support import wait_until, zombie_children

SIGNALS_IGNORED = "SigIgn:"


@pytest.fixture
def program_cgroup():
    """An fd of a new real program cgroup to clone into; everything removed afterwards."""
    if session.into_cgroup is None:
        pytest.skip("rpm was installed without its C part (no C compiler there)")
    cgroups = ProgramCgroups.create(f"test-{uuid.uuid4().hex[:8]}")
    if cgroups is None:
        pytest.skip("this machine lets the tests create no cgroup (needs cgroup v2 delegation)")
    into = cgroups.ready_to_spawn(1)
    children: list[int] = []
    yield cgroups, into, children
    os.close(into)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    cgroups.remove(1)
    cgroups.tidy()


def test_a_child_is_born_in_its_cgroup_as_posix_spawn_would_start_it(program_cgroup):
    cgroups, into, children = program_cgroup
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    ignored = signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # an ignored signal is inherited
    try:
        script = 'echo "$GREETING"; exec sleep 30'
        pid = spawn_into_cgroup(
            "/bin/sh", ["sh", "-c", script], {"GREETING": "hello"}, {1: write_end}, into
        )
    finally:
        signal.signal(signal.SIGUSR1, ignored)
        os.close(write_end)
    children.append(pid)
    with os.fdopen(read_end, "rb") as output:
        assert output.readline() == b"hello\n", "its stdout and its environment"
    assert cgroups.pids(1) == [pid], "born in the program's cgroup"
    wait_until(lambda: read_stat(pid)[0] == "sleep")
    fields = read_stat(pid)[1]
    assert int(fields[3]) == pid, "the leader of a session of its own"
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines()
    [mask] = [line.split()[1] for line in status if line.startswith(SIGNALS_IGNORED)]
    assert int(mask, 16) & (1 << (signal.SIGUSR1 - 1)) == 0, "every signal at its default"


def test_a_program_that_cannot_be_executed_is_refused_as_by_posix_spawn(program_cgroup):
    _, into, _ = program_cgroup
    with pytest.raises(FileNotFoundError) as refused:
        spawn_into_cgroup("/no/such/program", ["program"], {}, {}, into)
    assert refused.value.filename == "/no/such/program"
    assert zombie_children(os.getpid()) == [], "the child that could not exec is reaped"
    with pytest.raises(ValueError, match="null"):
        spawn_into_cgroup("/bin/true", ["true", "a\0b"], {}, {}, into)


def test_a_directory_that_is_no_cgroup_is_refused_by_the_kernel(program_cgroup, tmp_path):
    """What the server then does (steps into the cgroup instead) is test_cgroups'."""
    plain = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with pytest.raises(IntoCgroupRefused):
            spawn_into_cgroup("/bin/true", ["true"], {}, {}, plain)
    finally:
        os.close(plain)


@pytest.mark.parametrize(
    ("code", "raised"),
    [(errno.EAGAIN, OSError), (errno.ENOMEM, OSError), (errno.EACCES, IntoCgroupRefused)],
)
def test_only_a_clone_any_spawn_would_fail_is_a_spawn_failure(monkeypatch, code, raised):
    """Out of processes (ulimit -u) or memory, the START fails as with posix_spawn; any
    other refusal of the clone is the cgroup's, and the server steps in instead."""
    if session.into_cgroup is None:
        pytest.skip("rpm was installed without its C part (no C compiler there)")

    def refused(*args):
        raise session.into_cgroup.CloneRefused(code, os.strerror(code))

    monkeypatch.setattr(session.into_cgroup, "spawn_into", refused)
    with pytest.raises(raised) as caught:
        spawn_into_cgroup("/bin/true", ["true"], {}, {}, 0)
    assert caught.value.errno == code


def test_arguments_given_as_any_sequence_reach_the_child_whole(program_cgroup):
    """The C part keeps the sequences' items alive through the spawn, whatever it is given
    (a generator makes a list of its own there, which must not be freed too soon)."""
    _, into, children = program_cgroup
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    words = (f"word{number}".encode() * 50 for number in range(3))
    try:
        pid = session.into_cgroup.spawn_into(
            b"/bin/sh",
            (part for part in [b"sh", b"-c", b'echo "$@"', b"sh", *words]),
            (f"N{number}=1".encode() for number in range(3)),
            [(session.DUP2, write_end, 1)],
            into,
        )
    finally:
        os.close(write_end)
    children.append(pid)
    with os.fdopen(read_end, "rb") as output:
        expected = " ".join(f"word{number}" * 50 for number in range(3)).encode()
        assert output.readline() == expected + b"\n"
    os.waitpid(pid, 0)
    children.remove(pid)
