"""Programs' cgroups on a stand-in cgroupfs (plain files): how a program is born in its
cgroup, and why a server that could not step back out never kills or freezes itself."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading

import pytest

from rpm.server.managed import cgroups as cgroups_module
from rpm.server.managed.cgroups import ProgramCgroups
from rpm.server.managed.session import IntoCgroupRefused
from rpm.server.procs.identity import read_stat
from tests.support import held_in_a_thread, wait_until


@pytest.fixture
def tree(tmp_path):
    """The server's cgroup (tmp_path) with rpm-test under it, as ProgramCgroups.create makes."""
    (tmp_path / "rpm-test").mkdir()
    return tmp_path


def where_the_server_is(cgroup) -> bool:
    """Whether the stand-in cgroup.procs was last given our pid."""
    return (cgroup / "cgroup.procs").read_text() == str(os.getpid())


def test_a_program_is_born_in_its_cgroup_and_the_server_steps_back_out(tree):
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    assert cgroups.prepare(1)
    program = tree / "rpm-test" / "program-1"
    (program / "cgroup.freeze").write_text("1")  # the last run was paused
    assert cgroups.prepare(1)
    assert (program / "cgroup.freeze").read_text() == "0", "a new run is not born paused"
    with cgroups.born_inside(1):
        assert where_the_server_is(program), "what the server spawns now starts in there"
    assert where_the_server_is(tree), "back in its own cgroup"
    assert cgroups.pids(1) == [], "the server is never one of the program's processes"


def test_a_server_that_cannot_step_out_never_kills_or_freezes_itself(tree):
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    cgroups.prepare(1)
    program = tree / "rpm-test" / "program-1"
    for refusing in (tree / "cgroup.procs", tree / "rpm-test" / "cgroup.procs"):
        refusing.mkdir()  # writing our pid there fails
    with cgroups.born_inside(1):
        pass
    assert where_the_server_is(program)
    cgroups.kill(1)
    cgroups.freeze(1, True)
    assert not (program / "cgroup.kill").exists() and not (program / "cgroup.freeze").exists()
    cgroups.prepare(2)
    cgroups.kill(2)  # another program's cgroup is no danger
    assert (tree / "rpm-test" / "program-2" / "cgroup.kill").read_text() == "1"
    (tree / "rpm-test" / "cgroup.procs").rmdir()  # rpm-<instance> takes the server again
    cgroups.kill(1)
    assert where_the_server_is(tree / "rpm-test")
    assert (program / "cgroup.kill").read_text() == "1", "out of it: killed whole again"


def test_no_kill_freeze_or_other_spawn_meets_the_server_inside_a_programs_cgroup(tree):
    """A START spawned in the registry's thread steps into its program's cgroup: a STOP or
    PAUSE of the reactor thread's waits until the server is out, and so does a log writer's
    spawn (Launcher.spawn_guard), which would be born in there with it."""
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    cgroups.prepare(1)
    done = []
    with held_in_a_thread(lambda: cgroups.born_inside(1)):  # a spawn in another thread
        killer = threading.Thread(target=lambda: done.append(cgroups.kill(1)))
        killer.start()
        killer.join(0.2)
        assert killer.is_alive() and done == [], "no cgroup.kill with the server inside"
        assert not cgroups.lock.acquire(blocking=False), "nor a spawn of another thread's"
    killer.join(10)
    assert done == [None] and (tree / "rpm-test" / "program-1" / "cgroup.kill").read_text() == "1"
    assert where_the_server_is(tree), "the kill came once the server was out"


def test_where_the_server_cannot_enter_the_program_is_born_beside_it(tree):
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    cgroups.prepare(1)
    (tree / "rpm-test" / "program-1" / "cgroup.procs").mkdir()
    with cgroups.born_inside(1):
        assert not (tree / "cgroup.procs").exists(), "never left its own cgroup"
    assert not (tree / "cgroup.procs").exists()


