"""A managed program's log writer: a small process that copies the program's stdout and
stderr from pipes to its log files and holds each stream to its cap exactly, at any write
rate, as daemontools' multilog does. It runs in a session of its own, so it outlives the
server as the program does; it ends when the program's side of both pipes is closed (the
program and everything that inherited its output ended).

Each stream's live file grows to `limit` bytes and no further; then it becomes `<file>.1`
(replacing the one before) and a new live file starts, so a stream never takes more than
twice `limit` on disk. Offsets stay continuous across
files: `<file>.cut` says which offsets `.1` holds and where the live file begins, with the
inode of each, so that a reader can tell a consistent pair from one caught mid-rotation (see
rotation.py, which reads what this writes). Writers of one program (an old run's orphan
still writing beside a new run) take turns under a lock, each seeing the other's rotations.

Run as `python -I -S logwriter.py OUT ERR LIMIT` with the pipes as descriptors 3 and 4 (and
5, held open until the writer is done, so the server knows when all output is written), or
as `python -I -S logwriter.py --serve` to fork a writer for each request from the server
(see serve). It imports nothing of rpm, so it starts in a few milliseconds.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import sys

CHUNK = 65536
OPEN_LIVE = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def read_base(path: str, inode: int) -> int:
    """Where the live file with this inode begins in its stream (0 before any rotation)."""
    try:
        with open(path + ".cut", encoding="ascii") as handle:
            fields = handle.read().split()
    except OSError:
        return 0
    if len(fields) == 5 and int(fields[3]) == inode:
        return int(fields[1])
    return 0


def write_cut(path: str, first: int, end: int, live_inode: int, old_inode: int) -> None:
    with open(path + ".cut.tmp", "w", encoding="ascii") as handle:
        handle.write(f"{first} {end} 0 {live_inode} {old_inode}\n")
    os.replace(path + ".cut.tmp", path + ".cut")


class Stream:
    """One stream's live file, rotated before a write would take it past limit."""

    def __init__(self, path: str, limit: int, lock: int):
        self.path, self.limit, self.lock = path, limit, lock
        self.fd = -1
        self.inode = self.base = 0

    def _sync(self) -> int:
        """Follow a rotation another writer made; returns the live file's size."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            info = None
        if info is None or info.st_ino != self.inode:
            if self.fd >= 0:
                os.close(self.fd)
            self.fd = os.open(self.path, OPEN_LIVE, 0o600)
            info = os.fstat(self.fd)
            self.inode, self.base = info.st_ino, read_base(self.path, info.st_ino)
        return info.st_size

    def write(self, data: bytes) -> None:
        """Append data, rotating whenever the live file is full, so it never passes the
        limit; a file ends at the end of a line unless a line is longer than the limit.
        Where the disk refuses (full, failing), the rest of the data is dropped: the program
        goes on, its output is lost."""
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            view = memoryview(data)
            while view:
                size = self._sync()
                part = view[: self.limit - size]
                if len(part) < len(view):  # the file fills up: end it at the end of a line
                    end = bytes(part).rfind(b"\n") + 1
                    if end == 0 and size:  # no line ends in what fits: start the next file
                        self._rotate(size)
                        continue
                    part = part[:end] if end else part  # a line longer than the limit
                view = view[os.write(self.fd, part) :]
        except OSError:
            return
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)

    def _rotate(self, size: int) -> None:
        """The live file becomes .1 and a new one starts: the new file and the .cut naming
        both come first, so a reader never pairs a file with the wrong offsets."""
        fresh = os.open(self.path + ".new", OPEN_LIVE | os.O_TRUNC, 0o600)
        inode, end = os.fstat(fresh).st_ino, self.base + size
        write_cut(self.path, self.base, end, inode, self.inode)
        os.replace(self.path, self.path + ".1")
        os.replace(self.path + ".new", self.path)
        os.close(self.fd)
        self.fd, self.inode, self.base = fresh, inode, end


def copy(sources: dict[int, Stream]) -> None:
    """Copy from each pipe to its stream until every pipe is closed by the program's side."""
    poller = select.poll()
    for fd in sources:
        poller.register(fd, select.POLLIN)
    while sources:
        for fd, _ in poller.poll():
            data = os.read(fd, CHUNK)
            if data:
                sources[fd].write(data)
            else:
                poller.unregister(fd)
                del sources[fd]


def write_logs(pipes: tuple[int, int], out: str, err: str, limit: int) -> None:
    """Be a program's log writer: copy its two pipes to its stdout and stderr files."""
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGPIPE"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)  # drain until the program ends
    os.setsid()  # out of the server's session: it outlives the server, as the program does
    lock_path = os.path.splitext(out)[0] + ".lock"  # one per program: <id>.lock
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    copy({pipes[0]: Stream(out, limit, lock), pipes[1]: Stream(err, limit, lock)})


def serve(channel: int) -> None:
    """The server's writer factory: for each request on the channel (a unix socket from the
    server: `OUT\0ERR\0LIMIT` with the two pipes, and a third the writer only holds open, so
    that the server sees it end), fork a log writer, which costs a START far less than
    starting a Python. It ends when the server closes the channel (or dies);
    the writers it forked go on by themselves."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the writers
    requests = socket.socket(fileno=channel)
    while True:
        message, fds, _, _ = socket.recv_fds(requests, 8192, 3)
        if not message:
            return
        if len(fds) >= 2 and os.fork() == 0:
            requests.close()  # only the factory answers the server
            try:
                out, err, limit = message.decode().split("\0")
                write_logs((fds[0], fds[1]), out, err, int(limit))
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve(3)
    else:
        write_logs((3, 4), sys.argv[1], sys.argv[2], int(sys.argv[3]))
