"""Process identity: a pid and its start time name one process, and kernel threads, parents
and ends are read as the kernel reports them (real processes)."""

import contextlib
import os
import signal
import subprocess

import psutil
import pytest

from rpm.errors import NoSuchProcess
from rpm.server.procs import identity
from tests.support import is_zombie, pid_alive, wait_until


def test_start_times_agree_within_half_a_clock_tick_only():
    assert identity.same_start(100.0, 100.004)
    assert not identity.same_start(0.0, 0.005)
    assert not identity.same_start(100.0, 100.01)  # the next tick: another process


def test_start_time_is_psutils_with_or_without_procfs(sleeper, monkeypatch):
    expected = psutil.Process(sleeper.pid).create_time()
    assert identity.start_time(sleeper.pid) == pytest.approx(expected, abs=0.005)
    monkeypatch.setattr(identity, "procfs_available", lambda: False)
    assert identity.start_time(sleeper.pid) == expected
    assert identity.start_time(2**22 + 1) is None


def test_require_start_time_names_the_missing_pid():
    with pytest.raises(NoSuchProcess, match=f"^no process has pid {2**22 + 1}$"):
        identity.require_start_time(2**22 + 1)


def test_a_process_is_gone_once_ended_reused_or_absent(sleeper):
    started = identity.start_time(sleeper.pid)
    assert not identity.process_gone(sleeper.pid, started)
    assert identity.alive_with_start(sleeper.pid, started)
    assert identity.process_gone(sleeper.pid, started + 1.0), "another start time: reused"
    assert not identity.alive_with_start(sleeper.pid, started + 1.0)
    assert not identity.alive_with_start(None, started)
    assert not identity.alive_with_start(sleeper.pid, None)
    sleeper.send_signal(signal.SIGTERM)
    wait_until(lambda: not pid_alive(sleeper.pid), timeout=10, interval=0.02)
    assert identity.process_gone(sleeper.pid, started), "a zombie has ended"
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


def test_ancestors_are_the_chain_of_the_pid_given_up_to_init(sleeper):
    chain = identity.ancestors(sleeper.pid)
    assert chain[:2] == [os.getpid(), os.getppid()]
    assert chain[-1] == 1 and chain == [os.getpid(), *identity.ancestors(os.getpid())]
    assert identity.ancestors(2**22 + 1) == []


def test_a_run_is_found_by_its_marker_at_its_root_and_not_as_a_zombie(spawned, tmp_path):
    import uuid

    marker = f"test.{uuid.uuid4().hex}"
    env = {**os.environ, identity.RUN_VARIABLE: marker}
    ready = tmp_path / "ready"
    root = subprocess.Popen(["sh", "-c", f"sleep 60 & touch {ready}; wait"], env=env)
    spawned.append(root.pid)
    ended = subprocess.Popen(["true"], env={identity.RUN_VARIABLE: f"{marker}.ended"})
    wait_until(lambda: ready.exists() and not pid_alive(ended.pid), timeout=10, interval=0.02)
    found = identity.find_runs([marker, f"{marker}.ended", f"{marker}.absent"])
    assert found == {marker: (root.pid, identity.start_time(root.pid))}, "sh, not its sleep"
    ended.wait(timeout=10)


def test_a_process_that_cannot_be_inspected_is_taken_as_alive(monkeypatch):
    def denied(pid):
        raise psutil.AccessDenied(pid)

    monkeypatch.setattr(identity.psutil, "Process", denied)
    assert not identity.process_gone(4242, 1.0)


def test_an_exit_watch_cancelled_closes_its_pidfd_once(sleeper):
    if not identity.HAVE_PIDFD:
        pytest.skip("this kernel has no pidfds")
    from tests.unit.test_supervisor import FakeProcessReactor

    reactor = FakeProcessReactor()
    watch = identity.PidfdExitWatch(reactor, sleeper.pid, lambda: None)
    fd = watch.fileno()
    assert reactor.readers == {watch}
    watch.cancel()
    assert reactor.readers == set() and watch.fileno() == -1
    with pytest.raises(OSError):
        os.fstat(fd)
    watch.cancel()  # again: nothing left to close


# -- a program's processes: its group, its marker, its tree (real processes) -----------------


@pytest.fixture
def program(spawned, tmp_path):
    """A program as rpm starts one: a session and group of its own, with a marker, a child
    and a grandchild in its group, a zombie child in its group, and a daemon that left the
    group (setsid) but kept the marker."""
    import uuid

    marker = f"test.{uuid.uuid4().hex}"
    ready = tmp_path / "ready"
    script = (
        f"sh -c 'sleep 60; :' & setsid sleep 61 & echo $! > {ready}.daemon; "
        f"env -u {identity.RUN_VARIABLE} sh -c 'true & exec sleep 62' & touch {ready}; wait"
    )
    leader = subprocess.Popen(
        ["sh", "-c", script],
        env={**os.environ, identity.RUN_VARIABLE: marker},
        start_new_session=True,
    )
    spawned.append(leader.pid)
    wait_until(ready.exists, timeout=10, interval=0.02)
    daemon = int((tmp_path / "ready.daemon").read_text())
    spawned.append(daemon)
    wait_until(lambda: os.getsid(daemon) == daemon, timeout=10, interval=0.02)
    wait_until(lambda: len(identity.descendants(leader.pid)) == 5, timeout=10, interval=0.02)
    kids = identity.descendants(leader.pid)  # sh, sleep 60, sleep 61, sleep 62, its zombie
    wait_until(lambda: any(is_zombie(pid) for pid in kids), timeout=10, interval=0.02)
    spawned.extend(kids)
    yield leader, marker, daemon
    for pid in [*kids, daemon]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_a_programs_processes_are_its_group_and_whoever_carries_its_marker(program):
    leader, marker, daemon = program
    everything = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    found = identity.processes_of_run(everything, leader.pid, marker)
    assert leader.pid in found and daemon in found
    assert len(found) == 5, "the leader, its sh and sleep, the daemon, the sleep 62; no zombie"
    assert found[daemon] == identity.start_time(daemon)
    by_marker = identity.processes_of_run(everything, None, marker)
    assert len(by_marker) == 4, "each carries the marker but the sleep 62, which dropped it"
    by_group = identity.processes_of_run(everything, leader.pid, "test.other")
    assert daemon not in by_group and leader.pid in by_group, "the daemon left the group"


