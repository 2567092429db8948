"""Deliver signals without hitting the wrong process, and notice when a process is gone.

A process is named by its pid and start time. On Linux a pidfd pins the process while its
start time is checked, so a signal can never land on a process that reused the pid. Exit
of a process that is not our child is noticed through its pidfd becoming readable.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

import psutil
from twisted.logger import Logger

from rpm.errors import NoSuchProcess, NotPermitted
from rpm.server.procs import procfs
from rpm.server.procs.policy import same_start, start_time
from rpm.signames import signal_name

log = Logger()
HAVE_PIDFD = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


def _refused(pid: int, signum: int, err: OSError) -> NotPermitted:
    return NotPermitted(f"the system refused {signal_name(signum)} to pid {pid}: {err.strerror}")


def send_to_process(pid: int, started: float, signum: int) -> None:
    """Signal the process that has this pid and start time, or raise NoSuchProcess."""
    try:
        fd = os.pidfd_open(pid) if HAVE_PIDFD else None
    except ProcessLookupError as err:
        raise NoSuchProcess(f"no process has pid {pid}") from err
    except OSError:
        fd = None  # pidfds unsupported by this kernel: fall back to psutil's own reuse check
    try:
        if not same_start(start_time(pid), started):
            raise NoSuchProcess(f"pid {pid} now names another process (the pid was reused)")
        if fd is not None:
            signal.pidfd_send_signal(fd, signum)
        else:
            psutil.Process(pid).send_signal(signum)
    except (ProcessLookupError, psutil.NoSuchProcess) as err:
        raise NoSuchProcess(f"no process has pid {pid}") from err
    except (PermissionError, psutil.AccessDenied) as err:
        raise NotPermitted(f"the system refused {signal_name(signum)} to pid {pid}") from err
    finally:
        if fd is not None:
            os.close(fd)


def send_to_group(pgid: int, signum: int) -> None:
    """Signal a whole process group (a managed process and everything it spawned)."""
    if pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError as err:
        raise NoSuchProcess(f"process group {pgid} is empty") from err
    except PermissionError as err:
        raise _refused(pgid, signum, err) from err


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies, waiting for a parent that
    may never reap them, do not count). Cheap when the group is empty, which is usual."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def process_gone(pid: int, started: float) -> bool:
    """True once the process has exited (a zombie counts as exited) or its pid was reused."""
    try:
        proc = psutil.Process(pid)
        return not same_start(proc.create_time(), started) or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def zombie_exit_status(pid: int, started: float) -> tuple[int | None, int | None] | None:
    """(exit code, signal) of an exited process that its parent has not reaped yet (Linux
    keeps the status in /proc/<pid>/stat until then); None when it cannot be known."""
    stat = procfs.read_stat(pid)
    if stat is None:
        return None
    fields = stat[1]
    try:
        if fields[0] != b"Z" or not same_start(procfs.start_time_of(fields), started):
            return None
        status = int(fields[49])
    except (IndexError, ValueError):
        return None
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def alive_with_start(pid: int | None, started: float | None) -> bool:
    return pid is not None and started is not None and not process_gone(pid, started)


class ExitWatch:
    """Calls back once when a process (not necessarily our child) exits, via its pidfd."""

    def __init__(self, reactor, pid: int, on_exit: Callable[[], None]):
        self._reactor = reactor
        self._on_exit = on_exit
        self._fd = os.pidfd_open(pid)  # raises ProcessLookupError if it is already gone
        reactor.addReader(self)

    @classmethod
    def maybe(cls, reactor, pid: int, on_exit: Callable[[], None]) -> ExitWatch | None:
        """An ExitWatch where pidfds work; None where they do not or the process is gone."""
        if not HAVE_PIDFD:
            return None
        try:
            return cls(reactor, pid, on_exit)
        except OSError:
            return None

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "pidfd"

    def doRead(self) -> None:
        self.cancel()
        self._on_exit()

    def connectionLost(self, reason) -> None:
        self.cancel()

    def cancel(self) -> None:
        if self._fd >= 0:
            self._reactor.removeReader(self)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
