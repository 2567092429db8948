"""The log writer of managed programs: a small process that copies each program's stdout
and stderr from pipes to its log files and holds each stream to its cap exactly, at any
write rate, as daemontools' multilog does. It runs in a session of its own, so it outlives
the server as the programs do; it ends once the program side of every pipe it copies is
closed (the programs and everything that inherited their output ended).

A stream's live file is created with its first byte, so a run that writes nothing costs
no file: creating one is the dearest step of a START on some filesystems (0.65 ms of CPU
on this project's ext4 test machines), and this process runs beside every spawn.
Each stream's live file grows to `limit` bytes and no further; then it becomes `<file>.1`
(replacing the one before) and a new live file starts, so a stream never takes more than
twice `limit` on disk. Offsets stay continuous across
files: `<file>.cut` says which offsets `.1` holds and where the live file begins, with the
inode of each, so that a reader can tell a consistent pair from one caught mid-rotation (see
rotation.py, which reads what this writes). Writers of one program (an old run's orphan
still writing beside a new run) take turns under a lock, each seeing the other's rotations.

Run as `python -I -S logwriter.py --serve` with a channel from the server as descriptor 3,
one process copying every run the server hands it (see serve), or as
`python -I -S logwriter.py OUT ERR LIMIT` for one run, with its pipes as descriptors 3 and 4
(and 5, held open until the writer is done, so the server knows when all output is written).
It imports nothing of rpm, so it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import select
import signal
import socket
import sys
from collections.abc import Iterator

CHUNK = 65536
OPEN_LIVE = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def open_log(path: str, flags: int) -> int:
    """Open (creating) a file in the logs directory; where the directory vanished (someone
    removed it under a running server), make it again, private, rather than lose output."""
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.dirname(path), 0o700)  # not the state directory: only its logs/
        return os.open(path, flags, 0o600)


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


class TurnLock:
    """The lock the writers of one program take turns under (`<id>.lock`), created at the
    first write: a run that writes nothing creates no file."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock; where it cannot be created (a full disk), copy without taking
        turns rather than drop the output, and try again at the next write."""
        if self.fd < 0:
            with contextlib.suppress(OSError):
                self.fd = open_log(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        if self.fd < 0:
            yield
            return
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)


class Stream:
    """One stream's live file, created at its first write and rotated before a write would
    take it past limit."""

    def __init__(self, path: str, limit: int, lock: TurnLock):
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
            self.fd = open_log(self.path, OPEN_LIVE)
            info = os.fstat(self.fd)
            self.inode, self.base = info.st_ino, read_base(self.path, info.st_ino)
        return info.st_size

    def write(self, data: bytes) -> None:
        """Append data, rotating whenever the live file is full, so it never passes the
        limit; a file ends at the end of a line unless a line is longer than the limit.
        Where the disk refuses (full, failing), the rest of the data is dropped: the program
        goes on, its output is lost."""
        with self.lock.held(), contextlib.suppress(OSError):
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

    def _rotate(self, size: int) -> None:
        """The live file becomes .1 and a new one starts: the new file and the .cut naming
        both come first, so a reader never pairs a file with the wrong offsets."""
        fresh = open_log(self.path + ".new", OPEN_LIVE | os.O_TRUNC)
        inode, end = os.fstat(fresh).st_ino, self.base + size
        write_cut(self.path, self.base, end, inode, self.inode)
        os.replace(self.path, self.path + ".1")
        os.replace(self.path + ".new", self.path)
        os.close(self.fd)
        self.fd, self.inode, self.base = fresh, inode, end


class Run:
    """One run's two pipes, copied to its stream files until the program's side closes both;
    then its third descriptor (held so the server sees it end) and its lock are closed."""

    def __init__(self, pipes: tuple[int, int], out: str, err: str, limit: int, done: int = -1):
        self.lock = TurnLock(os.path.splitext(out)[0] + ".lock")  # one per program: <id>.lock
        self.streams = {
            pipes[0]: Stream(out, limit, self.lock),
            pipes[1]: Stream(err, limit, self.lock),
        }
        self.done = done

    def close(self) -> None:
        for stream in self.streams.values():
            if stream.fd >= 0:
                os.close(stream.fd)
        self.lock.close()
        if self.done >= 0:
            os.close(self.done)


class Copier:
    """Copies the pipes of any number of runs, each to its files, in this one process."""

    def __init__(self):
        self.poller = select.epoll()
        self.runs: dict[int, Run] = {}  # by pipe, until the pipe reads end-of-file

    def add(self, run: Run) -> None:
        for fd in run.streams:
            self.runs[fd] = run
            self.poller.register(fd, select.EPOLLIN)

    def copy(self, fd: int) -> None:
        """Copy what the pipe holds now; at its end, close it (and the run, if it was the last)."""
        run = self.runs[fd]
        data = os.read(fd, CHUNK)
        if data:
            run.streams[fd].write(data)
            return
        self.poller.unregister(fd)
        os.close(fd)
        del self.runs[fd]
        if not any(pipe in self.runs for pipe in run.streams):
            run.close()

    def drain(self) -> None:
        """Copy until every run's program side has closed its pipes."""
        while self.runs:
            for fd, _ in self.poller.poll():
                self.copy(fd)


def detach() -> None:
    """Outlive the server as the programs do: a session of our own, deaf to the signals
    that stop a terminal's job, and as many descriptors as the system allows."""
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGPIPE"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)  # drain until the programs end
    os.setsid()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def write_logs(pipes: tuple[int, int], out: str, err: str, limit: int) -> None:
    """Be one program's log writer: copy its two pipes to its stdout and stderr files."""
    detach()
    copier = Copier()
    copier.add(Run(pipes, out, err, limit))
    copier.drain()


def serve(channel: int) -> None:
    """Be the log writer of every program the server starts: for each request on the
    channel (a unix socket from the server: `OUT\0ERR\0LIMIT` with the two pipes, and a third
    held open until that run's output is written, so that the server sees it end), copy the
    run's pipes beside all the others. One process for all the runs costs a START no fork.
    When the server closes the channel (or dies), it takes no more runs and ends once the
    ones it has are done."""
    detach()
    requests = socket.socket(fileno=channel)
    copier = Copier()
    copier.poller.register(channel, select.EPOLLIN)
    while copier.runs or requests.fileno() >= 0:
        for fd, _ in copier.poller.poll():
            if fd == channel:
                take_request(requests, copier)
            else:
                copier.copy(fd)


def take_request(requests: socket.socket, copier: Copier) -> None:
    """Start copying the run a request names; at the channel's end, stop taking them."""
    try:
        message, fds, _, _ = socket.recv_fds(requests, 8192, 3)
    except OSError:  # the server is gone
        message, fds = b"", []
    if not message:
        copier.poller.unregister(requests.fileno())
        requests.close()
        return
    try:
        out, err, limit = message.decode().split("\0")
        copier.add(Run((fds[0], fds[1]), out, err, int(limit), fds[2] if len(fds) > 2 else -1))
    except (ValueError, IndexError, OSError):  # a malformed request: drop it, not the others
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve(3)
    else:
        write_logs((3, 4), sys.argv[1], sys.argv[2], int(sys.argv[3]))
