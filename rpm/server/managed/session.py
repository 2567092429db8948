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
import signal

from twisted.internet import process

# Every signal the child could inherit as ignored (SIGPIPE from Python, SIGHUP under nohup)
# starts at its default: all of them, which costs less than asking which are ignored.
DEFAULT_SIGNALS = sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})


class SessionProcess(process.Process):
    """A Process whose child leads its own session and process group before it execs."""

    def _trySpawnInsteadOfFork(self, path, uid, gid, executable, args, environment, kwargs):
        """posix_spawnp with the new session asked for, as Twisted's Process does without it;
        False (so the child is forked) where posix_spawn cannot do it all: a directory to
        change to, another user."""
        if uid is not None or gid is not None:
            return False
        if path is not None and os.path.abspath(path) != os.path.abspath("."):
            return False
        descriptors = []
        for fd in {0, 1, 2, *kwargs["fdmap"].values()}:
            with contextlib.suppress(OSError):  # stdin, say, closed
                descriptors.append((fd, fcntl.fcntl(fd, fcntl.F_GETFD, fcntl.FD_CLOEXEC)))
        self.pid = os.posix_spawnp(
            executable,
            args,
            os.environ if environment is None else environment,
            file_actions=process._getFileActions(
                descriptors, kwargs["fdmap"], doClose=process._PS_CLOSE, doDup2=process._PS_DUP2
            ),
            setsigdef=DEFAULT_SIGNALS,
            setsid=True,
        )
        self.status = -1
        return True

    def _fork(self, path, uid, gid, executable, args, environment, **kwargs):
        """Where the child must be forked: fail as posix_spawn does when it cannot enter its
        directory or exec its program (Twisted's child would only exit 1, after the START
        was answered OK). The child writes what failed to a close-on-exec pipe, which reads
        end-of-file once the exec succeeded."""
        if self._trySpawnInsteadOfFork(path, uid, gid, executable, args, environment, kwargs):
            return
        report, self._exec_report = os.pipe2(os.O_CLOEXEC)
        try:
            super()._fork(path, uid, gid, executable, args, environment, **kwargs)
        finally:
            os.close(self._exec_report)
        try:
            failed = _read_to_end(report)
        finally:
            os.close(report)
        if failed:
            os.waitpid(self.pid, 0)  # it exits right after saying so: nobody else reaps it
            step, code = failed.decode("ascii").split()
            error = CwdRefused if step == "cwd" else OSError
            raise error(int(code), os.strerror(int(code)), path)

    def _setupChild(self, fdmap):
        """In the forked child: a new session first, then the descriptors, as Twisted does,
        keeping the pipe that reports a failure to the parent (see _fork)."""
        os.setsid()
        super()._setupChild({**fdmap, self._exec_report: self._exec_report})
        os.set_inheritable(self._exec_report, False)

    def _execChild(self, path, uid, gid, executable, args, environment):
        """In the forked child: its directory, then its program; tells the parent which
        of them failed, and why."""
        step = "cwd"
        try:
            if path:
                os.chdir(path)
            step = "exec"
            super()._execChild(None, uid, gid, executable, args, environment)
        except Exception as err:  # an embedded NUL is a ValueError: EINVAL
            code = getattr(err, "errno", None) or errno.EINVAL
            os.write(self._exec_report, f"{step} {code}".encode("ascii"))
            raise


class CwdRefused(OSError):
    """A forked child could not enter its working directory (--cwd)."""


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


def spawn_in_session(reactor, protocol, executable, args, env, path=None, childFDs=None):
    """reactor.spawnProcess's call, with the child leading a session of its own."""
    return SessionProcess(reactor, executable, args, env, path, protocol, None, None, childFDs)
