"""When a run's output is all written, and what happens when its log writer dies first:
real pipes, with the test playing the program and the writer."""

from __future__ import annotations

import os

import pytest

from rpm.errors import SpawnFailed
from rpm.server.managed.written import Handed, WriterDone
from tests.unit.test_supervisor import FakeProcessReactor


class Run:
    """A run's pipes: the program's write ends, the writer's done end, and the server's
    WriterDone over its own copies of the read ends."""

    def __init__(self, again=None):
        self.reactor = FakeProcessReactor()
        (out_read, self.out), (err_read, self.err) = os.pipe(), os.pipe()
        done, self.writer = os.pipe()
        self.handed_again: list[tuple[int, ...]] = []
        self.new_writers: list[int] = []
        self.new_dones: list[int] = []
        self.watch = WriterDone(
            self.reactor, Handed(done, (out_read, err_read), again or self.again)
        )
        self.pipes = (out_read, err_read)

    def again(self, pipes: tuple[int, ...]) -> int:
        """A new writer takes the pipes: the test holds its done end."""
        self.handed_again.append(pipes)
        done, writer = os.pipe()
        self.new_writers.append(writer)
        self.new_dones.append(done)
        return done

    def writer_ends(self, writer: int, told_by: str = "doRead") -> None:
        """The writer closes its done end; the reactor reads end-of-file, or (epoll saying
        the pipe hung up) calls connectionLost."""
        os.close(writer)
        if told_by == "doRead":
            self.watch.doRead()
        else:
            self.watch.connectionLost(None)

    def program_ends(self) -> None:
        os.close(self.out)
        os.close(self.err)


def closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_a_writer_done_with_all_of_it_ends_the_run_and_the_servers_copies_close():
    run = Run()
    run.program_ends()
    run.writer_ends(run.writer)
    assert run.watch.done.called and run.handed_again == []
    assert all(closed(fd) for fd in run.pipes)


@pytest.mark.parametrize("told_by", ["doRead", "connectionLost"])
@pytest.mark.parametrize("left", ["the program still writing", "output not yet copied"])
def test_a_writer_that_dies_first_hands_the_pipes_to_a_new_one(left, told_by):
    run = Run()
    if left == "output not yet copied":
        os.write(run.out, b"written before\n")
        run.program_ends()
    run.writer_ends(run.writer, told_by)  # killed
    assert not run.watch.done.called and run.handed_again == [run.pipes]
    assert run.watch.fileno() == run.new_dones[0] and run.watch in run.reactor.readers
    if left == "the program still writing":
        os.write(run.out, b"written after\n")  # no EPIPE: the server still holds a reader
        run.program_ends()
    copied = os.read(run.pipes[0], 100)  # the new writer's work
    assert copied == (
        b"written after\n" if left == "the program still writing" else b"written before\n"
    )
    run.writer_ends(run.new_writers[0])
    assert run.watch.done.called and len(run.handed_again) == 1
    assert all(closed(fd) for fd in run.pipes)


def test_where_no_new_writer_can_start_the_run_still_ends():
    def refuse(pipes):
        raise SpawnFailed("cannot start the log writer: Resource temporarily unavailable")

    run = Run(again=refuse)
    run.writer_ends(run.writer)
    assert run.watch.done.called and all(closed(fd) for fd in run.pipes)
    run.program_ends()


def test_what_waits_for_the_output_runs_once_it_is_written_and_in_order():
    run = Run()
    order = []
    run.watch.then(lambda: order.append("action"))
    run.watch.finished().addCallback(lambda _: order.append("finished"))
    run.reactor.advance(WriterDone.WAIT_AT_MOST - 0.1)
    assert order == []
    os.write(run.writer, b"x")  # not the end: the writer holds on
    run.watch.doRead()
    assert not run.watch.done.called and run.handed_again == [], "no new writer either"
    run.program_ends()
    run.writer_ends(run.writer)
    assert order == ["action", "finished"]
    assert run.reactor.getDelayedCalls() == [], "the deadline was called off"
    run.reactor.advance(WriterDone.WAIT_AT_MOST)
    assert order == ["action", "finished"]
    later = []
    run.watch.finished().addCallback(later.append)
    assert later == [None], "after the action, at once"


def test_a_writer_kept_alive_by_an_orphan_is_waited_for_a_few_seconds_only():
    run = Run()
    done = []
    run.watch.then(lambda: done.append(run.reactor.seconds()))
    run.reactor.advance(WriterDone.WAIT_AT_MOST)
    assert done == [WriterDone.WAIT_AT_MOST] and all(closed(fd) for fd in run.pipes)
    assert run.watch not in run.reactor.readers
    for fd in (run.out, run.err, run.writer):
        os.close(fd)
