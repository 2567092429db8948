"""Run by test_reaping.py as `python -m tests.integration.reaping_child <scenario>`, in a
process of its own: ExitReaper waits on every child of its process, so it is tried where
no other test's children are. Prints what it saw, as JSON."""

from __future__ import annotations

import json
import os
import signal
import sys

from twisted.internet import defer, protocol, reactor

from rpm.server.managed.session import spawn_in_session
from rpm.server.procs import reaper
from rpm.server.procs.identity import read_stat
from tests.support import is_zombie

TIMEOUT = 20


class Ends(protocol.ProcessProtocol):
    def __init__(self):
        self.ended = defer.Deferred()

    def processEnded(self, reason) -> None:
        self.ended.callback(None)


def spawn(*argv: str) -> Ends:
    """A child without pipes, so that only SIGCHLD tells of its end (no pipe closing)."""
    ends = Ends()
    reactor.spawnProcess(ends, argv[0], list(argv), env=None, childFDs={})
    return ends


async def until(condition) -> None:
    """Wait for condition() to hold (TIMEOUT at most)."""
    deadline = reactor.seconds() + TIMEOUT
    while not condition():
        if reactor.seconds() > deadline:
            raise TimeoutError("waited in vain")
        await after(0.01)


def after(seconds: float) -> defer.Deferred:
    ticked = defer.Deferred()
    reactor.callLater(seconds, ticked.callback, None)
    return ticked


class CountedWaitpid:
    """os.waitpid, counted (Twisted's Process calls it through the os module)."""

    def __init__(self):
        self.calls, self._waitpid = 0, os.waitpid

    def __call__(self, pid, options):
        self.calls += 1
        return self._waitpid(pid, options)


async def reaped_ends(exits: int, exit_reaper: reaper.ExitReaper | None) -> int:
    """waitpid calls made while `exits` children end among the running ones."""
    if exit_reaper is not None:
        exit_reaper.install()
    ends = [spawn("/bin/sleep", "60") for _ in range(exits)]
    counted = os.waitpid = CountedWaitpid()
    try:
        for end in ends:
            end.transport.signalProcess("TERM")
        await defer.gatherResults([e.ended for e in ends]).addTimeout(TIMEOUT, reactor)
    finally:
        os.waitpid = counted._waitpid
        if exit_reaper is not None:
            exit_reaper.uninstall()
    return counted.calls


async def many() -> dict:
    """Five exits among a hundred running children, reaped by ExitReaper, then Twisted."""
    sleepers = [spawn("/bin/sleep", "60") for _ in range(100)]
    try:
        exit_reaper = reaper.ExitReaper(reactor, reaper.Unadopted(), orphans=False)
        ours = await reaped_ends(5, exit_reaper)
        twisted = await reaped_ends(5, None)
    finally:
        for sleeper in sleepers:
            sleeper.transport.signalProcess("KILL")
        await defer.gatherResults([s.ended for s in sleepers]).addTimeout(TIMEOUT, reactor)
    return {"ours": ours, "twisted": twisted}


async def exited_stranger(waiting: reaper.Unadopted, orphans: bool, fallbacks: list):
    """A child that is not Twisted's, exited; and an ExitReaper installed after its end."""
    stranger = os.posix_spawn("/bin/true", ["true"], os.environ)
    exit_reaper = reaper.ExitReaper(
        reactor, waiting, orphans, fallback=lambda: fallbacks.append(1) or reaper.TWISTED_ROUND()
    )
    await until(lambda: is_zombie(stranger))
    await after(0.1)  # its SIGCHLD is handled (by Twisted's round) before this one is in
    exit_reaper.install()
    return stranger, exit_reaper


def ended_by_term() -> Ends:
    """A child of Twisted's, sent SIGTERM: it ends after the stranger."""
    victim = spawn("/bin/sleep", "60")
    victim.transport.signalProcess("TERM")
    return victim


async def orphan(orphans: bool) -> dict:
    """A child that is not Twisted's exits, then a child of Twisted's: is the first reaped
    (as an orphan come back), and did Twisted's own round run for the second?"""
    fallbacks: list = []
    stranger, exit_reaper = await exited_stranger(reaper.Unadopted(), orphans, fallbacks)
    try:
        await ended_by_term().ended.addTimeout(TIMEOUT, reactor)
        result = {"stranger_reaped": read_stat(stranger) is None, "fallbacks": bool(fallbacks)}
    finally:
        exit_reaper.uninstall()
    if not result["stranger_reaped"]:
        os.waitpid(stranger, 0)
    return result


async def unadopted() -> dict:
    """A child spawned in another thread exits before it is taken over, then a child of
    Twisted's: the reaper takes the first over at once (Twisted's Process reaps it), then
    reaps the second, without Twisted's own round."""
    fallbacks: list = []
    waiting = reaper.Unadopted()
    stranger, exit_reaper = await exited_stranger(waiting, True, fallbacks)
    adopted = Ends()
    waiting.pending[stranger] = lambda: spawn_in_session(
        reactor, adopted, "/bin/true", ["true"], None, childFDs={}, spawned=stranger
    )
    try:
        victim = ended_by_term()
        await defer.gatherResults([adopted.ended, victim.ended]).addTimeout(TIMEOUT, reactor)
        result = {"left": sorted(waiting.pending), "fallbacks": bool(fallbacks)}
    finally:
        exit_reaper.uninstall()
    return result


async def cut_short() -> dict:
    """A round cut short by a spawn under way in another thread leaves an orphan, and
    Twisted's own round runs; the next second's round reaps it."""
    fallbacks: list = []
    waiting = reaper.Unadopted()
    stranger, exit_reaper = await exited_stranger(waiting, True, fallbacks)
    try:
        with waiting.lock:  # a spawn under way
            victim = ended_by_term()
            await victim.ended.addTimeout(TIMEOUT, reactor)
        result = {"stranger_left": is_zombie(stranger), "fallbacks": bool(fallbacks)}
        began = reactor.seconds()
        await until(lambda: read_stat(stranger) is None)
        result["reaped_within_2s"] = reactor.seconds() - began < 2 * reaper.REAP_EVERY
    finally:
        exit_reaper.uninstall()
    return result


SCENARIOS = {
    "many": many,
    "orphan": lambda: orphan(orphans=True),
    "orphan-not-ours": lambda: orphan(orphans=False),
    "unadopted": unadopted,
    "cut-short": cut_short,
}


def main() -> None:
    signal.alarm(TIMEOUT * 3)  # whatever happens, this process ends
    outcome = {}

    async def run():
        try:
            outcome.update(await SCENARIOS[sys.argv[1]]())
        except Exception as err:  # the test shows it, in place of what was expected
            outcome["error"] = repr(err)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(run()))
    reactor.run()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
