"""Reading what became of a process this server is not the parent of."""

import signal
import subprocess

import psutil
import pytest
from twisted.internet.task import Clock

from rpm.errors import NoSuchProcess
from rpm.server.procs import signalling
from rpm.server.procs.identity import zombie_exit_status
from rpm.server.procs.reaper import OrphanReaper
from tests.support import pid_alive, wait_until


def unreaped(command: list[str], spawned, kill: int | None = None) -> subprocess.Popen:
    """Our child, ended (by kill, if given) and left a zombie: not waited for yet."""
    child = subprocess.Popen(command)
    spawned.append(child.pid)
    if kill is not None:
        child.send_signal(kill)
    wait_until(lambda: not pid_alive(child.pid), timeout=10, interval=0.02)
    return child


def test_the_exit_status_of_an_unreaped_process_is_read(spawned):
    exited = unreaped(["sh", "-c", "exit 7"], spawned)
    killed = unreaped(["sleep", "30"], spawned, kill=signal.SIGTERM)
    try:
        started = psutil.Process(exited.pid).create_time()
        assert zombie_exit_status(exited.pid, started) == (7, None)
        assert zombie_exit_status(exited.pid, started + 1) is None  # another process's pid
        killed_started = psutil.Process(killed.pid).create_time()
        assert zombie_exit_status(killed.pid, killed_started) == (None, signal.SIGTERM)
    finally:
        exited.wait(timeout=10)
        killed.wait(timeout=10)
    assert zombie_exit_status(exited.pid, started) is None  # reaped: nothing left to read


def test_a_running_process_has_no_exit_status(spawned):
    child = subprocess.Popen(["sleep", "30"])
    spawned.append(child.pid)
    try:
        assert zombie_exit_status(child.pid, psutil.Process(child.pid).create_time()) is None
    finally:
        child.kill()
        child.wait(timeout=10)


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "without-pidfds"])
def test_a_signal_for_another_start_time_never_lands(spawned, monkeypatch, pidfds):
    monkeypatch.setattr(signalling, "HAVE_PIDFD", pidfds and signalling.HAVE_PIDFD)
    child = subprocess.Popen(["sleep", "30"])
    spawned.append(child.pid)
    started = psutil.Process(child.pid).create_time()
    with pytest.raises(NoSuchProcess, match="reused"):
        signalling.send_to_process(child.pid, started + 1.0, signal.SIGTERM)
    assert pid_alive(child.pid)
    signalling.send_to_process(child.pid, started, signal.SIGTERM)
    assert child.wait(timeout=10) == -signal.SIGTERM


def test_the_reaper_reaps_exited_children_it_was_not_told_about(spawned):
    known, orphan = subprocess.Popen(["true"]), subprocess.Popen(["true"])
    spawned += [known.pid, orphan.pid]
    wait_until(lambda: not pid_alive(known.pid) and not pid_alive(orphan.pid), timeout=10)
    reaper = OrphanReaper(Clock(), lambda: {known.pid})
    assert reaper.reap() == [orphan.pid]
    assert known.wait(timeout=10) == 0, "a child someone else reaps is left to them"