def test_the_v2_hierarchy_is_found_in_mountinfo_and_the_own_cgroup_in_proc(tmp_path):
    from rpm.server.managed import cgroups

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "24 1 0:22 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n"
        "35 24 0:30 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n"
    )
    assert cgroups._cgroup2_mount(str(mountinfo)) == "/sys/fs/cgroup/unified"
    mountinfo.write_text("24 1 0:22 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    assert cgroups._cgroup2_mount(str(mountinfo)) is None
    mountinfo.write_text("a line without its separator\n")
    assert cgroups._cgroup2_mount(str(mountinfo)) is None
    assert cgroups._cgroup2_mount(str(tmp_path / "missing")) is None
    own = tmp_path / "cgroup"
    own.write_text("4:memory:/elsewhere\n0::/system.slice/rpm.service\n")
    assert cgroups._own_cgroup(str(own)) == "/system.slice/rpm.service"
    own.write_text("4:memory:/elsewhere\n")
    assert cgroups._own_cgroup(str(own)) is None
    assert cgroups._own_cgroup(str(tmp_path / "missing")) is None


def test_programs_get_cgroups_only_under_a_writable_delegated_cgroup(tmp_path, monkeypatch):
    from rpm.server.managed import cgroups

    service = tmp_path / "system.slice" / "rpm.service"
    service.mkdir(parents=True)
    monkeypatch.setattr(cgroups, "_cgroup2_mount", lambda: str(tmp_path))
    monkeypatch.setattr(cgroups, "_own_cgroup", lambda: "/system.slice/rpm.service")
    assert cgroups.delegated_root() is None, "no cgroup.procs: not a cgroup"
    (service / "cgroup.procs").write_text("")
    assert cgroups.delegated_root() == str(service)
    assert ProgramCgroups.create("test") is None, "no cgroup.kill: a kernel before 5.14"
    assert not (service / "rpm-test").exists(), "not left behind"
    (service / "rpm-test").mkdir()
    (service / "rpm-test" / "cgroup.kill").write_text("")
    made = ProgramCgroups.create("test")
    assert made.base == str(service / "rpm-test") and made.home == str(service)
    monkeypatch.setattr(cgroups, "_own_cgroup", lambda: None)
    assert cgroups.delegated_root() is None and ProgramCgroups.create("test") is None


def test_what_a_programs_cgroup_says(tree):
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    cgroups.prepare(1)
    program = tree / "rpm-test" / "program-1"
    assert cgroups.pids(1) == [] and not cgroups.populated(1) and cgroups.usage(1) == {}
    assert cgroups.anonymous_memory(1) is None
    # pids above Linux's PID_MAX_LIMIT: even a mutant that signals them reaches no process
    (program / "cgroup.procs").write_text(f"5000041\n{os.getpid()}\n5000043\n")
    (program / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    (program / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (program / "memory.current").write_text("4096\n")
    (program / "memory.stat").write_text("file 8192\nanon 12288\n")
    assert cgroups.pids(1) == [5_000_041, 5_000_043] and cgroups.populated(1)
    assert cgroups.usage(1) == {"cgroup_cpu": 2.5, "cgroup_memory": 4096}
    assert cgroups.anonymous_memory(1) == 12288
    (program / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    assert not cgroups.populated(1)
    cgroups.freeze(1, True)
    assert (program / "cgroup.freeze").read_text() == "1"
    cgroups.kill(1)
    assert (program / "cgroup.kill").read_text() == "1"


def test_only_empty_cgroups_are_removed_and_tidied_away(tree):
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    for managed_id in (1, 2):
        cgroups.prepare(managed_id)
    (tree / "rpm-test" / "program-2" / "cgroup.procs").write_text("5000042\n")  # still running
    (tree / "rpm-test" / "unrelated").mkdir()
    cgroups.remove(2)
    assert cgroups.exists(2)
    cgroups.tidy()
    assert not cgroups.exists(1) and cgroups.exists(2), "a program that outlives the server"
    assert (tree / "rpm-test" / "unrelated").exists()
    (tree / "rpm-test" / "program-2" / "cgroup.procs").unlink()
    (tree / "rpm-test" / "unrelated").rmdir()
    cgroups.remove(2)
    assert not cgroups.exists(2)
    cgroups.tidy()
    assert not (tree / "rpm-test").exists(), "its own cgroup too, once empty"


@pytest.fixture
def sleeper():
    """A real process of the test's own, killed and reaped whatever happens."""
    child = subprocess.Popen(["sleep", "30"])
    yield child
    if child.poll() is None:
        child.kill()
    child.wait(timeout=10)


def test_a_stuck_server_says_so_once_and_kills_the_programs_processes_one_by_one(
    tree, sleeper, monkeypatch
):
    said = []
    monkeypatch.setattr(cgroups_module.log, "critical", lambda text, **fields: said.append(fields))
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    cgroups.prepare(1)
    program = tree / "rpm-test" / "program-1"
    for refusing in (tree / "cgroup.procs", tree / "rpm-test" / "cgroup.procs"):
        refusing.mkdir()
    with cgroups.born_inside(1):
        pass
    assert said == [{"id": 1}], "said at once"
    with cgroups.born_inside(1):
        pass
    # the server, a process that has ended (a zombie), a pid no process has (above
    # PID_MAX_LIMIT), and the program's process
    zombie = subprocess.Popen(["true"])
    wait_until(lambda: read_stat(zombie.pid)[1][0] == b"Z")
    listed = (os.getpid(), zombie.pid, 5000042, sleeper.pid)
    (program / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in listed))
    cgroups.kill(1)
    zombie.wait(timeout=10)
    assert sleeper.wait(timeout=10) == -signal.SIGKILL, "killed by pid and start time"
    assert not (program / "cgroup.kill").exists(), "never the cgroup the server is in"
    assert said == [{"id": 1}], "said once, while it stays stuck"
    (tree / "rpm-test" / "cgroup.procs").rmdir()
    cgroups.kill(1)  # out again (in rpm-<instance>): the whole cgroup
    assert (program / "cgroup.kill").read_text() == "1"
    (tree / "rpm-test" / "cgroup.procs").unlink()  # (the server's pid, written there)
    (tree / "rpm-test" / "cgroup.procs").mkdir()
    with cgroups.born_inside(1):
        pass
    assert said == [{"id": 1}, {"id": 1}], "a new episode is said again"


def test_a_cgroup_that_cannot_be_made_or_written_is_no_error(tree):
    (tree / "not-a-directory").write_text("")
    assert not ProgramCgroups(str(tree / "not-a-directory")).prepare(1)
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    cgroups.freeze(9, True)  # no such program's cgroup (removed meanwhile)
    cgroups.kill(9)
    assert not cgroups.exists(9)


def test_a_programs_cgroup_is_made_even_where_rpm_instance_was_removed(tree):
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    (tree / "rpm-test").rmdir()  # an operator's tidying, between two STARTs
    assert cgroups.prepare(3) and cgroups.exists(3)


def test_the_v2_hierarchy_is_found_whatever_its_source_is_called(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 none rw\n")
    assert cgroups_module._cgroup2_mount(str(mountinfo)) == "/sys/fs/cgroup"


def test_where_the_kernel_clones_into_cgroups_the_server_never_steps_in(tree):
    """ready_to_spawn makes the program's cgroup and opens it for clone3: no visit, no lock
    held, the server's cgroup.procs never written."""
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    cgroups.clone_into = True
    into = cgroups.ready_to_spawn(4)
    try:
        assert os.path.samestat(os.fstat(into), os.stat(tree / "rpm-test" / "program-4"))
    finally:
        os.close(into)
    assert (
        not (tree / "cgroup.procs").exists() and not (tree / "rpm-test" / "cgroup.procs").exists()
    )
    assert cgroups.lock.acquire(blocking=False), "no visit holds the lock"
    cgroups.lock.release()


@pytest.mark.parametrize(
    ("code", "given_up"),
    [(errno.ENOSYS, True), (errno.EPERM, True), (errno.EINVAL, True), (errno.EACCES, False)],
)
def test_a_clone_the_kernel_refuses_is_done_with_the_server_visiting(tree, code, given_up):
    """No clone3 (or no CLONE_INTO_CGROUP, or a seccomp filter): the server steps in, now
    and from then on; a cgroup it may not clone into (EACCES): only this time."""
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    cgroups.clone_into = True
    cgroups.prepare(5)
    cgroups.clone_refused(5, IntoCgroupRefused(code))
    assert where_the_server_is(tree / "rpm-test" / "program-5")
    cgroups.end_visit()
    assert where_the_server_is(tree), "back once the batch is spawned"
    assert cgroups.clone_into is not given_up
    into = cgroups.ready_to_spawn(6)
    cgroups.end_visit()
    if into is not None:
        os.close(into)
    assert (into is None) is given_up, "visits it, or opens it to clone into"
