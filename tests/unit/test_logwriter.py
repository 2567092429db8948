"""The log writer as a real process on real pipes, and the readers of what it writes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import sys
import time

import pytest

from rpm.server.managed import rotation
from rpm.server.managed.launch import LOG_WRITER
from rpm.server.managed.logfiles import LogFiles, last_lines

LIMIT = 1000


class Writer:
    """logwriter.py for program 1 in logs, fed through two pipes (closed: it ends)."""

    def __init__(self, logs, limit: int = LIMIT):
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in (out_read, err_read)]
        arguments = [str(logs / "1.out"), str(logs / "1.err"), str(limit)]
        self.pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-I", "-S", LOG_WRITER, *arguments],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, high[0], 3),
                (os.POSIX_SPAWN_DUP2, high[1], 4),
            ],
        )
        for fd in (out_read, err_read, *high):
            os.close(fd)
        self.out = os.fdopen(out_write, "wb", buffering=0)
        self.err = os.fdopen(err_write, "wb", buffering=0)

    def close_and_wait(self) -> int:
        self.out.close()
        self.err.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError("the log writer did not end when its pipes closed")


@pytest.fixture
def logs(tmp_path):
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs"


def lines(count: int, start: int = 0) -> bytes:
    return b"".join(b"line %05d %s\n" % (n, b"x" * 40) for n in range(start, start + count))


def test_each_stream_stays_within_twice_its_limit_and_its_offsets_run_on(logs):
    writer = Writer(logs)
    data = lines(200)  # 10,400 bytes: ten rotations
    for start in range(0, len(data), 700):
        writer.out.write(data[start : start + 700])
    writer.err.write(b"oops\n")
    assert writer.close_and_wait() == 0, "it ends when the program's side is closed"
    path = str(logs / "1.out")
    rotated = os.path.getsize(path + ".1")
    assert os.path.getsize(path) <= LIMIT and LIMIT - 52 < rotated <= LIMIT, "whole lines"
    assert sorted(os.listdir(logs)) == [
        "1.err", "1.lock", "1.out", "1.out.1", "1.out.cut",
    ]  # fmt: skip
    assert rotation.stream_size(path) == len(data), "offsets count everything written"
    cut = rotation.read_cut(path)
    assert cut.renamed and cut.end == len(data) - os.path.getsize(path)
    begin, kept = rotation.read_from(path, 0, len(data))
    assert begin == cut.first == cut.end - rotated, "older than .1: gone, and said so"
    assert kept == data[begin : cut.end] and kept.startswith(b"line ")
    assert rotation.read_from(path, cut.end, 100_000) == (cut.end, data[cut.end :])
    [(end, text)] = last_lines(path, 1)
    assert (end, text) == (len(data), "line 00199 " + "x" * 40)
    assert LogFiles(str(logs)).sizes(1) == {"stdout": len(data), "stderr": 5}


def test_two_writers_of_one_program_take_turns_and_lose_nothing(logs):
    writers = [Writer(logs, limit=4_000), Writer(logs, limit=4_000)]
    for number in range(300):
        writers[number % 2].out.write(lines(1, number))
    assert [writer.close_and_wait() for writer in writers] == [0, 0]
    path = str(logs / "1.out")
    total = rotation.stream_size(path)
    assert total == len(lines(300))
    cut = rotation.read_cut(path)
    kept = (
        rotation.read_from(path, cut.first, total)[1] + rotation.read_from(path, cut.end, total)[1]
    )
    assert len(kept) == total - cut.first and os.path.getsize(path) <= 4_000
    every = set(lines(300).splitlines())
    assert all(line in every for line in kept.splitlines()[1:]), "lines whole, in one piece"


def test_a_reader_never_pairs_a_file_with_the_wrong_offsets(logs):
    path = str(logs / "1.out")
    with open(path, "wb") as live:
        live.write(b"new data\n")
    inode = os.stat(path).st_ino
    with open(path + ".cut", "w") as cut:  # a rotation under way: the cut names another file
        cut.write(f"0 500 0 {inode + 1} {inode + 2}\n")
    assert rotation.stream_size(path) == 500, "caught mid-rotation: what was surely written"
    assert rotation.read_from(path, 500, 100) == (500, b"")
    assert last_lines(path, 5) == []


class SharedWriter:
    """logwriter.py --serve, the way the server runs it: runs are handed over a channel."""

    def __init__(self, logs):
        self.logs = logs
        self.channel, theirs = socket.socketpair()
        high = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, 100)
        self.pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-I", "-S", LOG_WRITER, "--serve"],
            {},
            file_actions=[(os.POSIX_SPAWN_DUP2, high, 3)],
        )
        os.close(high)
        theirs.close()

    def hand(self, managed_id: int) -> tuple[int, int, int]:
        """A new run's pipes, handed over: the program's ends of stdout and stderr, and the
        end that reads end-of-file once the writer has written all of the run."""
        (out_read, out_write), (err_read, err_write) = os.pipe(), os.pipe()
        done_read, done_write = os.pipe()
        paths = [str(self.logs / f"{managed_id}.out"), str(self.logs / f"{managed_id}.err")]
        request = "\0".join([*paths, "100000"]).encode()
        socket.send_fds(self.channel, [request], [out_read, err_read, done_write])
        for fd in (out_read, err_read, done_write):
            os.close(fd)
        return out_write, err_write, done_read

    def running(self) -> bool:
        return os.waitpid(self.pid, os.WNOHANG) == (0, 0)


def until(condition) -> bool:
    """Whether condition() came true within 30 s."""
    deadline = time.monotonic() + 30
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def written(path, size: int) -> bytes:
    """The stream's first bytes, once it holds size of them (within 30 s)."""
    until(lambda: rotation.stream_size(str(path)) >= size)
    return rotation.read_from(str(path), 0, 1000)[1]


