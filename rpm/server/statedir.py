"""Where the server keeps its token, registry and logs: a private directory (mode 0700)."""

from __future__ import annotations

import contextlib
import fcntl
import os

FORBIDDEN = ("/var/lib/rpm",)  # the RPM package manager's database


def check_state_dir(path: str) -> str | None:
    """Why path cannot be the state directory, or None if it can: the RPM package manager's
    database, a symbolic link (it could be pointed elsewhere behind our back), or a
    directory another user owns (who could then read or replace what we keep there)."""
    if os.path.realpath(path).rstrip("/") in FORBIDDEN:
        return (
            f"{path} is the RPM package manager's database; "
            "choose another --state-dir such as /var/lib/rpm-server"
        )
    if os.path.islink(path.rstrip("/") or "/"):
        return f"--state-dir {path} is a symbolic link; give the real directory"
    try:
        owner = os.stat(path).st_uid
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot use --state-dir {path}: {err.strerror}"
    if owner != os.geteuid():
        return (
            f"--state-dir {path} belongs to uid {owner}, not to this user "
            f"(uid {os.geteuid()}); use a directory of your own"
        )
    return None


def prepare_state_dir(path: str) -> None:
    """Create the directory (and its logs/) with mode 0700, tightening looser modes."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)
    os.makedirs(os.path.join(path, "logs"), mode=0o700, exist_ok=True)


class StateDirBusy(Exception):
    """Another server holds the state directory; the message names its pid."""


class StateLock:
    """The exclusive lock on a state directory, held for the server's life: two servers on
    one directory would both adopt the same processes, restart the same programs and hand
    out the same ids. It is a flock on the directory itself, which no removed file can
    undo, and one on STATE_DIR/lock, which holds the holder's pid (and is what servers
    before this one locked)."""

    def __init__(self, state_dir: str):
        self.directory = state_dir
        self.path = os.path.join(state_dir, "lock")
        self._fds: list[int] = []

    def acquire(self) -> None:
        """Take the lock, or raise StateDirBusy naming the server that holds it."""
        self._take(os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        self._take(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        os.ftruncate(self._fds[-1], 0)
        os.pwrite(self._fds[-1], f"{os.getpid()}\n".encode(), 0)

    def _take(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.release()
            raise StateDirBusy(
                f"another rpm server (pid {self._holder()}) uses the state directory "
                f"{self.directory}; stop it, or give this one another --state-dir"
            ) from None
        self._fds.append(fd)

    def _holder(self) -> str:
        """The pid the lock file names (it may have been removed)."""
        try:
            with open(self.path, "rb") as lock:
                return lock.read(32).decode("ascii", "replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor releases its lock
        self._fds = []
