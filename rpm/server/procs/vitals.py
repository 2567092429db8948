"""The machine's vitals, as top and glances show them first: load, CPU busy (total and per
CPU), memory and swap, uptime, how many processes and threads. On Linux they are parsed from
/proc/stat, /proc/meminfo and /proc/loadavg in the sampler's pass (the parsing is pure);
elsewhere psutil reads them. CPU busy is measured between two reads."""

from __future__ import annotations

import os
import platform
import socket
import time

import psutil

from rpm import __version__
from rpm.server.procs.identity import boot_time, procfs_available


def cpu_times(stat: str) -> dict[str, tuple[int, int]]:
    """From /proc/stat: for `cpu` (all) and each `cpuN`, (busy, total) clock ticks."""
    times = {}
    for line in stat.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *fields = line.split()
        values = [int(value) for value in fields[:8]]  # user .. steal; guest is in user
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        times[name] = (sum(values) - idle, sum(values))
    return times


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(100.0 * busy / total, 1) if total > 0 else 0.0


def memory(meminfo: str) -> dict[str, int]:
    """From /proc/meminfo, in bytes: total, available, used; swap total and used."""
    kib = {}
    for line in meminfo.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words:
            kib[key] = int(words[0]) * 1024
    total, available = kib.get("MemTotal", 0), kib.get("MemAvailable", kib.get("MemFree", 0))
    swap_total = kib.get("SwapTotal", 0)
    return {
        "memory_total": total,
        "memory_available": available,
        "memory_used": total - available,
        "swap_total": swap_total,
        "swap_used": swap_total - kib.get("SwapFree", 0),
    }


def load(loadavg: str) -> tuple[list[float], int]:
    """From /proc/loadavg: the three load averages, and the threads in the system."""
    fields = loadavg.split()
    return [float(value) for value in fields[:3]], int(fields[3].split("/")[1])


class VitalsReader:
    """Reads the vitals; keeps the last CPU times to say how busy the CPUs were since."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}
        self._static = {
            "hostname": socket.gethostname(),
            "os": platform.system(),
            "kernel": platform.release(),
            "cpus": os.cpu_count() or 1,
        }

    def read(self, processes: int, managed: int) -> dict:
        """Blocking (it reads /proc): call it in the sampler's thread, which counted the
        processes and the managed programs running."""
        vitals = {**self._static, "boot_time": boot_time()}
        vitals["uptime"] = round(time.time() - vitals["boot_time"], 1)
        if procfs_available():
            vitals.update(self._from_proc())
        else:
            vitals.update(_from_psutil())
        vitals.update(processes=processes, managed=managed, rpm_version=__version__)
        return vitals

    def _from_proc(self) -> dict:
        with open("/proc/stat", encoding="ascii") as stat:
            now = cpu_times(stat.read())
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = memory(meminfo.read())
        with open("/proc/loadavg", encoding="ascii") as loadavg:
            averages, threads = load(loadavg.read())
        last, self._last = self._last or now, now
        per_cpu = [
            busy_percent(last.get(name, now[name]), now[name]) for name in now if name != "cpu"
        ]
        return {
            **fields,
            "load": averages,
            "threads": threads,
            "cpu_percent": busy_percent(last.get("cpu", now["cpu"]), now["cpu"]),
            "cpu_percent_per_cpu": per_cpu,
        }


def _from_psutil() -> dict:
    virtual, swap = psutil.virtual_memory(), psutil.swap_memory()
    return {
        "memory_total": virtual.total,
        "memory_available": virtual.available,
        "memory_used": virtual.total - virtual.available,
        "swap_total": swap.total,
        "swap_used": swap.used,
        "load": list(os.getloadavg()),
        "threads": None,
        "cpu_percent": psutil.cpu_percent(),
        "cpu_percent_per_cpu": psutil.cpu_percent(percpu=True),
    }
