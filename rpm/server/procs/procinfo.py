"""INFO's view of one live process, read through psutil.

read_live blocks (it reads /proc, and finding children scans it): call it in a worker thread.
"""

from __future__ import annotations

import psutil

from rpm.server.procs.identity import psutil_errors


def _or_none(read):
    try:
        return read()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None


def read_live(pid: int) -> dict:
    """The ROW keys plus cwd, threads and children, read now."""
    with psutil_errors(pid):
        proc = psutil.Process(pid)
        with proc.oneshot():
            status = proc.status()
            details = {
                "pid": pid,
                "ppid": proc.ppid(),
                "user": _or_none(proc.username),
                "name": proc.name(),
                "cmdline": None if status == psutil.STATUS_ZOMBIE else _or_none(proc.cmdline),
                "status": status,
                "cpu": 0.0,
                "rss": _or_none(lambda: proc.memory_info().rss) or 0,
                "started": proc.create_time(),
                "managed": False,
                "cwd": _or_none(proc.cwd),
                "threads": _or_none(proc.num_threads) or 0,
                "exe": _or_none(proc.exe) or None,
                "nice": _or_none(proc.nice),
            }
        details["children"] = sorted(child.pid for child in proc.children())
    return details
