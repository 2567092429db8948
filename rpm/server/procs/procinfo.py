"""INFO's view of one process: a live reading through psutil, or a managed run's record.

read_live blocks (it reads /proc, and finding children scans it): call it in a worker thread.
"""

from __future__ import annotations

import os
import pwd

import psutil

from rpm.errors import NoSuchProcess, NotPermitted
from rpm.rows import RESTARTING
from rpm.server.managed.records import ManagedRecord
from rpm.signames import signal_name


def _or_none(read):
    try:
        return read()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None


def read_live(pid: int) -> dict:
    """The ROW keys plus cwd, threads and children, read now."""
    try:
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
    except psutil.NoSuchProcess as err:
        raise NoSuchProcess(f"no process has pid {pid}") from err
    except psutil.AccessDenied as err:
        raise NotPermitted(f"cannot read process {pid}: access denied") from err
    return details


def _server_user() -> str | None:
    """Managed processes run as the server's user."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return None


def managed_fields(record: ManagedRecord) -> dict:
    """What the server knows of a managed run beyond what the system shows."""
    return {
        "managed": True,
        "id": record.id,
        "restart": record.restart,
        "restarts": record.restarts,
        "exit_code": record.exit_code,
        "exit_signal": signal_name(record.exit_signal) if record.exit_signal else None,
        "exit_known": record.exit_known if record.ended else None,
        "ended": record.ended_at,
        "env": sorted(record.env),  # names only: values may be secrets
    }


def from_record(record: ManagedRecord, restart_at: float | None = None) -> dict:
    """INFO of a managed run that has ended, from the server's records; with restart_at,
    a program waiting to restart (its status is `restarting`)."""
    details = {
        "pid": record.pid,
        "ppid": os.getpid(),
        "user": _server_user(),
        "name": os.path.basename(record.argv[0])[:15],
        "cmdline": list(record.argv),
        "status": "dead" if restart_at is None else RESTARTING,
        "cpu": 0.0,
        "rss": 0,
        "started": record.started,
        "cwd": record.cwd,
        "threads": 0,
        "children": [],
        **managed_fields(record),
    }
    if restart_at is not None:
        details["restart_at"] = restart_at
    return details
