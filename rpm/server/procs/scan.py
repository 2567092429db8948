"""Read the process table with psutil. Runs in a worker thread, never on the reactor.

One Scanner serves the whole server: psutil's process_iter cache keeps the same Process
objects between scans, which is what makes cpu_percent a measurement between two samples.
What rarely changes (command line, user) is cached per process and re-read when the
process's name changes (an exec keeps the pid and the start time).
"""

from __future__ import annotations

import psutil

from rpm.rows import Row


class Scanner:
    """Builds Rows for every process; a process vanishing mid-scan is normal, not an error."""

    def __init__(self) -> None:
        self._static: dict[tuple[int, float, str], tuple[tuple[str, ...] | None, str | None]] = {}

    def scan(self, managed: frozenset[tuple[int, float]]) -> list[Row]:
        """All processes sorted by pid; `managed` holds the (pid, started) keys this server owns."""
        rows: list[Row] = []
        static: dict = {}
        for proc in psutil.process_iter():
            try:
                row = self._row(proc, static, managed)
            except psutil.NoSuchProcess:
                continue
            rows.append(row)
        self._static = static
        return rows

    def _row(self, proc: psutil.Process, static: dict, managed: frozenset) -> Row:
        with proc.oneshot():
            try:
                started = proc.create_time()
                name = proc.name()
                status, ppid = proc.status(), proc.ppid()
                cpu, rss = round(proc.cpu_percent(), 1), proc.memory_info().rss
            except psutil.AccessDenied:
                return Row(proc.pid, 0, None, "?", None, "unknown", 0.0, 0, 0.0, False)
            key = (proc.pid, started, name)
            cmdline, user = self._static.get(key) or _read_static(proc)
        static[key] = (cmdline, user)
        if status == psutil.STATUS_ZOMBIE:
            cmdline = None
        return Row(
            proc.pid,
            ppid,
            user,
            name,
            cmdline,
            status,
            cpu,
            rss,
            started,
            (proc.pid, started) in managed,
        )


def _read_static(proc: psutil.Process) -> tuple[tuple[str, ...] | None, str | None]:
    """Command line (None for zombies and unreadable ones) and user name of a process."""
    try:
        cmdline: tuple[str, ...] | None = tuple(proc.cmdline())
    except (psutil.ZombieProcess, psutil.AccessDenied):
        cmdline = None
    try:
        user: str | None = proc.username()
    except psutil.AccessDenied:
        user = None
    return cmdline, user
