"""Who may be signalled: protected pids, kernel threads, the signal scope, reused pids.

A pid of 1 or less (0 and negative pids address process groups or every process), the
server itself and its ancestors are protected. Kernel threads are never signalled. With
--signal-scope managed only processes this server started, and their descendants, may be
touched. A pid the client saw in a table must still name that same process (start time).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import psutil

from rpm.errors import BadArgument, NoSuchProcess, NotPermitted, Protected
from rpm.server.procs.identity import (
    ancestors,
    is_kernel_thread,
    require_start_time,
    same_start,
    thread_group,
)

PID_MAX = 4_194_304  # Linux's PID_MAX_LIMIT: no pid can be larger
SCOPES = ("owned", "managed")


def check_possible(pid: int) -> None:
    """Raise NoSuchProcess for a number no process can have."""
    if not 0 < pid <= PID_MAX:
        raise NoSuchProcess(f"no process has pid {pid}")


class SignalPolicy:
    """Decides whether a pid may be signalled, and which process it must still be."""

    def __init__(self, scope: str, is_managed: Callable[[int, float], bool], own_pid: int = 0):
        if scope not in SCOPES:
            raise ValueError(f"signal scope must be one of {SCOPES}")
        self.scope = scope
        self._is_managed = is_managed
        self._own_pid = own_pid or os.getpid()

    def check(self, pid: int, seen_started: float | None = None) -> float:
        """Raise if pid must not be signalled; return its start time."""
        if pid <= 1:
            raise Protected(
                f"pid {pid} is protected: 1 is init, 0 and negative pids address "
                "process groups or every process"
            )
        check_possible(pid)
        protected = {self._own_pid, *ancestors(self._own_pid)}
        if pid in protected:
            raise Protected(f"pid {pid} is protected: it is the rpm server or one of its parents")
        self._refuse_threads(pid, protected)
        started = require_start_time(pid)
        if seen_started is not None and not same_start(started, seen_started):
            raise NoSuchProcess(
                f"pid {pid} now names another process than the one you listed "
                "(the pid was reused); LIST again"
            )
        if is_kernel_thread(pid):
            raise Protected(f"pid {pid} is a kernel thread; rpm never signals kernel threads")
        if self.scope == "managed" and not self._within_managed(pid, started):
            raise NotPermitted(
                f"pid {pid} was not started by this server and the server runs "
                "with --signal-scope managed"
            )
        return started

    @staticmethod
    def _refuse_threads(pid: int, protected: set[int]) -> None:
        """A thread id is not a process: kill() of one signals its whole process."""
        owner = thread_group(pid)
        if owner is None or owner == pid:
            return
        if owner in protected:
            raise Protected(f"pid {pid} is protected: it is a thread of the rpm server or a parent")
        raise BadArgument(
            f"{pid} is a thread of {owner}, not a process; signal the process {owner} instead"
        )

    def _within_managed(self, pid: int, started: float) -> bool:
        if self._is_managed(pid, started):
            return True
        for parent in ancestors(pid):
            try:
                if self._is_managed(parent, psutil.Process(parent).create_time()):
                    return True
            except psutil.NoSuchProcess:
                return False
        return False
