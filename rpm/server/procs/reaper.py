"""The server as a child subreaper (Linux's prctl PR_SET_CHILD_SUBREAPER): a process that a
managed program orphans (a daemon that double-forked) is re-parented to the server rather
than to init, so it stays in the server's tree, and once it exits the server reaps it.
Twisted reaps only the children it spawned; the rest are reaped here, by pid."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Callable

from twisted.internet.task import LoopingCall

from rpm.server.procs.identity import children_of, read_stat

PR_SET_CHILD_SUBREAPER = 36
REAP_EVERY = 1.0


def become_subreaper() -> bool:
    """Make this process a child subreaper; False where the system does not allow it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def zombie_children(parent: int) -> list[int]:
    """Children of parent that have exited and wait to be reaped."""
    return [child for child in children_of(parent) if _is_zombie(child)]


def _is_zombie(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat[1][0] == b"Z"


class OrphanReaper:
    """Every second, reap exited children that Twisted does not know (adopted orphans)."""

    def __init__(self, reactor, spawned: Callable[[], set[int]]):
        self._spawned = spawned  # pids Twisted spawned, which it reaps itself
        self._loop = LoopingCall(self.reap)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(REAP_EVERY, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def reap(self) -> list[int]:
        """Reap what can be reaped now; returns their pids."""
        reaped = []
        ours = self._spawned()
        for pid in zombie_children(os.getpid()):
            if pid in ours:
                continue
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped.append(pid)
        return reaped
