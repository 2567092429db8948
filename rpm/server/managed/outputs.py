"""Watch managed processes' output files: journal their growth, cap their size, and stream
new lines to FOLLOW.

A few times a second the server stats each watched stream whose files changed (or all of
them, where it is not told which: see logchanges.py). When one grew, the new size and
the time go to the program's order journal (so LOGS can interleave stdout and stderr), and
followers get the new complete lines as `output` events. A program's log writer
(logwriter.py) keeps its streams within the cap; a stream written without one (by a program
adopted from an older rpm) is rotated by the server, in a worker thread (see rotation.py).
A follower whose client is not reading stays behind at its file offset and catches up
later, from the rotated file if need be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import threads
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from rpm.clock import wall_time
from rpm.server.managed.logchanges import LogChanges
from rpm.server.managed.logfiles import MAX_LINE_CHARS, STREAMS, LogFiles
from rpm.server.managed.rotation import Cut
from rpm.wire import Event

log = Logger()
READ_CHUNK = 1 << 20  # one read
READ_PER_TICK = 8 << 20  # per follower and stream, each tick, while the client keeps up
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
SWEEP_EVERY = 5.0  # seconds between ticks that observe every program, told of changes or not


def output_event(pid: int, stream: str, text: str) -> Event:
    text = text.removesuffix("\r")
    return Event("output", f"{pid} {stream} {text}", {"pid": pid, "stream": stream, "line": text})


class Follower:
    """One connection following one managed program from given offsets onward."""

    def __init__(self, connection, pid: int, offsets: dict[str, int]):
        self.connection = connection
        self.pid = pid
        self.offsets = dict(offsets)
        self._partial = dict.fromkeys(STREAMS, b"")

    def catch_up(
        self, logfiles: LogFiles, managed_id: int, sizes: dict[str, int], final: bool = False
    ) -> None:
        """Send the complete lines written since the last call (all of them when final), as
        much as the client takes: reading stops while its transport is full, and goes on at
        the next tick. Lines rotated away before they were read are announced by a `gap`."""
        for stream in STREAMS:
            budget = READ_PER_TICK
            while budget > 0 and not self.connection.write_blocked:
                wanted = self._wanted(stream, sizes[stream], budget)
                if wanted <= 0:
                    break
                start = self.offsets[stream]
                begin, data = logfiles.read(managed_id, stream, start, wanted)
                if begin != start:  # rotated away before we read it
                    self._partial[stream] = b""
                    self._gap(stream, begin - start)
                self.offsets[stream] = begin + len(data)
                budget -= max(len(data), 1)
                at_end = self.offsets[stream] >= sizes[stream]
                self._emit(stream, self._partial[stream] + data, final and at_end)
                if not data:
                    break

    def _wanted(self, stream: str, size: int, budget: int) -> int:
        """How much to read now; a stream that shrank was truncated by a rotation (where
        holes cannot be punched): start over at its beginning."""
        if size < self.offsets[stream]:
            self.offsets[stream], self._partial[stream] = 0, b""
        return min(size - self.offsets[stream], READ_CHUNK, budget)

    def _gap(self, stream: str, skipped: int) -> None:
        """Tell the follower that output it had not read yet is gone (rotated away)."""
        self.connection.send_event(
            Event(
                "gap",
                f"{self.pid} {stream} {skipped} bytes",
                {"pid": self.pid, "stream": stream, "bytes": skipped},
            )
        )

    def _emit(self, stream: str, data: bytes, final: bool) -> None:
        *lines, rest = data.split(b"\n")
        if rest and (final or len(rest) >= MAX_LINE_CHARS):  # never hold more than one line
            lines.append(rest)
            rest = b""
        self._partial[stream] = rest
        for raw in lines:
            self.connection.send_event(
                output_event(self.pid, stream, raw.decode("utf-8", "replace"))
            )


@dataclass
class _TrackedOutput:
    """What the tracker knows of one program's output files."""

    noted: dict[str, int] | None = None  # sizes in the order journal; None: not journaled
    followers: list[Follower] = field(default_factory=list)
    rotating: set[str] = field(default_factory=set)
    starts: dict[str, int] = field(default_factory=dict)  # where each live file's data begins


