"""The /proc scanner gives the rows psutil's scanner gives, value for value."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rpm.server.procs import identity, procfs
from rpm.server.procs.scan import Scanner
from tests.support import wait_until

pytestmark = pytest.mark.skipif(not identity.procfs_available(), reason="no /proc here")
WORDS = {*procfs.STATUSES.values(), "?"}


def test_start_time_is_psutils_exactly():
    for pid in (1, os.getpid(), os.getppid()):
        assert identity.start_time(pid) == psutil.Process(pid).create_time()
    assert identity.start_time(2**22 + 7) is None


def comparable(row) -> tuple:
    """What must match between the scanners; kernel threads rename themselves (kworker/...)
    from one moment to the next, so their names are left out."""
    return (row.ppid, row.user, row.name if row.cmdline else "", row.cmdline, row.started)


def settled(pid: int, last_argument: bytes) -> bool:
    """Done exec'ing its program and asleep in it (a busy machine may take a while)."""
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    stat = identity.read_stat(pid)
    done = len(arguments) >= 2 and arguments[-2] == last_argument
    return done and stat is not None and stat[1][0] == b"S"


def test_rows_match_psutils(spawned):
    child = subprocess.Popen(["sleep", "30"])
    spawned.append(child.pid)
    python3 = str(Path(sys.executable).with_name("python3"))  # on PATH, a wrapper may exec it
    long_name = subprocess.Popen([python3, "-c", "import time; time.sleep(30)"])
    spawned.append(long_name.pid)
    for pid, last in ((child.pid, b"30"), (long_name.pid, b"import time; time.sleep(30)")):
        wait_until(lambda pid=pid, last=last: settled(pid, last))
    fast = {row.pid: row for row in procfs.ProcfsScanner().scan(frozenset())}
    slow = {row.pid: row for row in Scanner().scan(frozenset())}
    again = {row.pid: row for row in procfs.ProcfsScanner().scan(frozenset())}
    # Other processes on the machine may exec or exit meanwhile: compare the steady ones.
    steady = {
        pid for pid in fast.keys() & again.keys() if comparable(fast[pid]) == comparable(again[pid])
    }
    common = steady & slow.keys()
    assert {child.pid, long_name.pid, os.getpid()} <= common
    assert len(common) >= 0.9 * len(slow)
    for pid in common:
        assert comparable(fast[pid]) == comparable(slow[pid]), pid
        assert fast[pid].status in WORDS and slow[pid].status in WORDS
    assert fast[child.pid].status == slow[child.pid].status == "sleeping"
    assert fast[child.pid].cmdline == ("sleep", "30")
    assert fast[long_name.pid].name == "python3"
    assert abs(fast[os.getpid()].rss - slow[os.getpid()].rss) < 16 * 1024 * 1024


def test_cpu_is_measured_between_two_samples(spawned):
    busy = subprocess.Popen(["python3", "-c", "while True: pass"])
    spawned.append(busy.pid)
    readings = []  # the scanner's clock, read once per scan

    def clock() -> float:
        readings.append(time.monotonic())
        return readings[-1]

    scanner = procfs.ProcfsScanner(clock=clock)

    def cpu_seconds() -> float:
        times = psutil.Process(busy.pid).cpu_times()
        return times.user + times.system

    before_first = cpu_seconds()
    first = {row.pid: row for row in scanner.scan(frozenset())}
    after_first = cpu_seconds()
    time.sleep(0.5)
    before_second = cpu_seconds()
    second = {row.pid: row for row in scanner.scan(frozenset())}
    after_second = cpu_seconds()
    assert first[busy.pid].cpu == 0.0
    # However loaded the machine, the figure lies between the CPU time the process certainly
    # used between the scans and the most it can have used, over the scanner's own interval.
    interval = readings[1] - readings[0]
    least = (before_second - after_first) / interval * 100
    most = (after_second - before_first) / interval * 100
    assert most > 5, "the busy loop never ran"
    assert least - 1 <= second[busy.pid].cpu <= most + 1


def test_managed_rows_and_zombies(spawned):
    child = subprocess.Popen(["true"])
    spawned.append(child.pid)
    wait_until(lambda: identity.read_stat(child.pid)[1][0] == b"Z", timeout=10)  # not reaped
    started = identity.start_time(child.pid)
    rows = {row.pid: row for row in procfs.ProcfsScanner().scan(frozenset({(child.pid, started)}))}
    assert rows[child.pid].status == "zombie" and rows[child.pid].cmdline is None
    assert rows[child.pid].managed
    child.wait()


def test_a_command_line_read_mid_exec_is_read_again(spawned, monkeypatch):
    child = subprocess.Popen(["sleep", "30"])
    spawned.append(child.pid)
    wait_until(lambda: settled(child.pid, b"30"))
    real, calls = procfs._static, []

    def caught_mid_exec(pid, comm, zombie):
        cmdline, user, name = real(pid, comm, zombie)
        calls.append(pid)
        first = pid == child.pid and calls.count(pid) == 1
        return ((), user, name) if first else (cmdline, user, name)  # new name, no argv yet

    monkeypatch.setattr(procfs, "_static", caught_mid_exec)
    scanner = procfs.ProcfsScanner()
    first = {row.pid: row for row in scanner.scan(frozenset())}
    second = {row.pid: row for row in scanner.scan(frozenset())}
    assert first[child.pid].cmdline == () and second[child.pid].cmdline == ("sleep", "30")
    # kernel threads only: a zombie has no command line either, and is read again by design;
    # and only those that kept their name (a kworker is renamed for each work it takes up)
    third = {row.pid: row for row in scanner.scan(frozenset())}
    kernel = [
        pid
        for pid in third
        if pid in first and pid in second and identity.is_kernel_thread(pid)
        if first[pid].name == second[pid].name == third[pid].name
    ]
    assert all(calls.count(pid) == 1 for pid in kernel), "a kernel thread's is read once"
    assert calls.count(child.pid) == 2, "read again once, then kept"


@pytest.mark.parametrize(
    ("raw", "split"),
    [
        (b"sleep\x0030\x00", [b"sleep", b"30"]),
        (b"a b\x00c\x00", [b"a b", b"c"]),  # a space inside one argument stays
        (b"mutmut: rpm.server.parser x\x00", [b"mutmut:", b"rpm.server.parser", b"x"]),
        (b"chrome --type=renderer --lang=en", [b"chrome", b"--type=renderer", b"--lang=en"]),
        (b"", []),  # a kernel thread
    ],
)
def test_a_command_line_is_split_as_psutil_splits_it(raw, split):
    """Processes that rewrite their title (setproctitle) leave one string with spaces:
    psutil splits it at the spaces, and so must LIST, or the names differ too."""
    assert procfs._arguments(raw) == split
