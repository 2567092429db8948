"""Which process a pid names: its start time (pid and start time together identify a
process across pid reuse), whether it is still there, a zombie's exit status, kernel
threads and ancestors, and a pidfd that tells when it exits. psutil's exceptions become
rpm's errors in one place, psutil_errors (modelled on psutil's own wrap_exceptions).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Collection, Iterable, Iterator

import psutil

from rpm.errors import NoSuchProcess, NotPermitted
from rpm.server.procs.ownedfd import OwnedReader

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAT_MAX = 4096  # /proc/<pid>/stat: a 64-character comm and 52 numbers fit many times over
PF_KTHREAD = 0x00200000
HAVE_PIDFD = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


@contextlib.contextmanager
def psutil_errors(pid: int, doing: str = "read") -> Iterator[None]:
    """Turn psutil's exceptions about pid into NoSuchProcess / NotPermitted."""
    try:
        yield
    except psutil.NoSuchProcess as err:  # a zombie is a NoSuchProcess too: it has ended
        raise NoSuchProcess(f"no process has pid {pid}") from err
    except psutil.AccessDenied as err:
        raise NotPermitted(f"cannot {doing} process {pid}: access denied") from err


def procfs_available() -> bool:
    return os.path.exists("/proc/self/stat")


_boot_time: float | None = None


def boot_time() -> float:
    """When the machine booted, as psutil says (read once: it does not change)."""
    global _boot_time  # noqa: PLW0603 (a constant of the machine, computed on first use)
    if _boot_time is None:
        _boot_time = psutil.boot_time()
    return _boot_time


def read_stat(pid: int) -> tuple[str, list[bytes]] | None:
    """(comm, the fields after it) from /proc/<pid>/stat, or None if the process is gone."""
    try:  # one read(2): each is a moment another thread may take the GIL
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, STAT_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)
    left, right = data.find(b"("), data.rfind(b")")
    return data[left + 1 : right].decode("utf-8", "replace"), data[right + 2 :].split()


def stopped_or_gone(pid: int) -> bool:
    """Whether a process is stopped (by a signal or a tracer), a zombie, or gone."""
    stat = read_stat(pid)
    return stat is None or stat[1][0] in (b"T", b"t", b"Z")


def start_time_of(fields: list[bytes]) -> float:
    """The start time in the fields read_stat gives, as psutil's create_time() computes it."""
    return start_time_at(int(fields[19]))


def start_time_at(ticks: int) -> float:
    """The start time of a process started `ticks` clock ticks after boot, as psutil's
    create_time() computes it."""
    return boot_time() + ticks / CLOCK_TICKS


def boot_ticks() -> int | None:
    """Clock ticks since boot now, as /proc/<pid>/stat counts a process's start (the
    kernel's boot-time clock); None where that clock cannot be read."""
    try:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME) * CLOCK_TICKS // 1_000_000_000
    except (AttributeError, OSError):  # not Linux
        return None


def start_time(pid: int) -> float | None:
    """The process's start time exactly as psutil's create_time() gives it; None if gone."""
    if procfs_available():
        stat = read_stat(pid)
        return None if stat is None else start_time_of(stat[1])
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def require_start_time(pid: int) -> float:
    """start_time, raising NoSuchProcess when there is no such process."""
    started = start_time(pid)
    if started is None:
        raise NoSuchProcess(f"no process has pid {pid}")
    return started


def same_start(first: float, second: float) -> bool:
    """Start times are clock ticks since boot: equal within a tick means the same process."""
    return abs(first - second) < 0.005


def process_gone(pid: int, started: float) -> bool:
    """True once the process has exited (a zombie counts as exited) or its pid was reused."""
    try:
        proc = psutil.Process(pid)
        return not same_start(proc.create_time(), started) or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def alive_with_start(pid: int | None, started: float | None) -> bool:
    """Whether the process with this pid and start time still runs."""
    return pid is not None and started is not None and not process_gone(pid, started)


def zombie_exit_status(pid: int, started: float) -> tuple[int | None, int | None] | None:
    """(exit code, signal) of an exited process that its parent has not reaped yet (Linux
    keeps the status in /proc/<pid>/stat until then); None when it cannot be known."""
    stat = read_stat(pid)
    if stat is None:
        return None
    fields = stat[1]
    try:
        if fields[0] != b"Z" or not same_start(start_time_of(fields), started):
            return None
        status = int(fields[49])
    except (IndexError, ValueError):
        return None
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def is_kernel_thread(pid: int) -> bool:
    """True for Linux kernel threads (PF_KTHREAD in /proc/<pid>/stat); False elsewhere."""
    stat = read_stat(pid)
    try:
        return stat is not None and bool(int(stat[1][6]) & PF_KTHREAD)
    except (IndexError, ValueError):
        return False