@pytest.fixture
def shared(logs):
    writer = SharedWriter(logs)
    yield writer
    writer.channel.close()
    with contextlib.suppress(ChildProcessError):
        if writer.running():
            os.kill(writer.pid, signal.SIGKILL)
        os.waitpid(writer.pid, 0)


def test_the_shared_writer_copies_every_run_and_tells_when_each_is_written(shared, logs):
    first, second = shared.hand(1), shared.hand(2)
    os.write(first[0], b"one\n")
    os.write(second[1], b"two\n")
    assert written(logs / "1.out", 4) == b"one\n" and written(logs / "2.err", 4) == b"two\n"
    os.close(second[0])
    os.close(second[1])
    assert os.read(second[2], 1) == b"", "the second run is written: its end is told"
    os.write(first[0], b"still\n")
    assert written(logs / "1.out", 10) == b"one\nstill\n"
    for fd in (first[0], first[1], first[2], second[2]):
        os.close(fd)


def test_a_run_that_writes_nothing_creates_no_file(shared, logs):
    out, err, done = shared.hand(1)
    os.close(out)
    os.close(err)
    assert os.read(done, 1) == b"", "the run is over"
    os.close(done)
    talker = shared.hand(2)
    os.write(talker[1], b"late\n")
    assert written(logs / "2.err", 5) == b"late\n"
    assert sorted(os.listdir(logs)) == ["2.err", "2.lock"], "a file once there is output"
    for fd in talker:
        os.close(fd)


def test_the_shared_writer_outlives_its_channel_until_its_runs_end(shared, logs):
    out, err, done = shared.hand(1)
    os.write(out, b"before\n")
    shared.channel.close()  # the server is gone
    os.write(out, b"after\n")
    assert written(logs / "1.out", 13) == b"before\nafter\n"
    assert shared.running(), "its run still writes"
    os.close(out)
    os.close(err)
    assert os.read(done, 1) == b""
    os.close(done)
    assert os.waitpid(shared.pid, 0)[1] == 0, "no run and no server: it ends"


def test_a_malformed_request_is_dropped_and_the_runs_go_on(shared, logs):
    out, err, done = shared.hand(1)
    spare_read, spare_write = os.pipe()
    socket.send_fds(shared.channel, [b"no fields"], [spare_read])
    os.close(spare_read)
    os.write(out, b"unharmed\n")
    assert written(logs / "1.out", 9) == b"unharmed\n"
    with pytest.raises(BrokenPipeError):  # the writer closed the pipe of the bad request
        os.write(spare_write, b"x")
    for fd in (out, err, done, spare_write):
        os.close(fd)
