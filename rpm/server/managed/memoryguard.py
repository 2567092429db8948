"""max_memory: a program whose resident memory stays above its limit (two checks in a row,
a second apart) is restarted, and watchers are told why. Memory is the anonymous memory of
its cgroup where it has one (everything it forked, page cache left out), else its main
process's resident set."""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rpm.rows import human_bytes
from rpm.server.managed.periodic import PeriodicCheck

log = Logger()
STRIKES = 2  # checks in a row above the limit before a restart
PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(pid: int, cgroup_memory: int | None) -> int | None:
    """The program's memory: its cgroup's if known, else its main process's RSS."""
    if cgroup_memory is not None:
        return cgroup_memory
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None


class MemoryGuard(PeriodicCheck):
    """Checks the programs that have a max_memory every second; restart(pid, reason) fires
    a restart (the controller's, which stops the program the way RESTART does)."""

    def __init__(self, reactor, supervisor, restart: Callable, run=threads.deferToThread):
        super().__init__(reactor)
        self._supervisor, self._restart, self._run = supervisor, restart, run
        self._strikes: dict[int, int] = {}  # managed id -> checks above the limit in a row

    def check(self) -> Deferred | None:
        limited = [m for m in self._supervisor.running() if m.record.settings.get("max_memory")]
        if not limited:
            return None
        measured = self._run(self._measure, limited)
        measured.addCallback(self._judge, limited)
        return measured.addErrback(lambda failure: log.failure("cannot check memory", failure))

    def _measure(self, programs) -> list[int | None]:
        cgroups = self._supervisor.cgroups
        return [
            resident_bytes(
                m.record.pid,
                cgroups.anonymous_memory(m.record.id) if cgroups is not None else None,
            )
            for m in programs
        ]

    def _judge(self, sizes: list[int | None], programs) -> None:
        for managed, size in zip(programs, sizes, strict=True):
            limit, key = managed.record.settings["max_memory"], managed.record.id
            self._strikes[key] = self._strikes.get(key, 0) + 1 if size and size > limit else 0
            if self._strikes[key] >= STRIKES and managed.running:
                self._strikes[key] = 0
                reason = f"memory {human_bytes(size)} above {human_bytes(limit)}"
                log.warn("restarting {argv}: {reason}", argv=managed.record.argv, reason=reason)
                self._restart(managed.record.pid, reason).addErrback(
                    lambda failure: log.failure("memory restart failed", failure)
                )
