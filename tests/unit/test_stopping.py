"""STOP's escalation on a Clock: SIGTERM, SIGKILL after grace, an answer once gone."""

import signal

from twisted.internet.task import Clock

from rpm.errors import NoSuchProcess, NotPermitted
from rpm.server.procs.stopping import Escalation


class FakeProcess:
    def __init__(self, dies_on=(signal.SIGTERM, signal.SIGKILL), refuse=False):
        self.received = []
        self.dies_on = dies_on
        self.refuse = refuse
        self.alive = True

    def send(self, signum):
        if self.refuse:
            raise NotPermitted("nope")
        if not self.alive:
            raise NoSuchProcess("gone")
        self.received.append(signum)
        if signum in self.dies_on:
            self.alive = False

    def gone(self, killed):
        return not self.alive


def run(process, grace=5.0, kill_timeout=5.0):
    clock = Clock()
    escalation = Escalation(clock, 42, process.send, process.gone, grace, kill_timeout)
    outcome = []
    escalation.result().addBoth(outcome.append)
    escalation.start()
    return clock, escalation, outcome


def test_a_process_that_obeys_sigterm_is_reported_stopped_by_sigterm():
    process = FakeProcess()
    clock, _, outcome = run(process)
    clock.advance(0.05)
    assert outcome == [signal.SIGTERM]
    assert process.received == [signal.SIGTERM]


def test_sigcont_follows_sigterm_so_a_paused_process_can_act_on_it():
    process = FakeProcess(dies_on=())
    run(process)
    assert process.received == [signal.SIGTERM, signal.SIGCONT]


def test_a_process_ignoring_sigterm_gets_sigkill_exactly_at_the_grace_period():
    process = FakeProcess(dies_on=(signal.SIGKILL,))
    clock, _, outcome = run(process, grace=2.0)
    clock.pump([0.05] * 39)
    assert signal.SIGKILL not in process.received and outcome == []
    clock.pump([0.05] * 2)
    assert process.received[-1] == signal.SIGKILL
    clock.advance(0.05)
    assert outcome == [signal.SIGKILL]


def test_zero_grace_kills_at_once():
    process = FakeProcess(dies_on=(signal.SIGKILL,))
    clock, _, outcome = run(process, grace=0)
    assert process.received == [signal.SIGTERM, signal.SIGCONT, signal.SIGKILL]
    clock.advance(0.05)
    assert outcome == [signal.SIGKILL]


def test_a_process_that_survives_sigkill_is_reported_after_the_kill_timeout():
    process = FakeProcess(dies_on=())
    clock, _, outcome = run(process, grace=1.0, kill_timeout=2.0)
    clock.pump([0.05] * 80)
    assert len(outcome) == 1 and outcome[0].check(NotPermitted)


def test_refusal_by_the_system_is_reported_at_once():
    clock, _, outcome = run(FakeProcess(refuse=True))
    assert outcome[0].check(NotPermitted)
    assert not clock.getDelayedCalls()


def test_every_caller_gets_the_same_outcome_and_poke_checks_at_once():
    process = FakeProcess(dies_on=())
    clock, escalation, outcome = run(process)
    later = []
    escalation.result().addBoth(later.append)
    process.alive = False
    escalation.poke()
    assert outcome == later == [signal.SIGTERM]
    assert escalation.finished
    afterwards = []
    escalation.result().addBoth(afterwards.append)
    assert afterwards == [signal.SIGTERM]
    assert not clock.getDelayedCalls()


def test_sigkill_lands_at_the_grace_even_between_polls():
    process = FakeProcess(dies_on=(signal.SIGKILL,))
    clock, _, _ = run(process, grace=0.12)
    clock.advance(0.05)
    clock.advance(0.05)
    assert signal.SIGKILL not in process.received
    clock.advance(0.02)
    assert process.received[-1] == signal.SIGKILL


def test_surviving_sigkill_is_reported_with_the_pid_only_after_the_kill_timeout():
    process = FakeProcess(dies_on=())
    clock, _, outcome = run(process, grace=1.0, kill_timeout=2.0)
    clock.pump([0.05] * 50)  # 2.5 s: killed at 1 s, and still within the kill timeout
    assert outcome == []
    clock.pump([0.05] * 11)
    assert len(outcome) == 1 and outcome[0].check(NotPermitted)
    assert outcome[0].getErrorMessage() == (
        "pid 42 survived SIGKILL for 2 s (uninterruptible sleep?)"
    )


def test_gone_is_asked_whether_sigkill_was_sent():
    asked = []
    process = FakeProcess(dies_on=(signal.SIGKILL,))

    def gone(killed):
        asked.append(killed)
        return not process.alive

    clock = Clock()
    escalation = Escalation(clock, 42, process.send, gone, 0.1, 5.0)
    escalation.start()
    clock.pump([0.05] * 4)
    assert asked[0] is False and asked[-1] is True and escalation.finished


def test_a_sigkill_the_system_refuses_is_the_outcome():
    class RefusesKill(FakeProcess):
        def send(self, signum):
            if signum == signal.SIGKILL:
                raise NotPermitted("the system refused SIGKILL to pid 42")
            super().send(signum)

    clock, _, outcome = run(RefusesKill(dies_on=()), grace=0.1)
    clock.pump([0.05] * 3)
    assert len(outcome) == 1 and outcome[0].check(NotPermitted)
    assert "SIGKILL" in outcome[0].getErrorMessage()
