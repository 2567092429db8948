"""Knowing when a run's output is all written, and keeping it safe if its log writer dies.

The server keeps its own copy of the read end of each run's two pipes. They cost it two
descriptors per run and buy this: should the log writer end before the output it was given
(killed, or out of memory), the pipes are still open, so the program blocks instead of
dying of SIGPIPE, and what it wrote since is handed, pipes and all, to a new writer.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rpm.errors import SpawnFailed
from rpm.server.procs.ownedfd import OwnedReader

log = Logger()


@dataclass
class Handed:
    """A run's output as handed to a log writer: the end that reads end-of-file once the
    writer is done, the pipes' read ends the server keeps, and how to hand those to a new
    writer (returning its done end)."""

    done: int
    pipes: tuple[int, ...]  # out and err; none once the run's output is all written
    again: Callable[[tuple[int, ...]], int]


def drained(pipes: tuple[int, ...]) -> bool:
    """Whether every writer of these pipes has closed them and nothing is left to read."""
    poller = select.poll()
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    events = dict(poller.poll(0))
    return all(
        events.get(fd, 0) & (select.POLLHUP | select.POLLIN) == select.POLLHUP for fd in pipes
    )


class WriterDone(OwnedReader):
    """Fires `done` when a run's log writer has written all of the run's output: the writer
    holds the only other end of a pipe, so ours reads end-of-file then. If the writer ended
    with output left (its pipes still open, or not empty), a new one is handed the pipes."""

    WAIT_AT_MOST = 5.0  # a writer kept alive by an orphan holding the output: go on anyway

    def __init__(self, reactor, handed: Handed):
        self.done: Deferred = Deferred()
        self._waiters: list[Deferred] | None = []  # None once the action has run
        self._handed = handed
        super().__init__(reactor, handed.done)

    def logPrefix(self) -> str:
        return "log-writer"

    def doRead(self) -> None:
        try:
            data = os.read(self._fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._writer_ended()

    def connectionLost(self, reason) -> None:
        """The reactor saw the done pipe hang up: its writer end is closed."""
        self._writer_ended()

    def _writer_ended(self) -> None:
        if self._handed.pipes and not drained(self._handed.pipes):
            try:
                fd = self._handed.again(self._handed.pipes)
            except SpawnFailed as err:
                log.error("a run's output is lost: its log writer ended early, {error}", error=err)
            else:
                log.warn("a log writer ended before the output it was given; a new one has it")
                self.watch_instead(fd)
                return
        self.finish()

    def then(self, action: Callable[[], None]) -> None:
        """Run action once the writer is done, or after WAIT_AT_MOST seconds."""
        if not self.done.called:
            timer = self._reactor.callLater(self.WAIT_AT_MOST, self.finish)
            self.done.addBoth(lambda _: timer.cancel() if timer.active() else None)
        self.done.addBoth(lambda _: action())
        self.done.addBoth(lambda _: self._acted())

    def finished(self) -> Deferred:
        """Fires once the action given to `then` has run."""
        waiter = Deferred()
        if self._waiters is None:
            waiter.callback(None)
        else:
            self._waiters.append(waiter)
        return waiter

    def _acted(self) -> None:
        waiters, self._waiters = self._waiters or [], None
        for waiter in waiters:
            waiter.callback(None)

    def finish(self) -> None:
        self.release()
        for fd in self._handed.pipes:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._handed.pipes = ()
        if not self.done.called:
            self.done.callback(None)
