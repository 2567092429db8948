"""Reaping the server's children. At each SIGCHLD, only those that exited (ExitReaper),
where Twisted calls waitpid once for every child it runs. And the server as a child
subreaper (Linux's prctl PR_SET_CHILD_SUBREAPER): a process that a managed program orphans
(a daemon that double-forked) is re-parented to the server rather than to init, so it stays
in the server's tree, and once it exits the server reaps it. Twisted reaps only the
children it spawned; the rest are reaped here, by pid."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from twisted.internet import process as twisted_process
from twisted.internet.task import LoopingCall

from rpm.server.procs.identity import children_of, read_stat
from rpm.server.procs.libc import LIBC

PR_SET_CHILD_SUBREAPER = 36
REAP_EVERY = 1.0
TWISTED_ROUND = twisted_process.reapAllProcesses  # a waitpid for every child Twisted runs


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


def exited_child() -> int | None:
    """A child that exited and waits to be reaped (left so: WNOWAIT), or None."""
    try:
        exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    return exited.si_pid if exited is not None else None


class ExitReaper:
    """What Twisted runs at each SIGCHLD (its process.reapAllProcesses), in time that grows
    with the children that exited, not with all it runs: Twisted's own calls waitpid for
    each of them (twisted/twisted#2967), a thousand system calls on the reactor thread for
    one exit among a thousand programs. Each exited child is found with waitid(WNOWAIT):
    Twisted's is handed to its Process; where the server is a subreaper (`orphans`), any
    other is an orphan come back to it, and is reaped unless it may be a child spawned in
    the registry's thread and not taken over yet (see Unadopted). A child left unreaped
    would hide the others behind it: then Twisted's own round runs instead.

    Installed for as long as a server runs (tests run several in one process)."""

    _running: list[Unadopted] = []  # the Unadopted of each server running in this process

    def __init__(
        self, unadopted: Unadopted, orphans: bool, handlers: dict | None = None, fallback=None
    ):
        self._unadopted, self._orphans = unadopted, orphans
        self._handlers = twisted_process.reapProcessHandlers if handlers is None else handlers
        self._fallback = fallback or TWISTED_ROUND

    def install(self) -> None:
        if hasattr(os, "waitid"):
            self._running.append(self._unadopted)
            twisted_process.reapAllProcesses = self.reap

    def uninstall(self) -> None:
        if self._unadopted in self._running:
            self._running.remove(self._unadopted)
        if not self._running:  # else another server's goes on, which heeds all that run
            twisted_process.reapAllProcesses = TWISTED_ROUND

    def reap(self) -> None:
        """Reap every child that exited; each Twisted's once (a failure is Twisted's to log)."""
        handed: set[int] = set()
        while (pid := exited_child()) is not None:
            handler = self._handlers.get(pid)
            if handler is None and self._reap_orphan(pid):
                continue
            if handler is None or pid in handed:
                self._fallback()
                return
            handed.add(pid)
            handler.reapProcess()

    def _reap_orphan(self, pid: int) -> bool:
        """Reap a child that is not Twisted's, unless it may be one about to be (a spawn of
        another thread's under way, or done and not taken over): whether it was reaped."""
        if not self._orphans:
            return False
        held = []
        try:
            for unadopted in {*self._running, self._unadopted}:
                if not unadopted.lock.acquire(blocking=False):
                    return False
                held.append(unadopted.lock)
                if pid in unadopted.pids:
                    return False
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return True
        finally:
            for lock in held:
                lock.release()
