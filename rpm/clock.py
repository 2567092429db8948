"""Timers that a step of the wall clock cannot stall, and the wall clock for the times rpm
records and shows.

Twisted's reactor times its calls by the wall clock (time.time). Set back an hour (NTP's
first correction at boot, `date -s`, a virtual machine restored from a snapshot), every
pending call waits an hour longer: restarts, STOP's escalation to SIGKILL, the process
table's refresh, a client's timeouts and reconnects. rpm's programs make the reactor's
clock monotonic before anything is scheduled, and take the times they record (a program's
start and end, an audit record) from wall_time.
"""

from __future__ import annotations

import time


def monotonic_timers(reactor) -> None:
    """Make the reactor's clock (seconds(), which times every call) monotonic; calls already
    scheduled keep the time they have left."""
    if is_monotonic(reactor):
        return
    shift = time.monotonic() - reactor.seconds()
    for call in reactor.getDelayedCalls():  # one shift for all: their order is kept
        call.time += shift
        call.seconds = time.monotonic
    reactor.seconds = time.monotonic


def is_monotonic(reactor) -> bool:
    return vars(reactor).get("seconds") is time.monotonic


def wall_time(reactor) -> float:
    """The time of day, in epoch seconds: the system's clock where the reactor's was made
    monotonic, else the reactor's own (the wall clock, or a test's Clock)."""
    return time.time() if is_monotonic(reactor) else reactor.seconds()
