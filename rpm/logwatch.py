"""Watch managed processes' output files: journal their growth, and stream new lines to FOLLOW.

A few times a second the server stats each watched stream. When one grew, the new size and
the time go to the program's order journal (so LOGS can interleave stdout and stderr), and
followers get the new complete lines as `output` events. A follower whose client is not
reading simply stays behind at its file offset and catches up later: nothing is dropped.
"""

from __future__ import annotations

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from rpm.logfiles import MAX_LINE_CHARS, STREAMS, LogFiles
from rpm.wire import Event

log = Logger()
READ_PER_TICK = 65536


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
        """Send the complete lines written since the last call (all of them when final)."""
        for stream in STREAMS:
            if self.connection.write_blocked:
                return
            start = self.offsets[stream]
            if sizes[stream] < start:  # truncated by someone: start over at its end
                self.offsets[stream], self._partial[stream] = sizes[stream], b""
                continue
            size = min(sizes[stream] - start, READ_PER_TICK)
            data = logfiles.read(managed_id, stream, start, size) if size > 0 else b""
            self.offsets[stream] = start + len(data)
            at_end = self.offsets[stream] == sizes[stream]
            self._emit(stream, self._partial[stream] + data, final and at_end)

    def _emit(self, stream: str, data: bytes, final: bool) -> None:
        *lines, rest = data.split(b"\n")
        if rest and (final or len(rest) >= MAX_LINE_CHARS):  # never hold more than one line
            lines.append(rest)
            rest = b""
        self._partial[stream] = rest
        for raw in lines:
            text = raw.removesuffix(b"\r").decode("utf-8", "replace")
            self.connection.send_event(
                Event(
                    "output",
                    f"{self.pid} {stream} {text}",
                    {"pid": self.pid, "stream": stream, "line": text},
                )
            )


class LogWatcher:
    """Tracks programs by registry id while they run or are followed, every `interval`."""

    def __init__(self, reactor, logfiles: LogFiles, interval: float = 0.25):
        self._reactor = reactor
        self.logfiles = logfiles
        self._interval = interval
        self._noted: dict[int, dict[str, int]] = {}
        self._followers: dict[int, list[Follower]] = {}
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(self._interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def track(self, managed_id: int) -> None:
        """Start journaling a program's output (a start, restart or adoption)."""
        if managed_id not in self._noted:
            self._noted[managed_id] = self.logfiles.journaled_sizes(managed_id)
            self.observe(managed_id)

    def release(self, managed_id: int) -> None:
        """The program ended: note and deliver its last output, stop journaling it."""
        if managed_id in self._noted:
            self.observe(managed_id, final=True)
            del self._noted[managed_id]

    def follow(self, connection, pid: int, managed_id: int, offsets: dict[str, int]) -> Follower:
        """Stream a program's output written past `offsets` (the stream sizes) to connection."""
        self.unfollow(connection, pid)
        follower = Follower(connection, pid, offsets)
        self._followers.setdefault(managed_id, []).append(follower)
        return follower

    def unfollow(self, connection, pid: int | None = None) -> bool:
        """Stop following pid (or everything) for connection; True if something stopped."""
        stopped = False
        for managed_id, followers in list(self._followers.items()):
            keep = [
                f
                for f in followers
                if f.connection is not connection or (pid is not None and f.pid != pid)
            ]
            stopped = stopped or len(keep) != len(followers)
            if keep:
                self._followers[managed_id] = keep
            else:
                del self._followers[managed_id]
        return stopped

    def observe(self, managed_id: int, final: bool = False) -> None:
        """Journal any growth now and bring the followers up to date."""
        sizes = self.logfiles.sizes(managed_id)
        noted = self._noted.get(managed_id)
        if noted is not None:
            growth = {stream: size for stream, size in sizes.items() if size > noted[stream]}
            if growth:
                try:
                    self.logfiles.note(managed_id, self._reactor.seconds(), growth)
                except OSError as err:
                    log.warn("cannot journal the output of {id}: {err}", id=managed_id, err=err)
                noted.update(growth)
        for follower in self._followers.get(managed_id, []):
            follower.catch_up(self.logfiles, managed_id, sizes, final)

    def _tick(self) -> None:
        for managed_id in list(self._noted.keys() | self._followers.keys()):
            self.observe(managed_id)
