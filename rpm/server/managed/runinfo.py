"""INFO's view of a managed program from its record: what the server knows of a run beyond
what the system shows, and the whole answer for a run that has ended or waits to restart."""

from __future__ import annotations

import os
import pwd

from rpm.rows import RESTARTING
from rpm.server.managed.records import ManagedRecord
from rpm.signames import signal_name


def _server_user() -> str | None:
    """Managed processes run as the server's user."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return None


SHOWN_SETTINGS = ("max_memory", "limits", "stop_grace")


def managed_fields(record: ManagedRecord) -> dict:
    """What the server knows of a managed run beyond what the system shows."""
    return {
        "managed": True,
        "program": record.name,
        "source": "programs file" if record.settings.get("file") else "by hand",
        "id": record.id,
        "restart": record.restart,
        "restarts": record.restarts,
        "exit_code": record.exit_code,
        "exit_signal": signal_name(record.exit_signal) if record.exit_signal else None,
        "exit_known": record.exit_known if record.ended else None,
        "ended": record.ended_at,
        "env": sorted(record.env),  # names only: values may be secrets
        **{key: record.settings[key] for key in SHOWN_SETTINGS if key in record.settings},
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
