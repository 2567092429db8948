"""The shared sampler, driven by a Clock: fresh enough data, one scan at a time, idle when
nobody asks."""

import json
import time

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from rpm.clock import monotonic_timers
from rpm.rows import Row
from rpm.server.faults import as_deferred
from rpm.server.procs.sampler import Sampler
from rpm.wire import JSON


class FakeScans:
    """Scans that finish when the test says so."""

    def __init__(self):
        self.calls = []  # (managed keys, Deferred)

    def run(self, function, managed):
        waiter = defer.Deferred()
        self.calls.append((managed, waiter))
        return waiter

    def finish(self, rows=(), host=None):
        self.calls[-1][1].callback((list(rows), host))


def make(clock, scans, **kwargs):
    keys = frozenset({(5, 1.0)})
    return Sampler(clock, lambda managed: [], lambda: keys, run=scans.run, **kwargs)


def results(deferred):
    out = []
    deferred.addBoth(out.append)
    return out


def test_first_request_scans_and_waits_for_it():
    clock, scans = Clock(), FakeScans()
    sampler = make(clock, scans)
    got = results(sampler.fresh())
    assert len(scans.calls) == 1 and got == []
    assert scans.calls[0][0] == frozenset({(5, 1.0)})
    scans.finish([Row(1, 0, "root", "init", ("init",), "sleeping", 0.0, 1, 1.0, False)])
    assert got[0].seq == 1 and got[0].rows[0].pid == 1


def test_fresh_snapshots_are_served_from_memory():
    clock, scans = Clock(), FakeScans()
    sampler = make(clock, scans)
    sampler.fresh()
    scans.finish()
    clock.advance(0.2)
    got = results(sampler.fresh())
    assert got and got[0] is sampler.latest
    assert len(scans.calls) == 1


def test_continuous_refresh_while_asked_then_idle():
    clock, scans = Clock(), FakeScans()
    sampler = make(clock, scans, period=0.5, linger=2.0)
    sampler.fresh()
    scans.finish()
    for _ in range(3):
        clock.advance(0.5)
        scans.finish()
    assert len(scans.calls) == 4
    for _ in range(10):
        clock.advance(0.5)
        if scans.calls[-1][1].called is False:
            scans.finish()
    count = len(scans.calls)
    clock.advance(10)
    assert len(scans.calls) == count, "no scans once nobody asks"


def test_stale_data_waits_for_a_new_scan():
    clock, scans = Clock(), FakeScans()
    sampler = make(clock, scans, linger=0)
    sampler.fresh()
    scans.finish()
    clock.advance(1.5)
    got = results(sampler.fresh())
    assert got == [] and len(scans.calls) == 2
    scans.finish()
    assert got[0].seq == 2


def test_invalidate_makes_the_next_request_wait_for_a_newer_scan():
    clock, scans = Clock(), FakeScans()
    sampler = make(clock, scans, linger=0)
    sampler.fresh()
    scans.finish()
    clock.advance(0.1)
    sampler.invalidate()
    got = results(sampler.fresh())
    assert got == []
    scans.finish()
    assert got[0].seq == 2


def test_a_scan_started_before_invalidation_does_not_satisfy_it():
    clock, scans = Clock(), FakeScans()
    sampler = make(clock, scans, linger=0)
    got = results(sampler.fresh())
    clock.advance(0.1)
    sampler.invalidate()
    late = results(sampler.fresh())
    assert len(scans.calls) == 1, "one scan at a time"
    scans.finish()
    assert got and not late
    assert len(scans.calls) == 2
    scans.finish()
    assert late[0].seq == 2


def test_watchers_keep_the_table_fresh_at_their_pace():
    clock, scans = Clock(), FakeScans()
    sampler = make(clock, scans, period=0.5, linger=0)
    sampler.watch("w", 0.8)
    scans.finish()
    clock.advance(0.8)
    scans.finish()
    clock.advance(0.8)
    assert len(scans.calls) == 3
    sampler.unwatch("w")
    scans.finish()
    clock.advance(5)
    assert len(scans.calls) == 3


def test_a_failed_scan_fails_its_waiters_and_is_retried():
    clock, scans = Clock(), FakeScans()
    sampler = make(clock, scans, period=0.5)
    got = results(sampler.fresh())
    scans.calls[-1][1].errback(RuntimeError("boom"))
    assert got and got[0].check(RuntimeError)
    clock.advance(0.5)
    assert len(scans.calls) == 2
    scans.finish()


def test_a_scan_whose_thread_cannot_start_fails_its_waiters_and_the_next_one_runs():
    clock, scans = Clock(), FakeScans()
    refusals = [RuntimeError("can't start new thread")]  # then a thread can start again

    def run(function, managed):
        if refusals:
            raise refusals.pop()
        return scans.run(function, managed)

    sampler = Sampler(clock, lambda managed: [], frozenset, run=as_deferred(run), period=0.5)
    got = results(sampler.fresh())
    assert got and got[0].check(RuntimeError), "answered, not left waiting"
    later = results(sampler.fresh())
    scans.finish()
    assert later and later[0].seq == 1


def test_the_table_says_when_it_was_read_by_the_time_of_day_not_the_timers_clock():
    clock, scans = Clock(), FakeScans()
    monotonic_timers(clock)  # as in the server: its timers run on a monotonic clock
    sampler = make(clock, scans)
    got = results(sampler.fresh())
    scans.finish()
    assert got[0].taken_at == pytest.approx(time.monotonic(), abs=5)
    assert json.loads(got[0].table_event(JSON))["sampled"] == pytest.approx(time.time(), abs=5)


def test_stop_cancels_the_schedule():
    clock, scans = Clock(), FakeScans()
    sampler = make(clock, scans)
    sampler.fresh()
    scans.finish()
    sampler.stop()
    clock.advance(5)
    assert len(scans.calls) == 1
    assert not clock.getDelayedCalls()