class OutputTracker:
    """Watches programs by registry id while they run or are followed, every `interval`."""

    def __init__(
        self,
        reactor,
        logfiles: LogFiles,
        interval: float = 0.25,
        max_bytes: int = DEFAULT_MAX_BYTES,
        run: Callable = threads.deferToThread,
        changes: LogChanges | None = None,
    ):
        self._reactor = reactor
        self._changes = changes
        self._next_sweep = 0.0
        self.logfiles = logfiles
        self._interval = interval
        self.max_bytes = max_bytes
        self._run = run
        self._watched: dict[int, _TrackedOutput] = {}
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(self._interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        if self._changes is not None:
            self._changes.close()

    def _entry(self, managed_id: int) -> _TrackedOutput:
        entry = self._watched.get(managed_id)
        if entry is None:
            starts = {stream: self.logfiles.live_start(managed_id, stream) for stream in STREAMS}
            entry = self._watched[managed_id] = _TrackedOutput(starts=starts)
        return entry

    def _drop_if_idle(self, managed_id: int) -> None:
        entry = self._watched.get(managed_id)
        if entry is not None and entry.noted is None and not entry.followers and not entry.rotating:
            del self._watched[managed_id]

    def track(self, managed_id: int, new: bool = False) -> None:
        """Start journaling a program's output (a start, restart or adoption). A new program
        has written nothing the next tick will not see: nothing to read of its files now."""
        if new and managed_id not in self._watched:
            empty = dict.fromkeys(STREAMS, 0)
            self._watched[managed_id] = _TrackedOutput(noted=dict(empty), starts=empty)
            return
        entry = self._entry(managed_id)
        if entry.noted is None:
            entry.noted = self.logfiles.journaled_sizes(managed_id)
            self.observe(managed_id)

    def release(self, managed_id: int) -> None:
        """The program ended: note and deliver its last output, stop journaling it."""
        entry = self._watched.get(managed_id)
        if entry is not None and entry.noted is not None:
            self.observe(managed_id, final=True)
            entry.noted = None
            self._drop_if_idle(managed_id)

    def follow(self, connection, pid: int, managed_id: int, offsets: dict[str, int]) -> Follower:
        """Stream a program's output written past `offsets` (the stream sizes) to connection."""
        self.unfollow(connection, pid)
        follower = Follower(connection, pid, offsets)
        self._entry(managed_id).followers.append(follower)
        return follower

    def unfollow(self, connection, pid: int | None = None) -> bool:
        """Stop following pid (or everything) for connection; True if something stopped."""
        stopped = False
        for managed_id, entry in list(self._watched.items()):
            keep = [
                f
                for f in entry.followers
                if f.connection is not connection or (pid is not None and f.pid != pid)
            ]
            stopped = stopped or len(keep) != len(entry.followers)
            entry.followers = keep
            self._drop_if_idle(managed_id)
        return stopped

    def observe(self, managed_id: int, final: bool = False) -> None:
        """Journal any growth now, bring the followers up to date, rotate what is too big."""
        entry = self._entry(managed_id)
        sizes = self.logfiles.sizes(managed_id)
        if entry.noted is not None:
            self._journal(managed_id, entry, sizes)
        for follower in entry.followers:
            follower.catch_up(self.logfiles, managed_id, sizes, final)
        for stream in STREAMS:
            if sizes[stream] - entry.starts[stream] <= self.max_bytes or stream in entry.rotating:
                continue
            cut = self.logfiles.cut(managed_id, stream)
            if cut is not None and cut.renamed:  # its log writer keeps the cap: follow it
                entry.starts[stream] = cut.end
                self.logfiles.compact_journal(managed_id, stream, cut)
            else:
                self._rotate(managed_id, entry, stream)

    def _journal(self, managed_id: int, entry: _TrackedOutput, sizes: dict[str, int]) -> None:
        for stream, size in sizes.items():
            if size < entry.noted[stream]:  # truncated by a rotation: offsets start over
                entry.noted[stream] = 0
        growth = {stream: size for stream, size in sizes.items() if size > entry.noted[stream]}
        if growth:
            try:
                self.logfiles.note(managed_id, wall_time(self._reactor), growth)
            except OSError as err:
                log.warn("cannot journal the output of {id}: {err}", id=managed_id, err=err)
            entry.noted.update(growth)

    def _rotate(self, managed_id: int, entry: _TrackedOutput, stream: str) -> None:
        entry.rotating.add(stream)
        done = self._run(self.logfiles.rotate, managed_id, stream, self.max_bytes)
        done.addCallback(self._rotated, managed_id, entry, stream)
        done.addErrback(
            lambda failure: log.failure("cannot rotate the log of {id}", failure, id=managed_id)
        )
        done.addBoth(lambda _: (entry.rotating.discard(stream), self._drop_if_idle(managed_id)))

    def _rotated(
        self, cut: Cut | None, managed_id: int, entry: _TrackedOutput, stream: str
    ) -> None:
        if cut is None:
            return
        entry.starts[stream] = 0 if cut.truncated else cut.end
        self.logfiles.compact_journal(managed_id, stream, cut)
        if cut.truncated and entry.noted is not None:
            entry.noted[stream] = 0

    def _tick(self) -> None:
        """Observe the programs whose files changed and those followed (a follower behind
        reads on), or, every SWEEP_EVERY seconds and where changes are not told, all."""
        changed = self._changes.take() if self._changes is not None else set()
        now = self._reactor.seconds()
        if self._changes is None or not self._changes.working or now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            due = list(self._watched)
        else:
            due = [key for key, entry in self._watched.items() if key in changed or entry.followers]
        for managed_id in due:
            self.observe(managed_id)
