"""Spawning a managed program as the leader of a new session from its first instruction.

Twisted's own Process (what reactor.spawnProcess makes) posix_spawns the child where it can
and forks it otherwise; this one does the same, but the child calls setsid() before it execs
(POSIX_SPAWN_SETSID, or in the forked child). So no signal to the server's process group
can reach the program once the spawn returns, and no helper program (util-linux setsid) has
to be exec'd first: that extra exec cost more than the rest of a START together.

No descriptor of the server leaks into a program: Python opens all of its own close-on-exec
(PEP 446), and close_inherited_on_exec marks those the server inherited, once at its start.
So a spawn looks only at stdin, stdout, stderr and the descriptors it maps, where Twisted
looks at every open descriptor, which grows with every running program.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import signal

from twisted.internet import process

from rpm.server.procs.libc import LIBC

try:
    from rpm.server.managed import _intocgroup as into_cgroup
except ImportError:  # installed without its C part (no compiler there): spawns as before
    into_cgroup = None
CLOSE, DUP2 = 0, 1  # _intocgroup.c's file actions

# Every signal the child could inherit as ignored (SIGPIPE from Python, SIGHUP under nohup)
# starts at its default: all of them, which costs less than asking which are ignored.
DEFAULT_SIGNALS = sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})
RESOURCES = {  # the limits a program may be given, by util-linux prlimit's names
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
    "fsize": resource.RLIMIT_FSIZE,
    "stack": resource.RLIMIT_STACK,
    "memlock": resource.RLIMIT_MEMLOCK,
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
}


class SessionProcess(process.Process):
    """A Process whose child leads its own session and process group before it execs, with
    the resource limits given (`limits`: (name, value) pairs, soft and hard); or, given the
    pid of a child spawn_now started already (`spawned`), the Process that reaps it."""

    def __init__(self, *args, limits=(), spawned: int | None = None, **kwargs):
        self._limits, self._spawned = tuple(limits), spawned
        super().__init__(*args, **kwargs)

    def _trySpawnInsteadOfFork(self, path, uid, gid, executable, args, environment, kwargs):
        """posix_spawnp with the new session asked for, as Twisted's Process does without it;
        False (so the child is forked) where it must be (must_fork). A run spawned already
        (`spawned`, see spawn_now) is only taken over."""
        if self._spawned is not None:
            self.pid, self.status = self._spawned, -1
            return True
        if must_fork(path, self._limits, uid, gid):
            return False
        self.pid = spawn_now(executable, args, environment, kwargs["fdmap"])
        self.status = -1
        return True

    def _fork(self, path, uid, gid, executable, args, environment, **kwargs):
        """Where the child must be forked: fail as posix_spawn does when it cannot enter its
        directory, take its limits or exec its program (Twisted's child would only exit 1,
        after the START was answered OK). The child writes what failed to a close-on-exec
        pipe, which reads end-of-file once the exec succeeded."""
        if not must_fork(path, self._limits, uid, gid):  # Twisted's _fork posix_spawns it
            super()._fork(path, uid, gid, executable, args, environment, **kwargs)
            return
        report, self._exec_report = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                super()._fork(path, uid, gid, executable, args, environment, **kwargs)
            finally:
                os.close(self._exec_report)
            failed = _read_to_end(report)
        finally:
            os.close(report)
        if failed:
            os.waitpid(self.pid, 0)  # it exits right after saying so: nobody else reaps it
            # one write, shorter than PIPE_BUF: it arrives whole or not at all
            step, code, text = failed.decode("utf-8", "replace").split("\0", 2)
            raise ChildRefused(step, int(code), text, path)

    def _setupChild(self, fdmap):
        """In the forked child: a new session first, then the descriptors, as Twisted does,
        keeping the pipe that reports a failure to the parent (see _fork)."""
        os.setsid()
        super()._setupChild({**fdmap, self._exec_report: self._exec_report})
        os.set_inheritable(self._exec_report, False)

    def _execChild(self, path, uid, gid, executable, args, environment):
        """In the forked child: its directory, its limits, then its program; tells the
        parent which of them failed, and why."""
        step = "cwd"
        try:
            if path:
                os.chdir(path)
            for name, value in self._limits:
                step = f"limit {name}={value}"
                resource.setrlimit(RESOURCES[name], (value, value))
            step = "exec"
            super()._execChild(None, uid, gid, executable, args, environment)
        except Exception as err:  # setrlimit and an embedded NUL raise ValueError: EINVAL
            code = getattr(err, "errno", None) or errno.EINVAL
            text = getattr(err, "strerror", None) or str(err)
            os.write(self._exec_report, f"{step}\0{code}\0{text}".encode("utf-8", "replace"))
            raise


def must_fork(path: str | None, limits, uid: int | None = None, gid: int | None = None) -> bool:
    """Whether posix_spawn cannot do it all, so the child must be forked: a directory to
    change to, limits to set, another user."""
    moves = path is not None and os.path.abspath(path) != os.path.abspath(".")
    return uid is not None or gid is not None or bool(limits) or moves


class ChildRefused(OSError):
    """A forked child failed before it ran its program: `step` says at what (cwd, a limit
    such as `limit nofile=64`, exec)."""

    def __init__(self, step: str, code: int, text: str, path: str | None):
        super().__init__(code, text, path)
        self.step = step


def spawn_now(executable: str, args: list[str], environment, fdmap: dict[int, int]) -> int:
    """posix_spawnp the program as the leader of a new session, its descriptors mapped as
    fdmap says (child's: parent's), its signals at their defaults; returns its pid. Any
    thread may call it: it runs no Python code in the child."""
    return os.posix_spawnp(
        executable,
        args,
        os.environ if environment is None else environment,
        file_actions=_file_actions(fdmap, process._PS_CLOSE, process._PS_DUP2),
        setsigdef=DEFAULT_SIGNALS,
        setsid=True,
    )


class IntoCgroupRefused(Exception):
    """The kernel would not clone a child into that cgroup (`errno` says why): no clone3 or
    no CLONE_INTO_CGROUP (before Linux 5.7), a seccomp filter, the cgroup not writable or
    gone. Not an OSError: nothing failed that a spawn the old way would not do."""

    def __init__(self, code: int):
        super().__init__(code, os.strerror(code))
        self.errno = code


def spawn_into_cgroup(path: str, args: list[str], environment, fdmap, cgroup: int) -> int:
    """spawn_now's spawn, with the child born in the cgroup whose directory is open at
    `cgroup` (clone3's CLONE_INTO_CGROUP, see _intocgroup.c); `path` is the file to exec
    (no PATH search). A clone the kernel refuses raises IntoCgroupRefused, or OSError where
    any spawn would fail (the user out of processes, the system out of memory)."""
    try:
        return into_cgroup.spawn_into(
            os.fsencode(path),
            [os.fsencode(arg) for arg in args],
            [os.fsencode(f"{key}={value}") for key, value in environment.items()],
            [(*action, 0)[:3] for action in _file_actions(fdmap, CLOSE, DUP2)],
            cgroup,
        )
    except into_cgroup.CloneRefused as err:
        if err.errno in (errno.EAGAIN, errno.ENOMEM):
            raise OSError(err.errno, err.strerror) from None
        raise IntoCgroupRefused(err.errno) from None


def _file_actions(fdmap: dict[int, int], close, dup2) -> list[tuple[int, ...]]:
    """The closes and dup2s that give the child fdmap's descriptors (Twisted's rules)."""
    descriptors = []
    for fd in {0, 1, 2, *fdmap.values()}:
        with contextlib.suppress(OSError):  # stdin, say, closed
            descriptors.append((fd, fcntl.fcntl(fd, fcntl.F_GETFD, fcntl.FD_CLOEXEC)))
    return process._getFileActions(descriptors, fdmap, doClose=close, doDup2=dup2)


CLONE_FS = 0x200


def umask_of_this_thread() -> bool:
    """Give the calling thread a umask (and working directory) of its own, unshared from
    the rest of the process (unshare(CLONE_FS)), so that it can set the one a spawn gives
    its child without changing the others'; whether it could."""
    try:
        return LIBC.unshare(CLONE_FS) == 0
    except AttributeError:  # no unshare: not Linux
        return False


def _read_to_end(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 64):
        data += chunk
    return data


def close_inherited_on_exec() -> None:
    """Mark every descriptor above stderr close-on-exec, so that none the server inherited
    (from a shell, a supervisor) reaches its programs."""
    for fd in process._listOpenFDs():
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def spawn_in_session(
    reactor, protocol, executable, args, env, path=None, childFDs=None, limits=(), spawned=None
):
    """reactor.spawnProcess's call, with the child leading a session of its own and taking
    the resource limits given; or, for a child spawn_now started (`spawned`, its pid), the
    Process that reaps it and tells `protocol` of it."""
    return SessionProcess(
        reactor,
        executable,
        args,
        env,
        path,
        protocol,
        None,
        None,
        childFDs,
        limits=limits,
        spawned=spawned,
    )
