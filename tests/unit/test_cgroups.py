"""Programs' cgroups on a stand-in cgroupfs (plain files): how a program is born in its
cgroup, and why a server that could not step back out never kills or freezes itself."""

from __future__ import annotations

import os

import pytest

from rpm.server.managed.cgroups import ProgramCgroups


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


def test_where_the_server_cannot_enter_the_program_is_born_beside_it(tree):
    cgroups = ProgramCgroups(str(tree / "rpm-test"))
    cgroups.prepare(1)
    (tree / "rpm-test" / "program-1" / "cgroup.procs").mkdir()
    with cgroups.born_inside(1):
        assert not (tree / "cgroup.procs").exists(), "never left its own cgroup"
    assert not (tree / "cgroup.procs").exists()
