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
