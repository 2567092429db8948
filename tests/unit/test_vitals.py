"""The machine's vitals: /proc parsed as the kernel writes it, and agreeing with psutil."""

from __future__ import annotations

import os

import psutil
import pytest

from rpm import hostinfo
from rpm.server.procs import vitals

STAT = """cpu  100 0 50 800 50 0 0 0 0 0
cpu0 60 0 30 400 10 0 0 0 0 0
cpu1 40 0 20 400 40 0 0 0 0 0
intr 12345
"""
STAT_LATER = """cpu  200 0 100 900 50 0 0 0 0 0
cpu0 160 0 30 410 10 0 0 0 0 0
cpu1 40 0 70 490 40 0 0 0 0 0
"""
MEMINFO = """MemTotal:       16384 kB
MemFree:         1024 kB
MemAvailable:    8192 kB
SwapTotal:       2048 kB
SwapFree:        1536 kB
"""


def test_cpu_busy_is_measured_between_two_reads_total_and_per_cpu():
    before, after = vitals.cpu_times(STAT), vitals.cpu_times(STAT_LATER)
    assert before["cpu"] == (150, 1000)  # idle and iowait are not busy
    assert vitals.busy_percent(before["cpu"], after["cpu"]) == 60.0
    assert vitals.busy_percent(before["cpu0"], after["cpu0"]) == round(100 * 100 / 110, 1)
    assert vitals.busy_percent(before["cpu1"], after["cpu1"]) == round(100 * 50 / 140, 1)
    assert vitals.busy_percent(before["cpu"], before["cpu"]) == 0.0, "no time passed"


def test_memory_and_load_from_proc_text():
    assert vitals.memory(MEMINFO) == {
        "memory_total": 16 << 20,
        "memory_available": 8 << 20,
        "memory_used": 8 << 20,
        "swap_total": 2 << 20,
        "swap_used": 512 << 10,
    }
    assert vitals.load("0.52 0.40 0.31 3/812 99999\n") == ([0.52, 0.40, 0.31], 812)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
def test_the_reader_agrees_with_psutil():
    reader = vitals.VitalsReader()
    reader.read(0, 0)
    host = reader.read(len(psutil.pids()), 3)
    assert host["memory_total"] == psutil.virtual_memory().total
    assert abs(host["memory_available"] - psutil.virtual_memory().available) < 64 << 20
    assert host["swap_total"] == psutil.swap_memory().total
    assert host["cpus"] == psutil.cpu_count() == len(host["cpu_percent_per_cpu"])
    assert all(
        0.0 <= value <= 100.0 for value in [host["cpu_percent"], *host["cpu_percent_per_cpu"]]
    )
    assert host["load"] == pytest.approx(list(os.getloadavg()), abs=0.5)
    assert abs(host["boot_time"] - psutil.boot_time()) < 1
    assert host["managed"] == 3 and host["rpm_version"] and host["threads"] >= host["processes"]


def test_the_summary_and_lines_people_read():
    host = {
        "hostname": "web1",
        "load": [0.5, 0.25, 0.125],
        "cpu_percent": 12.5,
        "memory_used": 1 << 30,
        "memory_total": 4 << 30,
        "processes": 212,
        "managed": 3,
        "uptime": 3 * 86400 + 4 * 3600 + 5 * 60,
    }
    assert hostinfo.summary(host) == (
        "web1 load 0.50 0.25 0.12 cpu 12.5% mem 25.0% procs 212 managed 3 up 3d04h"
    )
    assert "memory_total: 4.0G" in hostinfo.text_lines(host)
    assert hostinfo.duration(3 * 3600 + 120) == "3h02m" and hostinfo.duration(59) == "0m"
