"""Taking over a registry after a restart, with real processes: adopted only by pid and start
time, closed with the exit status the kernel still holds, restarted as the policy says."""

# ruff: noqa: F811 (each test takes the supervisor tests' `rig` fixture, imported below)

import signal
import subprocess

import pytest

from rpm.server.managed import adoption
from rpm.server.managed.adoption import take_over
from rpm.server.managed.records import ManagedRecord
from rpm.server.procs import identity
from rpm.server.procs.identity import start_time
from tests.support import pid_alive, wait_until
from tests.unit.test_supervisor import rig  # noqa: F401 (the supervisor tests' fixture)


def record_of(child, restart="no", **fields) -> ManagedRecord:
    """The registry's record of a run: our child, as a previous server started it."""
    started = start_time(child.pid)
    return ManagedRecord(
        4,
        ("sleep", "60"),
        None,
        {},
        restart,
        1.0,
        run_id=2,
        pid=child.pid,
        started=started,
        **fields,
    )


def ended_and_unreaped(child) -> None:
    child.send_signal(signal.SIGTERM)
    wait_until(lambda: not pid_alive(child.pid), timeout=10, interval=0.02)


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "polled"])
def test_a_run_still_going_with_its_start_time_is_adopted_and_its_end_read(
    rig,
    sleeper,
    monkeypatch,
    pidfds,
):
    if not pidfds or not identity.HAVE_PIDFD:
        monkeypatch.setattr(adoption.PidfdExitWatch, "maybe", lambda *args: None)
    record = record_of(sleeper)
    take_over(rig.reactor, rig.supervisor, [record], next_id=5, next_run_id=3)
    assert [managed.record for managed in rig.supervisor.running()] == [record]
    assert rig.supervisor.is_managed(sleeper.pid, record.started)
    ended_and_unreaped(sleeper)
    if pidfds and identity.HAVE_PIDFD:
        [watch] = rig.reactor.readers
        watch.doRead()  # the pidfd is readable once the process ended
    else:
        rig.reactor.advance(adoption.POLL_SECONDS)
    assert record.ended and record.exit_known and record.exit_signal == signal.SIGTERM
    assert rig.events[-1] == ("exited", sleeper.pid, None)
    assert rig.supervisor.running() == []


def test_a_run_whose_pid_lives_with_another_start_time_is_closed_not_adopted(rig, sleeper):
    record = record_of(sleeper)
    record.started -= 5.0  # the pid was reused since
    take_over(rig.reactor, rig.supervisor, [record], next_id=5, next_run_id=3)
    assert rig.supervisor.running() == [] and record.ended and not record.exit_known
    assert pid_alive(sleeper.pid), "the stranger with the pid is left alone"


def test_an_ended_run_is_not_adopted_even_if_its_process_looks_alive(rig, sleeper):
    record = record_of(sleeper, ended_at=3.0, exit_code=0, exit_known=True)
    take_over(rig.reactor, rig.supervisor, [record], next_id=5, next_run_id=3)
    assert rig.supervisor.running() == [] and rig.reactor.spawned == []


def test_a_run_that_ended_unreaped_while_no_server_ran_keeps_its_exit_status(rig, sleeper):
    record = record_of(sleeper)
    ended_and_unreaped(sleeper)
    take_over(rig.reactor, rig.supervisor, [record], next_id=5, next_run_id=3)
    assert record.ended and record.exit_known and record.exit_signal == signal.SIGTERM


@pytest.mark.parametrize(
    ("restart", "policy_ended", "restarts"),
    [
        ("always", False, True),
        ("on-failure", False, True),
        ("no", False, False),
        ("always", True, False),
    ],
)
def test_ended_programs_restart_only_as_their_policy_says(rig, restart, policy_ended, restarts):
    record = ManagedRecord(
        4,
        ("true",),
        None,
        {},
        restart,
        1.0,
        run_id=2,
        pid=2**22 - 7,
        started=5.0,
        ended_at=6.0,
        exit_code=1,
        exit_known=True,
        policy_ended=policy_ended,
    )
    take_over(rig.reactor, rig.supervisor, [record], next_id=5, next_run_id=3)
    rig.reactor.advance(120)
    assert len(rig.reactor.spawned) == (1 if restarts else 0)


def test_a_polled_run_is_not_taken_for_ended_while_it_runs(rig, sleeper, monkeypatch):
    monkeypatch.setattr(adoption.PidfdExitWatch, "maybe", lambda *args: None)
    record = record_of(sleeper)
    take_over(rig.reactor, rig.supervisor, [record], next_id=5, next_run_id=3)
    rig.reactor.advance(adoption.POLL_SECONDS * 3)
    assert not record.ended and rig.supervisor.running()
    rig.supervisor.running()[0].exit_watch.cancel()


def test_an_exit_code_left_by_a_run_that_ended_unwatched_is_kept(rig, spawned):
    child = subprocess.Popen(["sh", "-c", "read line; exit 3"], stdin=subprocess.PIPE)
    spawned.append(child.pid)
    record = record_of(child)
    child.stdin.close()
    wait_until(lambda: not pid_alive(child.pid), timeout=10, interval=0.02)
    take_over(rig.reactor, rig.supervisor, [record], next_id=5, next_run_id=3)
    assert (record.exit_code, record.exit_signal, record.exit_known) == (3, None, True)
    child.wait(timeout=10)


def test_a_run_found_by_its_marker_is_watched_until_it_ends(rig, sleeper):
    cut_short = ManagedRecord(4, ("sleep", "60"), None, {}, "no", 1.0)
    found = (sleeper.pid, start_time(sleeper.pid))
    take_over(
        rig.reactor,
        rig.supervisor,
        [cut_short],
        next_id=5,
        next_run_id=3,
        find=lambda markers: {"rpm.4": found},
    )
    assert [m.record for m in rig.supervisor.running()] == [cut_short]
    ended_and_unreaped(sleeper)
    if identity.HAVE_PIDFD:
        [watch] = rig.reactor.readers
        watch.doRead()
    else:
        rig.reactor.advance(adoption.POLL_SECONDS)
    assert cut_short.ended and cut_short.exit_signal == signal.SIGTERM


def test_a_start_cut_short_before_it_ran_is_logged(rig):
    from twisted.logger import formatEvent, globalLogPublisher

    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        never = ManagedRecord(5, ("sleep", "9"), None, {}, "no", 1.0)
        take_over(rig.reactor, rig.supervisor, [never], 6, 3, find=lambda markers: {})
    finally:
        globalLogPublisher.removeObserver(logged.append)
    text = [formatEvent(event) for event in logged]
    assert "the START of ('sleep', '9') was cut short before it ran" in text
