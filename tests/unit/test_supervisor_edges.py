"""The supervisor's durability bookkeeping at its edges: what the registry is given, ids that
never repeat, capacity counting STARTs in flight, cgroups killed with an uncommitted run, and
restarts that cannot run yet."""

# ruff: noqa: F811 (each test takes the supervisor tests' `rig` fixture, imported below)

import sqlite3

import pytest
from twisted.internet import defer

from rpm.commands import Start
from rpm.errors import LimitReached
from rpm.server.managed.cgroups import ProgramCgroups
from rpm.server.managed.supervisor import Supervisor
from tests.unit.test_supervisor import rig, started  # noqa: F401 (the fixture)


def test_the_registry_is_given_the_record_itself_before_and_after_the_spawn(rig):
    record = started(rig, Start(("sleep", "5")))
    assert rig.store.calls[:2] == [("add_program", record), ("add_run", record)]


def test_ids_and_run_ids_are_never_handed_out_twice(rig):
    first = started(rig, Start(("false",), restart="always"))
    second = started(rig, Start(("sleep", "5")))
    assert (first.id, second.id) == (1, 2) and (first.run_id, second.run_id) == (1, 2)
    rig.reactor.end(index=0, code=1)
    rig.reactor.advance(1)
    assert first.run_id == 3 and first.restarts == 1
    assert started(rig, Start(("sleep", "5"))).id == 3


def test_starts_waiting_for_their_record_count_against_max_managed(rig):
    pending = defer.Deferred()
    rig.store.add_program = lambda record: pending
    for _ in range(3):
        rig.supervisor.start(Start(("sleep", "5")))
    with pytest.raises(LimitReached, match=r"^3 managed processes are running and 0 waiting"):
        rig.supervisor.start(Start(("sleep", "5")))


def test_a_run_whose_pid_cannot_be_committed_is_killed_with_its_cgroup(rig, tmp_path):
    cgroups = ProgramCgroups(str(tmp_path / "cgroups"))
    supervisor = Supervisor(
        rig.reactor, rig.store, rig.supervisor._launcher, rig.supervisor._outputs, 3, cgroups
    )
    rig.store.add_run = lambda record: defer.fail(sqlite3.OperationalError("disk I/O error"))
    answer = supervisor.start(Start(("sleep", "5")))
    answer.addErrback(lambda failure: None)
    spawn = rig.reactor.spawned[0]
    procs = tmp_path / "cgroups" / "program-1" / "cgroup.procs"
    assert spawn.args[:2] == ["/bin/sh", "-c"] and spawn.args[3] == str(procs)
    assert (tmp_path / "cgroups" / "program-1" / "cgroup.kill").read_text() == "1"
    assert spawn.protocol.transport.signals == ["KILL"]


def test_a_restart_whose_program_vanished_waits_and_says_why(rig, tmp_path):
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\nexit 1\n")
    program.chmod(0o755)
    record = started(rig, Start((str(program),), restart="always"))
    program.unlink()
    rig.reactor.end(code=1)
    rig.reactor.advance(1)
    managed = rig.supervisor.by_pid(record.pid)
    assert len(rig.reactor.spawned) == 1 and "does not exist" in managed.blocked
    assert record.ended_at == 1.0, "the failed restart counts as the latest end"
    program.write_text("#!/bin/sh\nexit 1\n")
    program.chmod(0o755)
    rig.reactor.advance(120)
    assert len(rig.reactor.spawned) == 2 and managed.blocked is None


def test_a_restart_runs_the_program_resolved_again(rig):
    record = started(rig, Start(("false",), env=(("PATH", "/nowhere"),), restart="always"))
    rig.reactor.end(code=1)
    rig.reactor.advance(1)
    assert record.restarts == 1
    assert rig.reactor.spawned[-1].executable.endswith("/false")


def test_a_restart_whose_pid_cannot_be_committed_is_killed(rig):
    record = started(rig, Start(("false",), restart="always"))
    rig.store.add_run = lambda record: defer.fail(sqlite3.OperationalError("database is locked"))
    rig.reactor.end(code=1)
    rig.reactor.advance(1)
    assert record.restarts == 1
    assert rig.reactor.spawned[-1].protocol.transport.signals == ["KILL"]
