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
    assert spawn.args == ["sleep", "5"], "born in its cgroup: no helper joins it first"
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


def test_an_ended_run_is_recorded_and_its_empty_cgroup_removed(rig, tmp_path):
    cgroups = ProgramCgroups(str(tmp_path / "cgroups"))
    supervisor = Supervisor(
        rig.reactor, rig.store, rig.supervisor._launcher, rig.supervisor._outputs, 3, cgroups
    )
    first = started_on(supervisor, Start(("sleep", "5")))
    second = started_on(supervisor, Start(("sleep", "5")))
    (tmp_path / "cgroups" / "program-2" / "cgroup.events").write_text("populated 1\n")
    for stand_in in (tmp_path / "cgroups" / "program-1").iterdir():
        stand_in.unlink()  # cgroupfs's own files never stop an rmdir; these would
    rig.reactor.end(index=0)
    rig.reactor.end(index=1)
    assert ("end_run", first) in rig.store.calls and ("end_run", second) in rig.store.calls
    assert not cgroups.exists(1), "empty: removed"
    assert cgroups.exists(2), "a process of the program still runs in it: kept"


def started_on(supervisor, command):
    out = []
    supervisor.start(command).addBoth(out.append)
    return out[0]


def test_restart_counts_once_reopens_the_policy_and_keeps_it_going(rig):
    record = started(rig, Start(("false",), restart="on-failure"))
    managed = rig.supervisor.by_pid(record.pid)
    rig.supervisor.end_policy(managed)  # as RESTART's stop does
    rig.reactor.end(code=1)
    assert record.policy_ended and ("end_policy", record.id) in rig.store.calls
    rerun = []
    rig.supervisor.rerun(managed).addBoth(rerun.append)
    assert rerun == [record] and record.restarts == 1 and not record.policy_ended
    assert ("reopen_policy", record.id) in rig.store.calls
    assert rig.reactor.spawned[-1].args == ["false"]
    rig.reactor.end(code=1)
    rig.reactor.advance(120)
    assert len(rig.reactor.spawned) >= 3, "its policy restarts it again after a failure"


def test_stopping_a_program_between_runs_frees_its_name(rig):
    record = started(rig, Start(("false",), restart="always", name="web"))
    managed = rig.supervisor.by_pid(record.pid)
    rig.reactor.end(code=1)  # waiting to restart
    rig.supervisor.end_policy(managed)
    assert rig.supervisor.names.get("web") is None
    assert started(rig, Start(("sleep", "5"), name="web")).name == "web"


def test_only_the_last_ended_programs_stay_in_memory(rig, monkeypatch):
    from rpm.server.managed import supervisor as module

    monkeypatch.setattr(module, "KEEP_ENDED", 2)
    rig.supervisor.max_managed = 10
    records = [started(rig, Start(("true",))) for _ in range(3)]
    for index in range(3):
        rig.reactor.end(index=index)
    assert [r.id for r in rig.supervisor.records()] == [2, 3]
    assert rig.supervisor.by_pid(records[0].pid) is None
    assert rig.supervisor.by_pid(records[2].pid).record is records[2]


def test_an_observer_that_fails_is_logged_and_the_others_still_hear(rig):
    from twisted.logger import formatEvent, globalLogPublisher

    heard, logged = [], []

    def broken(event, record):
        raise RuntimeError("observer bug")

    rig.supervisor._observers.insert(0, broken)
    rig.supervisor.observe(lambda event, record: heard.append(event))
    globalLogPublisher.addObserver(logged.append)
    try:
        started(rig, Start(("sleep", "5")))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert heard == ["started"]
    assert "observer of started failed" in [formatEvent(event) for event in logged]


def test_what_the_supervisor_tells_about_a_program_while_it_runs_and_waits(rig):
    record = started(rig, Start(("false",), restart="always"))
    managed = rig.supervisor.by_pid(record.pid)
    assert rig.supervisor.managed_keys() == frozenset({(record.pid, record.started)})
    assert rig.supervisor.program_for_pid(record.pid) is managed
    assert rig.supervisor.program_for_pid(record.pid + 1) is None
    assert rig.supervisor.restart_epoch(managed) is None and rig.supervisor.restarting_rows() == []
    exited = []
    rig.supervisor.when_exited(record.pid, lambda: exited.append(record.pid))
    rig.supervisor.when_exited(record.pid + 1, lambda: exited.append("other"))
    rig.reactor.end(code=1)
    assert exited == [record.pid]
    assert rig.supervisor.program_for_pid(record.pid) is managed, "waiting to restart"
    due = managed.restart_call.getTime()  # the test's clock is its wall clock too
    assert due > rig.reactor.seconds() and rig.supervisor.restart_epoch(managed) == due
    [row] = rig.supervisor.restarting_rows()
    assert (row.pid, row.status, row.restart_at) == (record.pid, "restarting", due)
    assert rig.supervisor.managed_keys() == frozenset()
    rig.supervisor.end_policy(managed)
    assert rig.supervisor.program_for_pid(record.pid) is None, "ended for good"


def test_a_record_is_found_in_memory_first_then_in_the_registry(rig):
    record = started(rig, Start(("sleep", "5")))
    found = []
    rig.supervisor.record_for_pid(record.pid).addCallback(found.append)
    rig.supervisor.record_for_pid(4242).addCallback(found.append)
    assert found == [record, None]
    assert ("record_for_pid", 4242) in rig.store.calls
    assert ("record_for_pid", record.pid) not in rig.store.calls
