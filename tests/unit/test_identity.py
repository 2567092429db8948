"""Process identity: a pid and its start time name one process, and kernel threads, parents
and ends are read as the kernel reports them (real processes)."""

import os
import signal
import subprocess

import psutil
import pytest

from rpm.errors import NoSuchProcess
from rpm.server.procs import identity
from tests.support import pid_alive, wait_until


@pytest.fixture
def child(spawned):
    process = subprocess.Popen(["sleep", "60"])
    spawned.append(process.pid)
    yield process
    process.kill()
    process.wait(timeout=10)


def test_start_times_agree_within_half_a_clock_tick_only():
    assert identity.same_start(100.0, 100.004)
    assert not identity.same_start(0.0, 0.005)
    assert not identity.same_start(100.0, 100.01)  # the next tick: another process


def test_start_time_is_psutils_with_or_without_procfs(child, monkeypatch):
    expected = psutil.Process(child.pid).create_time()
    assert identity.start_time(child.pid) == pytest.approx(expected, abs=0.005)
    monkeypatch.setattr(identity, "procfs_available", lambda: False)
    assert identity.start_time(child.pid) == expected
    assert identity.start_time(2**22 + 1) is None


def test_require_start_time_names_the_missing_pid():
    with pytest.raises(NoSuchProcess, match=f"^no process has pid {2**22 + 1}$"):
        identity.require_start_time(2**22 + 1)


def test_a_process_is_gone_once_ended_reused_or_absent(child):
    started = identity.start_time(child.pid)
    assert not identity.process_gone(child.pid, started)
    assert identity.alive_with_start(child.pid, started)
    assert identity.process_gone(child.pid, started + 1.0), "another start time: reused"
    assert not identity.alive_with_start(child.pid, started + 1.0)
    assert not identity.alive_with_start(None, started)
    assert not identity.alive_with_start(child.pid, None)
    child.send_signal(signal.SIGTERM)
    wait_until(lambda: not pid_alive(child.pid), timeout=10, interval=0.02)
    assert identity.process_gone(child.pid, started), "a zombie has ended"
    assert identity.process_gone(2**22 + 1, started)


def test_kernel_threads_are_told_by_the_kernels_flag():
    assert not identity.is_kernel_thread(os.getpid())
    assert not identity.is_kernel_thread(2**22 + 1)
    stat = identity.read_stat(2)
    if stat is None or stat[0] != "kthreadd":
        pytest.skip("no kthreadd in this pid namespace")
    assert identity.is_kernel_thread(2)


def test_an_unreadable_stat_line_is_not_a_kernel_thread(monkeypatch):
    monkeypatch.setattr(identity, "read_stat", lambda pid: ("odd", [b"S", b"1"]))
    assert not identity.is_kernel_thread(123)


def test_ancestors_are_the_chain_of_the_pid_given_up_to_init(child):
    chain = identity.ancestors(child.pid)
    assert chain[:2] == [os.getpid(), os.getppid()]
    assert chain[-1] == 1 and chain == [os.getpid(), *identity.ancestors(os.getpid())]
    assert identity.ancestors(2**22 + 1) == []
