"""Faults of the machine, not bugs: out of file descriptors or processes, a full or
read-only disk, a locked, unwritable or damaged registry. A request they break is answered
with a named code (`limit`, `storage`) and a message saying what happened, never
`internal`."""

from __future__ import annotations

import errno
import functools
import os
import resource
import sqlite3
from collections.abc import Callable

from twisted.internet import threads
from twisted.internet.defer import Deferred, maybeDeferred

from rpm.errors import LimitReached, RPMError, StorageFailed
from rpm.server.managed.launch import OUT_OF_PROCESSES
from rpm.server.managed.store import is_damage

_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
_STORAGE = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "the disk reported an input/output error",
}


DESCRIPTORS_KEPT = 16  # for the files a request needs: logs, the registry, /proc
NO_THREAD = "can't start new thread"  # CPython's RuntimeError at the process limit
READY_THREADS = 3  # a LIST's scan, a STOP's search for its processes, an INFO or LOGS


def as_deferred(run: Callable[..., Deferred]) -> Callable[..., Deferred]:
    """run (deferToThread), failing through its Deferred where no thread can start: Twisted
    raises that at the caller, and a caller in a timer loop (the table's refresh, the output
    journal's, the memory checks) would stop for good."""
    return functools.partial(maybeDeferred, run)


in_thread = as_deferred(threads.deferToThread)  # what the server's parts run blocking work by


def keep_threads_ready(reactor) -> None:
    """Start a few workers of the reactor's thread pool now, and keep them: once the
    server's user runs as many processes as it may (`ulimit -u`: a program forking without
    end), no thread can start, and the process table is read, the processes a STOP must
    reach found, INFO and LOGS read in these. Only a few: every thread of the server moves
    with it into a program's cgroup at each START (0.016 ms a thread, both ways)."""
    pool = reactor.getThreadPool()
    pool.adjustPoolsize(minthreads=min(READY_THREADS, pool.max))


def descriptors_left() -> int | None:
    """File descriptors this process may still open (None where it cannot be told)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except FileNotFoundError:
        return None
    except OSError:  # listing needs a descriptor too: none is left
        return 0
    return soft - in_use


def fault_error(err: BaseException) -> RPMError | None:
    """The client-facing error for a fault of the environment, or None for anything else."""
    if isinstance(err, OSError) and err.errno in _OUT_OF_DESCRIPTORS:
        return LimitReached(
            "the server has no file descriptors left (too many open files); "
            "try again once some connections close"
        )
    if isinstance(err, OSError) and err.errno in _STORAGE:
        return StorageFailed(f"{_STORAGE[err.errno]}: {err.filename or 'the state directory'}")
    if isinstance(err, RuntimeError) and NO_THREAD in str(err):
        return LimitReached(
            f"the server cannot start a thread: its user {OUT_OF_PROCESSES}; "
            "try again once some end"
        )
    if isinstance(err, sqlite3.OperationalError):
        return _registry_error(str(err))
    if is_damage(err):
        return StorageFailed(
            f"the registry is damaged ({err}); the server is writing a new one from what it "
            "holds in memory: try again in a moment; nothing was changed"
        )
    return None


def _registry_error(text: str) -> StorageFailed:
    if "locked" in text or "busy" in text:
        cause = "the registry is locked by another process"
    elif "full" in text:
        cause = "the disk is full"
    elif "readonly" in text or "read-only" in text:
        cause = "the registry is not writable"
    else:
        cause = f"the registry cannot be used ({text})"
    return StorageFailed(f"{cause}; nothing was changed")
