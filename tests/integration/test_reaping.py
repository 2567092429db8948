"""Reaping at SIGCHLD (reaper.ExitReaper): only the children that exited, where Twisted
waits on every child it runs; never a child another thread has spawned and Twisted not
taken over yet. Each scenario runs in a process of its own (reaping_child.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet import process as twisted_process
from twisted.internet.task import Clock

from rpm.server.procs import reaper

ROOT = Path(__file__).resolve().parents[2]


def scenario(name: str) -> dict:
    """Run one scenario of reaping_child.py; its process group is killed whatever happens."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.reaping_child", name],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        output, _ = child.communicate(timeout=60)
    finally:
        assert child.pid > 1
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == 0, output
    return json.loads(output)


def test_an_exit_among_a_hundred_children_costs_a_waitpid_not_a_hundred():
    counts = scenario("many")
    assert counts["ours"] <= 2 * 5, "one waitpid for each of the five exits (two at most)"
    assert counts["twisted"] >= 100, "Twisted's own round waits on all 105 children"


def test_an_orphan_is_reaped_at_once_where_the_server_is_its_subreaper():
    assert scenario("orphan") == {"stranger_reaped": True, "fallbacks": False}


def test_a_child_that_is_not_twisteds_is_left_alone_where_orphans_are_not_ours():
    """It hides any exit behind it from waitid: Twisted's own round reaps those instead."""
    assert scenario("orphan-not-ours") == {"stranger_reaped": False, "fallbacks": True}


def test_a_child_spawned_in_another_thread_that_exited_is_taken_over_at_once():
    """Its take-over, waiting for the START's answer, is done by the reaper (so Twisted's
    Process reaps it), and the exits behind it are reaped without Twisted's own round."""
    assert scenario("unadopted") == {"left": [], "fallbacks": False}


def test_an_orphan_left_by_a_round_cut_short_is_reaped_within_the_next_second():
    outcome = scenario("cut-short")
    assert outcome == {"stranger_left": True, "fallbacks": True, "reaped_within_2s": True}


@pytest.fixture
def twisted_round():
    yield
    twisted_process.reapAllProcesses = reaper.TWISTED_ROUND
    reaper.ExitReaper._running.clear()


def test_twisteds_round_is_back_once_the_last_server_of_the_process_stops(twisted_round):
    clock = Clock()
    first = reaper.ExitReaper(clock, reaper.Unadopted(), orphans=True)
    second = reaper.ExitReaper(clock, reaper.Unadopted(), orphans=False)
    first.install()
    second.install()
    assert len(clock.getDelayedCalls()) == 1, "a round every second, for orphans only"
    first.uninstall()
    assert twisted_process.reapAllProcesses == second.reap and not clock.getDelayedCalls()
    second.uninstall()
    assert twisted_process.reapAllProcesses is reaper.TWISTED_ROUND


def test_a_child_is_taken_over_once_whoever_asks_first():
    """The reaper (its child exited) and the START's answer may both ask."""
    waiting, taken = reaper.Unadopted(), []
    waiting.pending[4242] = lambda: taken.append(4242)
    waiting.adopt(4242)
    waiting.adopt(4242)
    assert taken == [4242] and waiting.pending == {}
