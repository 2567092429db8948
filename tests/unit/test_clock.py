"""rpm.clock: the reactor's clock made monotonic, calls already scheduled kept, and the time
of day for what rpm records."""

from __future__ import annotations

import time

import pytest
from twisted.internet.task import Clock

from rpm.clock import is_monotonic, monotonic_timers, wall_time


@pytest.fixture
def wall_reactor():
    """A reactor whose clock says a time of day, as Twisted's does, with two calls pending."""
    clock = Clock()
    clock.advance(1_700_000_000.0)
    soon, later = clock.callLater(5, lambda: None), clock.callLater(60, lambda: None)
    return clock, soon, later


def test_calls_already_scheduled_keep_the_time_they_have_left(wall_reactor):
    clock, soon, later = wall_reactor
    assert not is_monotonic(clock) and wall_time(clock) == 1_700_000_000.0
    monotonic_timers(clock)
    assert is_monotonic(clock) and clock.seconds is time.monotonic
    now = time.monotonic()
    assert soon.getTime() - now == pytest.approx(5, abs=0.5)
    assert later.getTime() - now == pytest.approx(60, abs=0.5)
    assert soon.seconds is time.monotonic and later.seconds is time.monotonic
    assert clock.callLater(1, lambda: None).getTime() == pytest.approx(now + 1, abs=0.5)


def test_making_it_monotonic_twice_moves_nothing(wall_reactor):
    clock, soon, _ = wall_reactor
    monotonic_timers(clock)
    due = soon.getTime()
    monotonic_timers(clock)
    assert soon.getTime() == due


def test_the_time_of_day_comes_from_the_system_once_the_reactor_is_monotonic(wall_reactor):
    clock, _, _ = wall_reactor
    monotonic_timers(clock)
    assert wall_time(clock) == pytest.approx(time.time(), abs=1)
    assert abs(wall_time(clock) - clock.seconds()) > 1000, "not the monotonic clock"