def test_descendants_are_the_whole_tree_below(program):
    leader, _, daemon = program
    below = identity.descendants(leader.pid)
    assert daemon in below and len(below) == 5, "children and grandchildren"
    assert identity.descendants(2**22 + 1) == []


def test_descendants_leave_out_what_they_are_told_to_skip_and_all_below_it(program):
    leader, _, _ = program
    parent = next(
        child for child in identity.children_of(leader.pid) if identity.children_of(child)
    )
    below = identity.descendants(leader.pid, skip={parent})
    assert parent not in below and not set(identity.children_of(parent)) & set(below)
    assert set(below) < set(identity.descendants(leader.pid))


def test_stopped_zombie_and_gone_processes_count_as_stopped_or_gone(sleeper):
    assert not identity.stopped_or_gone(sleeper.pid)
    sleeper.send_signal(signal.SIGSTOP)
    wait_until(lambda: identity.stopped_or_gone(sleeper.pid), timeout=10, interval=0.02)
    sleeper.send_signal(signal.SIGCONT)
    wait_until(lambda: not identity.stopped_or_gone(sleeper.pid), timeout=10, interval=0.02)
    sleeper.kill()
    wait_until(lambda: identity.stopped_or_gone(sleeper.pid), timeout=10, interval=0.02)
    sleeper.wait(timeout=10)
    assert identity.stopped_or_gone(sleeper.pid)


def test_a_group_is_alive_while_a_process_of_it_runs_and_is_signalled_whole(program):
    from rpm.server.procs import signalling

    leader, _, daemon = program
    assert signalling.group_alive(leader.pid)
    signalling.send_to_group(leader.pid, signal.SIGKILL)
    leader.wait(timeout=10)
    wait_until(lambda: not signalling.group_alive(leader.pid), timeout=10, interval=0.02)
    assert pid_alive(daemon), "a process that left the group is not in it"

    def reaped() -> bool:  # its killed child is a zombie until init reaps it
        try:
            os.killpg(leader.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(reaped, timeout=10, interval=0.02)
    with pytest.raises(NoSuchProcess, match=f"^process group {leader.pid} is empty$"):
        signalling.send_to_group(leader.pid, signal.SIGTERM)


def test_process_groups_of_one_or_less_are_refused_before_any_signal(monkeypatch):
    """Group 0 is the caller's own, 1 is init's, -1 is every process: the guard is tested with
    killpg replaced, so that a broken guard (as `make mutate` makes) signals nothing real."""
    from rpm.server.procs import signalling

    sent = []
    monkeypatch.setattr(signalling.os, "killpg", lambda pgid, signum: sent.append(pgid))
    for pgid in (1, 0, -1):
        with pytest.raises(ValueError, match=f"refusing to signal process group {pgid}"):
            signalling.send_to_group(pgid, signal.SIGTERM)
    assert sent == []


def test_a_group_the_system_will_not_signal_is_refused_by_name(monkeypatch):
    from rpm.errors import NotPermitted
    from rpm.server.procs import signalling

    def refuse(pgid, signum):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(signalling.os, "killpg", refuse)
    with pytest.raises(NotPermitted) as caught:
        signalling.send_to_group(4242, signal.SIGTERM)
    assert caught.value.message == (
        "the system refused SIGTERM to pid 4242: Operation not permitted"
    )


def test_a_group_of_zombies_only_is_not_alive_and_a_gone_one_neither(spawned, monkeypatch):
    from rpm.server.procs import signalling

    leader = subprocess.Popen(["true"], start_new_session=True)  # a zombie, ours, unreaped
    spawned.append(leader.pid)
    wait_until(lambda: is_zombie(leader.pid), timeout=10, interval=0.02)
    probes = []
    real_killpg = os.killpg

    def killpg(pgid, signum):
        probes.append((pgid, signum))
        real_killpg(pgid, signum)

    monkeypatch.setattr(signalling.os, "killpg", killpg)
    assert not signalling.group_alive(leader.pid)
    assert probes == [(leader.pid, 0)], "asking is signal 0: nothing is sent"
    leader.wait(timeout=10)
    assert not signalling.group_alive(leader.pid)


def test_descendants_list_each_process_once_though_read_under_two_parents(monkeypatch):
    tree = {1: [2, 3], 2: [3]}  # 3 was re-parented to 1 while the walk went on
    monkeypatch.setattr(identity, "children_of", lambda pid: tree.get(pid, []))
    assert sorted(identity.descendants(1)) == [2, 3]
