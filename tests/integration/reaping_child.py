"""Run by test_reaping.py as `python -m tests.integration.reaping_child <scenario>`, in a
process of its own: ExitReaper waits on every child of its process, so it is tried where
no other test's children are. Prints what it saw, as JSON."""

from __future__ import annotations

import json
import os
import signal
import sys

from twisted.internet import defer, protocol, reactor

from rpm.server.procs import reaper
from rpm.server.procs.identity import read_stat

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


def is_zombie(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat[1][0] == b"Z"


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
        ours = await reaped_ends(5, reaper.ExitReaper(reaper.Unadopted(), orphans=False))
        twisted = await reaped_ends(5, None)
    finally:
        for sleeper in sleepers:
            sleeper.transport.signalProcess("KILL")
        await defer.gatherResults([s.ended for s in sleepers]).addTimeout(TIMEOUT, reactor)
    return {"ours": ours, "twisted": twisted}


async def orphan(orphans: bool, unadopted: bool = False) -> dict:
    """A child that is not Twisted's exits (an orphan come back, or one spawned in another
    thread and put in Unadopted), then a child of Twisted's: is the first reaped, and did
    Twisted's own round run for the second?"""
    waiting = reaper.Unadopted()
    stranger = os.posix_spawn("/bin/true", ["true"], os.environ)
    if unadopted:
        waiting.pids.add(stranger)
    fallbacks = []
    exit_reaper = reaper.ExitReaper(
        waiting, orphans, fallback=lambda: fallbacks.append(1) or reaper.TWISTED_ROUND()
    )
    while not is_zombie(stranger):
        await deferLater(0.01)
    exit_reaper.install()
    try:
        victim = spawn("/bin/sleep", "60")
        victim.transport.signalProcess("TERM")
        await victim.ended.addTimeout(TIMEOUT, reactor)
        result = {"stranger_reaped": read_stat(stranger) is None, "fallbacks": bool(fallbacks)}
    finally:
        exit_reaper.uninstall()
    if not result["stranger_reaped"]:
        os.waitpid(stranger, 0)
    return result


def deferLater(seconds: float) -> defer.Deferred:
    ticked = defer.Deferred()
    reactor.callLater(seconds, ticked.callback, None)
    return ticked


SCENARIOS = {
    "many": many,
    "orphan": lambda: orphan(orphans=True),
    "orphan-not-ours": lambda: orphan(orphans=False),
    "unadopted": lambda: orphan(orphans=True, unadopted=True),
}


def main() -> None:
    signal.alarm(TIMEOUT * 3)  # whatever happens, this process ends
    outcome = {}

    async def run():
        try:
            outcome.update(await SCENARIOS[sys.argv[1]]())
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(run()))
    reactor.run()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
