"""Reading what became of a process this server is not the parent of."""

import errno
import signal
import subprocess

import psutil
import pytest

from rpm.errors import NoSuchProcess, NotPermitted
from rpm.server.procs import signalling
from rpm.server.procs.identity import zombie_exit_status
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


@pytest.mark.skipif(not signalling.HAVE_PIDFD, reason="this kernel has no pidfds")
def test_with_pidfds_the_signal_goes_through_the_pidfd_opened_before_the_check(
    sleeper, monkeypatch
):
    """The pidfd pins the process the start time was checked for: a pid reused between the
    check and the kill cannot receive the signal."""
    child, started = sleeper, psutil.Process(sleeper.pid).create_time()
    sent = []
    monkeypatch.setattr(signalling.signal, "pidfd_send_signal", lambda fd, sig: sent.append(sig))
    monkeypatch.setattr(signalling.psutil.Process, "send_signal", lambda *args: sent.append(0))
    signalling.send_to_process(child.pid, started, signal.SIGUSR1)
    assert sent == [signal.SIGUSR1]


def no_pidfds(pid):
    raise AssertionError("pidfd_open called where pidfds are off")


def unsupported(pid):
    raise OSError(errno.ENOSYS, "Function not implemented")


@pytest.mark.parametrize(
    ("have_pidfd", "pidfd_open"),
    [(False, no_pidfds), (True, unsupported)],
    ids=["pidfds-off-none-opened", "kernel-refuses-pidfds"],
)
def test_without_usable_pidfds_psutil_signals(sleeper, monkeypatch, have_pidfd, pidfd_open):
    started = psutil.Process(sleeper.pid).create_time()
    monkeypatch.setattr(signalling, "HAVE_PIDFD", have_pidfd)
    monkeypatch.setattr(signalling.os, "pidfd_open", pidfd_open, raising=False)
    signalling.send_to_process(sleeper.pid, started, signal.SIGTERM)
    assert sleeper.wait(timeout=10) == -signal.SIGTERM


def test_a_pid_with_no_process_is_named(sleeper):
    started = psutil.Process(sleeper.pid).create_time()
    gone = unreaped(["true"], [])
    gone.wait(timeout=10)
    with pytest.raises(NoSuchProcess, match=f"^no process has pid {gone.pid}$"):
        signalling.send_to_process(gone.pid, started, signal.SIGTERM)


@pytest.mark.parametrize(
    "raised, expected, message",
    [
        (
            PermissionError(1, "Operation not permitted"),
            NotPermitted,
            "the system refused SIGTERM to pid {pid}",
        ),
        (ProcessLookupError(3, "No such process"), NoSuchProcess, "no process has pid {pid}"),
    ],
    ids=["refused", "vanished"],
)
def test_errors_name_the_pid_and_the_signal(sleeper, monkeypatch, raised, expected, message):
    started = psutil.Process(sleeper.pid).create_time()

    def fail(*args):
        raise raised

    monkeypatch.setattr(signalling.signal, "pidfd_send_signal", fail)
    monkeypatch.setattr(signalling.psutil.Process, "send_signal", fail)
    with pytest.raises(expected, match=f"^{message.format(pid=sleeper.pid)}$"):
        signalling.send_to_process(sleeper.pid, started, signal.SIGTERM)
