"""The /proc scanner gives the rows psutil's scanner gives, value for value."""

import os
import subprocess
import time

import psutil
import pytest

from rpm import procfs
from rpm.scan import Scanner

pytestmark = pytest.mark.skipif(not procfs.available(), reason="no /proc here")
WORDS = {*procfs.STATUSES.values(), "?"}


def test_start_time_is_psutils_exactly():
    for pid in (1, os.getpid(), os.getppid()):
        assert procfs.start_time(pid) == psutil.Process(pid).create_time()
    assert procfs.start_time(2**22 + 7) is None


def test_rows_match_psutils(spawned):
    child = subprocess.Popen(["sleep", "30"])
    spawned.append(child.pid)
    long_name = subprocess.Popen(["python3", "-c", "import time; time.sleep(30)"])
    spawned.append(long_name.pid)
    time.sleep(0.2)
    fast = {row.pid: row for row in procfs.ProcfsScanner().scan(frozenset())}
    slow = {row.pid: row for row in Scanner().scan(frozenset())}
    common = fast.keys() & slow.keys()
    assert {child.pid, long_name.pid, os.getpid()} <= common
    assert len(common) >= 0.9 * len(slow)
    for pid in common:
        a, b = fast[pid], slow[pid]
        if (
            not b.cmdline
        ):  # kernel threads rename themselves (kworker/...) from one moment to the next
            a, b = a._replace(name=""), b._replace(name="")
        assert (a.ppid, a.user, a.name, a.cmdline, a.started) == (
            b.ppid,
            b.user,
            b.name,
            b.cmdline,
            b.started,
        ), pid
        assert a.status in WORDS and b.status in WORDS  # states change between two samples
    assert fast[child.pid].status == slow[child.pid].status == "sleeping"
    assert fast[child.pid].cmdline == ("sleep", "30")
    assert abs(fast[os.getpid()].rss - slow[os.getpid()].rss) < 16 * 1024 * 1024


def test_cpu_is_measured_between_two_samples(spawned):
    busy = subprocess.Popen(["python3", "-c", "while True: pass"])
    spawned.append(busy.pid)
    scanner = procfs.ProcfsScanner()
    first = {row.pid: row for row in scanner.scan(frozenset())}
    assert first[busy.pid].cpu == 0.0
    time.sleep(0.5)
    second = {row.pid: row for row in scanner.scan(frozenset())}
    assert 50 <= second[busy.pid].cpu <= 110


def test_managed_rows_and_zombies(spawned):
    child = subprocess.Popen(["true"])
    spawned.append(child.pid)
    time.sleep(0.2)  # exited, not reaped yet: a zombie
    started = procfs.start_time(child.pid)
    rows = {row.pid: row for row in procfs.ProcfsScanner().scan(frozenset({(child.pid, started)}))}
    assert rows[child.pid].status == "zombie" and rows[child.pid].cmdline is None
    assert rows[child.pid].managed
    child.wait()
