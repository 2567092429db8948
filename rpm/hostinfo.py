"""The machine's vitals (HOST, and the `host` event) as people read them (pure): one summary
line, or one `key: value` line per field with sizes and times made readable."""

from __future__ import annotations

import time

from rpm.rows import human_bytes

_SIZES = ("memory_total", "memory_available", "memory_used", "swap_total", "swap_used")


def duration(seconds: float) -> str:
    """An uptime as 3d04h, 5h12m or 42m."""
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def summary(host: dict) -> str:
    """One line: name, load, CPU, memory, processes, managed, uptime."""
    load = " ".join(f"{value:.2f}" for value in host.get("load", []))
    return (
        f"{host.get('hostname', '?')} load {load} cpu {host.get('cpu_percent', 0.0):.1f}% "
        f"mem {percent(host.get('memory_used', 0), host.get('memory_total', 0))} "
        f"procs {host.get('processes', 0)} managed {host.get('managed', 0)} "
        f"up {duration(host.get('uptime', 0.0))}"
    )


def value_text(key: str, value) -> str:
    if value is None:
        return "-"
    if key in _SIZES:
        return human_bytes(value)
    if key == "boot_time":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if key == "uptime":
        return duration(value)
    if isinstance(value, list):
        return " ".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
    return str(value)


def text_lines(host: dict) -> list[str]:
    return [f"{key}: {value_text(key, value)}" for key, value in host.items()]
