"""Deliver signals without hitting the wrong process, and notice when a process is gone.

A process is named by its pid and start time. On Linux a pidfd pins the process while its
start time is checked, so a signal can never land on a process that reused the pid. Exit
of a process that is not our child is noticed through its pidfd becoming readable.
"""

from __future__ import annotations

import os
import signal

import psutil
from twisted.logger import Logger

from rpm.errors import NoSuchProcess, NotPermitted
from rpm.server.procs.identity import HAVE_PIDFD, require_start_time, same_start
from rpm.signames import signal_name

log = Logger()


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
        if not same_start(require_start_time(pid), started):
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
