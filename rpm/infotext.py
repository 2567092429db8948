"""INFO's values as people read them, the same in the server's text mode and in clients:
times as local dates, memory in binary units, lists as words, null as `-` (pure)."""

from __future__ import annotations

import shlex
import time

from rpm.rows import human_bytes


def _time_text(value: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


# Fields shown as LIST shows them: times as local dates, memory in human units.
_FORMATS = {
    "cmdline": shlex.join,
    "started": _time_text,
    "ended": _time_text,
    "restart_at": _time_text,
    "rss": human_bytes,
    "cgroup_memory": human_bytes,
    "cgroup_cpu": lambda seconds: f"{seconds:.2f} s",
}


def field_text(key: str, value) -> str:
    """One INFO value as text (not yet escaped for a terminal)."""
    if value is None:
        return "-"
    if key in _FORMATS:
        return _FORMATS[key](value)
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def text_lines(details: dict) -> list[str]:
    """INFO in text mode: one `key: value` line per field."""
    return [f"{key}: {field_text(key, value)}" for key, value in details.items()]
