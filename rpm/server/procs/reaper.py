"""The server as a child subreaper (Linux's prctl PR_SET_CHILD_SUBREAPER): a process that a
managed program orphans (a daemon that double-forked) is re-parented to the server rather
than to init, so it stays in the server's tree, and once it exits the server reaps it.
Twisted reaps only the children it spawned; the rest are reaped here, by pid."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from twisted.internet.task import LoopingCall

from rpm.server.procs.identity import children_of, read_stat
from rpm.server.procs.libc import LIBC

PR_SET_CHILD_SUBREAPER = 36
REAP_EVERY = 1.0


def become_subreaper() -> bool:
    """Make this process a child subreaper; False where the system does not allow it."""
    try:
        return LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except AttributeError:  # no prctl: not Linux
        return False


def zombie_children(parent: int) -> list[int]:
    """Children of parent that have exited and wait to be reaped."""
    return [child for child in children_of(parent) if _is_zombie(child)]


def _is_zombie(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat[1][0] == b"Z"


class Unadopted:
    """Children spawned in another thread than the reactor's, which Twisted does not reap
    yet: the spawning thread holds `lock` from the spawn until their pid is in `pids`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pids: set[int] = set()


class OrphanReaper:
    """Every second, reap exited children that Twisted does not know (adopted orphans)."""

    def __init__(self, reactor, spawned: Callable[[], set[int]], unadopted: Unadopted):
        self._spawned = spawned  # pids Twisted spawned, which it reaps itself
        self._unadopted = unadopted  # and those it is about to be told of
        self._loop = LoopingCall(self.reap)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(REAP_EVERY, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def reap(self) -> list[int]:
        """Reap what can be reaped now; returns their pids. Not while a child is being
        spawned in another thread (its pid not known yet): the next round will."""
        if not self._unadopted.lock.acquire(blocking=False):
            return []
        try:
            ours = self._spawned() | self._unadopted.pids
            reaped = []
            for pid in zombie_children(os.getpid()):
                if pid in ours:
                    continue
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        reaped.append(pid)
            return reaped
        finally:
            self._unadopted.lock.release()
