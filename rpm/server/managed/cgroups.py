"""Managed programs in cgroups of their own (cgroup v2), where the server may create them:
under its own cgroup when that is writable (systemd's Delegate=yes, or root). A program's
cgroup holds every process it ever forks, whatever they do to their group, session or
environment, so STOP can kill them all at once (cgroup.kill), PAUSE freeze them
(cgroup.freeze), and INFO report their total CPU (cpu.stat).

A program is born in its cgroup, before it can fork anything. A START's child is cloned
straight into it (clone3's CLONE_INTO_CGROUP, through the C extension: ready_to_spawn).
Otherwise (a restart, or where that clone is not to be had: clone_refused) the server
itself steps into the program's cgroup for the instant of the spawn, and back out: each
such move takes the kernel's global cgroup_threadgroup_rwsem for writing, which costs a
START more than its spawn. The CPU the server spends on the spawn, and any page it first
touches then, count to the program's cgroup: a fraction of a millisecond, a few pages at
most. Should it ever fail to get out, it never signals or freezes the cgroup it is in: it
would hit itself.

Where the server steps in, a START's spawn happens in the registry's thread (visit,
end_visit), a restart's or a log writer's on the reactor thread (born_inside,
Launcher.spawn_guard): `lock` keeps them apart, and keeps every cgroup.kill and freeze away
while the server is in a program's cgroup.

Without such a cgroup the server falls back on process groups, RPM_RUN markers and being
a subreaper (see control.py). Every method here is a few small reads or writes in cgroupfs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from collections.abc import Iterator

from twisted.logger import Logger

from rpm.errors import NoSuchProcess, NotPermitted
from rpm.server.managed.session import IntoCgroupRefused, into_cgroup
from rpm.server.procs.identity import start_time
from rpm.server.procs.signalling import send_to_process

log = Logger()

CGROUP2 = "cgroup2"


def _cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified)."""
    try:
        with open(mountinfo, encoding="utf-8") as lines:
            for line in lines:
                fields = line.split()
                separator = fields.index("-")
                if fields[separator + 1] == CGROUP2:
                    return fields[4]
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_cgroup(cgroup: str = "/proc/self/cgroup") -> str | None:
    """This process's cgroup v2 path (the `0::` line)."""
    try:
        with open(cgroup, encoding="utf-8") as lines:
            for line in lines:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def delegated_root() -> str | None:
    """The cgroup this server may create cgroups under, or None."""
    mount, own = _cgroup2_mount(), _own_cgroup()
    if mount is None or own is None:
        return None
    path = os.path.join(mount, own.lstrip("/"))
    if not os.access(path, os.W_OK) or not os.path.exists(os.path.join(path, "cgroup.procs")):
        return None
    return path


