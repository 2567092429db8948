"""Reaping the server's children: at each SIGCHLD, only those that exited (ExitReaper),
where Twisted calls waitpid once for every child it runs. And the server as a child
subreaper (Linux's prctl PR_SET_CHILD_SUBREAPER): a process that a managed program orphans
(a daemon that double-forked) is re-parented to the server rather than to init, so it stays
in the server's tree, and once it exits the server reaps it."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from twisted.internet import process as twisted_process
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from rpm.server.procs.libc import LIBC

PR_SET_CHILD_SUBREAPER = 36
REAP_EVERY = 1.0
log = Logger()
TWISTED_ROUND = twisted_process.reapAllProcesses  # a waitpid for every child Twisted runs


def become_subreaper() -> bool:
    """Make this process a child subreaper; False where the system does not allow it."""
    try:
        return LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except AttributeError:  # no prctl: not Linux
        return False


class Unadopted:
    """Children spawned in another thread than the reactor's, which Twisted does not reap
    yet, each with its take-over (what hands it to Twisted): the spawning thread holds
    `lock` from the spawn until the child is in `pending`, and the reactor thread adopts it
    once the START is answered, or at once if the reaper finds it exited before that."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending: dict[int, Callable[[], None]] = {}

    def adopt(self, pid: int) -> None:
        """On the reactor thread: hand the child to Twisted (which reaps it at once if it
        exited), unless that was done already."""
        take_over = self.pending.pop(pid, None)
        if take_over is None:
            return
        try:
            take_over()
        except Exception:
            log.failure("taking over pid {pid} failed", pid=pid)


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
    Twisted's is handed to its Process; one spawned in the registry's thread and not taken
    over yet (see Unadopted) is taken over now, which reaps it; where the server is a
    subreaper (`orphans`), any other is an orphan come back to it, and is reaped. A
    child left unreaped otherwise (an orphan where the server is no subreaper, or any while
    a spawn in another thread is under way) would hide the others behind it: then Twisted's
    own round runs instead.

    Where orphans are the server's, a round also runs every second, for an orphan left by
    a round cut short. Installed for as long as a server runs (tests run several in one
    process)."""

    _running: list[Unadopted] = []  # the Unadopted of each server running in this process

    def __init__(self, reactor, unadopted: Unadopted, orphans: bool, fallback=None):
        self._unadopted, self._orphans = unadopted, orphans
        self._fallback = fallback or TWISTED_ROUND
        self._every_second = LoopingCall(self.reap)
        self._every_second.clock = reactor

    def install(self) -> None:
        if not hasattr(os, "waitid"):
            return
        self._running.append(self._unadopted)
        twisted_process.reapAllProcesses = self.reap
        if self._orphans:
            self._every_second.start(REAP_EVERY, now=False)

    def uninstall(self) -> None:
        if self._every_second.running:
            self._every_second.stop()
        if self._unadopted in self._running:
            self._running.remove(self._unadopted)
        if not self._running:  # else another server's goes on, which heeds all that run
            twisted_process.reapAllProcesses = TWISTED_ROUND

    def reap(self) -> None:
        """Reap every child that exited; each Twisted's once (a failure is Twisted's to log)."""
        handed: set[int] = set()
        while (pid := exited_child()) is not None:
            handler = twisted_process.reapProcessHandlers.get(pid)
            if handler is not None and pid not in handed:
                handed.add(pid)
                handler.reapProcess()
                continue
            if handler is not None or not self._reaped_stranger(pid):
                self._fallback()
                return

    def _reaped_stranger(self, pid: int) -> bool:
        """Reap a child that is not Twisted's, if it may be: one spawned in another thread
        (taken over now, so Twisted's Process reaps it), or an orphan where the server is a
        subreaper. False if it is left: a spawn under way in another thread may have made
        it, or the server is no subreaper and it is no orphan of its."""
        held, owner = [], None
        try:
            for unadopted in {*self._running, self._unadopted}:
                if not unadopted.lock.acquire(blocking=False):
                    return False
                held.append(unadopted.lock)
                if pid in unadopted.pending:
                    owner = unadopted
                    break
            else:
                if not self._orphans:
                    return False
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                return True
        finally:
            for lock in held:
                lock.release()
        owner.adopt(pid)  # outside the locks: Twisted's Process is made, and reaps it
        return True