def thread_group(pid: int) -> int | None:
    """The process (thread group) that pid belongs to: pid itself for a process, another pid
    for a thread's id; None if it is gone or this is not Linux."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


RUN_VARIABLE = "RPM_RUN"  # in every managed program's environment: its run's marker


def processes_of_run(candidates: Iterable[int], pgid: int | None, marker: str) -> dict[int, float]:
    """Which of the candidate pids run (zombies left out) as part of one managed program:
    in its process group pgid, or carrying RPM_RUN=marker in their environment, which a
    descendant keeps when it leaves the group (setsid, a double fork). pid -> start time.
    Blocking: it reads /proc, so call it in a worker thread."""
    needle = f"{RUN_VARIABLE}={marker}".encode()
    found: dict[int, float] = {}
    for pid in candidates:
        stat = read_stat(pid)
        if stat is None or stat[1][0] == b"Z":
            continue
        fields = stat[1]
        if (pgid is not None and int(fields[2]) == pgid) or _carries(pid, needle):
            found[pid] = start_time_of(fields)
    return found


def find_runs(markers: Iterable[str]) -> dict[str, tuple[int, float]]:
    """The live process at the root of each run named by its RPM_RUN marker: the one whose
    parent does not carry the same marker (or the oldest). marker -> (pid, start time). It
    finds runs the registry has no pid for (a server killed in the middle of a START).
    Blocking: it reads every process's environment, so call it only at start-up."""
    wanted = {f"{RUN_VARIABLE}={marker}".encode(): marker for marker in markers}
    carriers: dict[str, dict[int, tuple[int, float]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or (stat := read_stat(int(name))) is None or stat[1][0] == b"Z":
            continue
        for needle in _variables(int(name)) & wanted.keys():
            carriers.setdefault(wanted[needle], {})[int(name)] = (
                int(stat[1][1]),
                start_time_of(stat[1]),
            )
    found = {}
    for marker, processes in carriers.items():
        roots = [pid for pid, (parent, _) in processes.items() if parent not in processes]
        pid = min(roots or processes, key=lambda each: processes[each][1])
        found[marker] = (pid, processes[pid][1])
    return found


def _variables(pid: int) -> set[bytes]:
    """The NAME=VALUE entries of the environment pid started with (empty if unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return set(environ.read().split(b"\0"))
    except OSError:  # gone, or another user's
        return set()


def descendants(pid: int, skip: Collection[int] = ()) -> list[int]:
    """Every process below pid in the tree, as /proc says now (Linux; empty elsewhere),
    leaving out those in skip and all below them."""
    found, seen, queue = [], {pid, *skip}, [pid]
    while queue:
        parent = queue.pop()
        for child in children_of(parent):
            if child not in seen:
                seen.add(child)
                found.append(child)
                queue.append(child)
    return found


def children_of(pid: int) -> list[int]:
    """pid's children, from each of its threads' /proc children list (Linux)."""
    children = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children", "rb") as listing:
                children += [int(child) for child in listing.read().split()]
        except OSError:
            continue
    return children


def _carries(pid: int, needle: bytes) -> bool:
    """Whether the environment pid started with holds exactly this NAME=VALUE."""
    return needle in _variables(pid)


def ancestors(pid: int) -> list[int]:
    """The chain of parents of pid, nearest first, as it is now."""
    chain = []
    try:
        parent = psutil.Process(pid).ppid()
        while parent > 0 and parent not in chain:
            chain.append(parent)
            parent = psutil.Process(parent).ppid()
    except psutil.NoSuchProcess:
        pass
    return chain


class PidfdExitWatch(OwnedReader):
    """Calls back once when a process (not necessarily our child) exits, via its pidfd."""

    def __init__(self, reactor, pid: int, on_exit: Callable[[], None]):
        self._on_exit = on_exit
        # raises ProcessLookupError if it is already gone
        super().__init__(reactor, os.pidfd_open(pid))

    @classmethod
    def maybe(cls, reactor, pid: int, on_exit: Callable[[], None]) -> PidfdExitWatch | None:
        """A watch where pidfds work; None where they do not or the process is gone."""
        if not HAVE_PIDFD:
            return None
        try:
            return cls(reactor, pid, on_exit)
        except OSError:
            return None

    def logPrefix(self) -> str:
        return "pidfd"

    def doRead(self) -> None:
        self.release()
        self._on_exit()

    def cancel(self) -> None:
        """No call back: the run is ended another way (or the server stops)."""
        self.release()