class ProgramCgroups:
    """One cgroup per managed program, under rpm-<instance> in the server's own cgroup."""

    def __init__(self, base: str):
        self.base = base
        self.home = os.path.dirname(base)  # the server's own cgroup
        self._stuck_in: int | None = None  # the program cgroup the server could not leave
        # held while the server is in a program's cgroup, and to signal or freeze one: a
        # START spawned in the registry's thread must not meet a cgroup.kill of the cgroup
        # it is in, nor a spawn of the reactor thread's (born there with it)
        self.lock = threading.RLock()
        self._visiting = False  # the registry's thread holds the lock for its spawns
        self._visited: int | None = None  # the program cgroup it is in for them
        # whether a child can be cloned straight into its cgroup (session.spawn_into_cgroup)
        self.clone_into = into_cgroup is not None

    @classmethod
    def create(cls, instance: str) -> ProgramCgroups | None:
        """The cgroups of this state directory's programs, where the system allows them."""
        root = delegated_root()
        if root is None:
            return None
        base = os.path.join(root, f"rpm-{instance}")
        try:
            os.makedirs(base, exist_ok=True)
        except OSError:
            return None
        if not os.path.exists(os.path.join(base, "cgroup.kill")):  # cgroup.kill: Linux 5.14
            with contextlib.suppress(OSError):
                os.rmdir(base)  # of no use without it
            return None
        return cls(base)

    def path(self, managed_id: int) -> str:
        return os.path.join(self.base, f"program-{managed_id}")

    def exists(self, managed_id: int) -> bool:
        return os.path.isdir(self.path(managed_id))

    def prepare(self, managed_id: int) -> bool:
        """Make the program's cgroup, or thaw the one it has (a new run is not born paused);
        whether it is there to be born in."""
        try:
            os.mkdir(self.path(managed_id))  # makedirs would look for each parent first
        except FileExistsError:
            self.freeze(managed_id, False)
        except FileNotFoundError:  # rpm-<instance> removed under the server: made again
            return self._made_again(managed_id)
        except OSError:
            return False
        return True

    def _made_again(self, managed_id: int) -> bool:
        try:
            os.makedirs(self.path(managed_id))
        except OSError:
            return False
        return True

    @contextlib.contextmanager
    def born_inside(self, managed_id: int) -> Iterator[None]:
        """Around a spawn: the server in the program's cgroup, so the child is born there.
        Where the server cannot enter, the child is born in the server's cgroup, and the
        process group and marker still find it."""
        with self.lock:
            entered = self._move_server(self.path(managed_id))
            try:
                yield
            finally:
                if entered:
                    self._leave(managed_id)

    def ready_to_spawn(self, managed_id: int) -> int | None:
        """For a spawn in the registry's thread: the program's cgroup made, and its
        directory opened to clone the child into (the caller closes it); where the kernel
        cannot do that, the server visits the cgroup instead (visit), and None."""
        if self.clone_into:
            if not self.prepare(managed_id):
                return None  # born in the server's cgroup, as when it cannot enter
            try:
                return os.open(self.path(managed_id), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                return None
        self.visit(managed_id)
        return None

    def clone_refused(self, managed_id: int, refused: IntoCgroupRefused) -> None:
        """The kernel would not clone a child into the program's cgroup: the server visits
        it instead, for this spawn, and for all from now on where the kernel or a seccomp
        filter cannot do it at all."""
        if refused.errno in (errno.ENOSYS, errno.EINVAL, errno.E2BIG, errno.EPERM):
            self.clone_into = False
            log.info(
                "programs are born in their cgroups with the server stepping in: clone3 "
                "into a cgroup is refused here ({error})",
                error=refused,
            )
        self.visit(managed_id)

    def visit(self, managed_id: int) -> None:
        """For spawns one after another in the registry's thread: the server into this
        program's cgroup (made if need be), straight from the last one's, with the lock
        held until end_visit; where it cannot enter, back in its own, as for born_inside."""
        if not self._visiting:
            self.lock.acquire()
            self._visiting = True
        if self.prepare(managed_id) and self._move_server(self.path(managed_id)):
            self._visited = managed_id
        elif self._visited is not None:
            self._leave(self._visited)
            self._visited = None

    def end_visit(self) -> None:
        """The spawns are done: the server back in its own cgroup, the lock released."""
        if not self._visiting:
            return
        try:
            if self._visited is not None:
                self._leave(self._visited)
        finally:
            self._visited, self._visiting = None, False
            self.lock.release()

    def _leave(self, managed_id: int) -> bool:
        """Back to the server's cgroup (or, failing that, to rpm-<instance>, which no STOP
        kills); whether the server is out of the program's cgroup."""
        if self._move_server(self.home) or self._move_server(self.base):
            if self._stuck_in == managed_id:
                self._stuck_in = None
            return True
        if self._stuck_in != managed_id:
            log.critical(
                "the server cannot leave the cgroup of program {id}: it will not signal or "
                "freeze that cgroup as a whole until it can",
                id=managed_id,
            )
        self._stuck_in = managed_id
        return False

    def _inside(self, managed_id: int) -> bool:
        """Whether the server is in this program's cgroup (after trying once more to leave)."""
        return self._stuck_in == managed_id and not self._leave(managed_id)

    @staticmethod
    def _move_server(cgroup: str) -> bool:
        try:
            _write_file(os.path.join(cgroup, "cgroup.procs"), str(os.getpid()))
        except OSError:
            return False
        return True

    def pids(self, managed_id: int) -> list[int]:
        """Every process of the program in its cgroup now (never the server itself)."""
        text = self._read(managed_id, "cgroup.procs")
        own = os.getpid()
        return [int(pid) for pid in text.split() if int(pid) != own] if text else []

    def populated(self, managed_id: int) -> bool:
        """Whether any process of the program still runs (zombies are out of a cgroup)."""
        text = self._read(managed_id, "cgroup.events") or ""
        return any(line == "populated 1" for line in text.splitlines())

    def kill(self, managed_id: int) -> None:
        """SIGKILL every process in the cgroup: atomically, unless the server is in it too."""
        with self.lock:
            if self._inside(managed_id):
                self.signal_each(managed_id, signal.SIGKILL)
                return
            with contextlib.suppress(OSError):
                self._write(managed_id, "cgroup.kill", "1")

    def signal_each(self, managed_id: int, signum: int) -> None:
        """Send signum to every process in the cgroup, one by one, each by pid and start time
        (a process that ended meanwhile, or one the server may not signal, is passed over)."""
        for pid in self.pids(managed_id):
            started = start_time(pid)
            if started is not None:
                with contextlib.suppress(NoSuchProcess, NotPermitted):
                    send_to_process(pid, started, signum)

    def freeze(self, managed_id: int, frozen: bool) -> None:
        with self.lock:
            if frozen and self._inside(managed_id):
                return
            with contextlib.suppress(OSError):
                self._write(managed_id, "cgroup.freeze", "1" if frozen else "0")

    def usage(self, managed_id: int) -> dict:
        """The program's total CPU seconds, and its memory where the memory controller is
        on (INFO's cgroup_cpu and cgroup_memory)."""
        fields = {}
        for line in (self._read(managed_id, "cpu.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                fields["cgroup_cpu"] = int(value) / 1e6
        memory = self._read(managed_id, "memory.current")
        if memory:
            fields["cgroup_memory"] = int(memory)
        return fields

    def anonymous_memory(self, managed_id: int) -> int | None:
        """Resident anonymous memory of everything in the program's cgroup (page cache left
        out), where the memory controller is on."""
        for line in (self._read(managed_id, "memory.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "anon":
                return int(value)
        return None

    def remove(self, managed_id: int) -> None:
        """Remove the program's cgroup once nothing runs in it: the kernel refuses to remove
        one that holds a process (EBUSY), so it stays while anything of the program runs."""
        with contextlib.suppress(OSError):
            os.rmdir(self.path(managed_id))

    def tidy(self) -> None:
        """At the server's stop: remove the cgroups nothing runs in (and ours, if empty).
        Programs that outlive the server keep theirs, for the next server to use."""
        with contextlib.suppress(OSError):
            for entry in os.listdir(self.base):
                if entry.startswith("program-"):
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(self.base, entry))
            os.rmdir(self.base)

    def _read(self, managed_id: int, name: str) -> str | None:
        try:
            with open(os.path.join(self.path(managed_id), name), encoding="ascii") as handle:
                return handle.read().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def _write(self, managed_id: int, name: str, text: str) -> None:
        _write_file(os.path.join(self.path(managed_id), name), text)


def _write_file(path: str, text: str) -> None:
    """One write to a cgroup's file (created where a stand-in directory has none), through
    os.open: a Python file object costs as much again as the write, and the server moves
    itself twice at each START."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(handle, text.encode("ascii"))
    finally:
        os.close(handle)
