"""Linux's /proc read directly where psutil is too slow: sampling every process a few times a
second, and a process's start time.

psutil reads several files per process and re-checks each pid on every call; a sample of
2,000 processes costs it about 0.2 s of CPU. Here a sample reads one file per process,
/proc/<pid>/stat, and the command line and user only for processes not seen before. The
rows are the ones psutil's scanner (rpm/scan.py) builds, value for value: start times use
psutil's boot time and formula, CPU percent psutil's definition (percent of one core
between two samples), status psutil's words. Elsewhere rpm uses scan.py.
"""

from __future__ import annotations

import os
import pwd
import time

import psutil

from rpm.rows import Row
from rpm.server.procs.identity import CLOCK_TICKS, PF_KTHREAD, boot_time, read_stat

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
STATUSES = {
    "R": psutil.STATUS_RUNNING,
    "S": psutil.STATUS_SLEEPING,
    "D": psutil.STATUS_DISK_SLEEP,
    "T": psutil.STATUS_STOPPED,
    "t": psutil.STATUS_TRACING_STOP,
    "Z": psutil.STATUS_ZOMBIE,
    "X": psutil.STATUS_DEAD,
    "x": psutil.STATUS_DEAD,
    "K": "wake-kill",  # psutil's word too, though not exported as a constant
    "W": psutil.STATUS_WAKING,
    "I": psutil.STATUS_IDLE,
    "P": psutil.STATUS_PARKED,
}


def _read_text(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _arguments(raw: bytes) -> list[bytes]:
    """A /proc/<pid>/cmdline split as psutil splits it: at NULs, or at spaces where a
    process rewrote its title (setproctitle) without them."""
    if not raw:
        return []
    separator = b"\0" if raw.endswith(b"\0") else b" "
    data = raw[:-1] if raw.endswith(separator) else raw
    parts = data.split(separator)
    if separator == b"\0" and len(parts) == 1 and b" " in data:
        parts = data.split(b" ")
    return parts


def _static(pid: int, comm: str, zombie: bool) -> tuple[tuple[str, ...] | None, str | None, str]:
    """Command line, user and full name: what rarely changes, read once per process."""
    raw = None if zombie else _read_text(f"/proc/{pid}/cmdline")
    cmdline = None if raw is None else tuple(os.fsdecode(part) for part in _arguments(raw))
    name = comm
    if len(comm) >= 15 and cmdline:  # comm is cut at 15 characters: psutil extends it
        extended = os.path.basename(cmdline[0])
        if extended.startswith(comm):
            name = extended
    return cmdline, _user(pid), name


_users: dict[int, str] = {}


def _user(pid: int) -> str | None:
    status = _read_text(f"/proc/{pid}/status")
    if status is None:
        return None
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            uid = int(line.split()[1])
            if uid not in _users:
                try:
                    _users[uid] = pwd.getpwuid(uid).pw_name
                except KeyError:
                    _users[uid] = str(uid)
            return _users[uid]
    return None


class ProcfsScanner:
    """Builds Rows from /proc, keeping what it needs between samples (CPU times, command
    lines) per process, that is per (pid, start time)."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._seen: dict[tuple[int, int], tuple[float, int, str, tuple]] = {}

    def scan(self, managed: frozenset[tuple[int, float]]) -> list[Row]:
        """All processes sorted by pid; `managed` holds the (pid, started) keys this server owns."""
        now, seen, rows = self._clock(), {}, []
        booted = boot_time()
        pids = sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())
        for pid in pids:
            stat = read_stat(pid)
            if stat is None:
                continue  # gone meanwhile: normal
            comm, fields = stat
            ticks, state = int(fields[11]) + int(fields[12]), fields[0].decode()
            key = (pid, int(fields[19]))
            before = self._seen.get(key)
            cpu = 0.0
            if before is not None and now > before[0]:
                cpu = round((ticks - before[1]) / CLOCK_TICKS / (now - before[0]) * 100, 1)
            static = before[3] if before is not None and before[2] == comm else None
            if static is None:
                static = _static(pid, comm, state == "Z")
            # Caught in the middle of an exec, a process has its new name but no command line
            # yet: read it again next time (kernel threads have none, ever).
            settled = static[0] != () or int(fields[6]) & PF_KTHREAD
            seen[key] = (now, ticks, comm, static if settled else None)
            cmdline, user, name = static
            started = booted + key[1] / CLOCK_TICKS
            rows.append(
                Row(
                    pid,
                    int(fields[1]),
                    user,
                    name,
                    None if state == "Z" else cmdline,
                    STATUSES.get(state, "?"),
                    cpu,
                    int(fields[21]) * PAGE_SIZE,
                    started,
                    (pid, started) in managed,
                )
            )
        self._seen = seen
        return rows
