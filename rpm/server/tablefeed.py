"""WATCH: periodic table (or delta) events per connection, and lifecycle events for all.

A table feed sends the sampler's latest snapshot every `interval` seconds. If its client stops
reading, the connection's write buffer fills and the feed coalesces: it remembers that a
table is due and sends only the newest one when the client drains, so the server never
queues snapshots for a slow reader.
"""

from __future__ import annotations

from twisted.internet.task import LoopingCall

from rpm.server.managed.records import ManagedRecord
from rpm.server.procs.sampler import Sampler
from rpm.server.procs.snapshot import Snapshot
from rpm.signames import signal_name
from rpm.wire import Event


class TableFeed:
    """One connection's WATCH: sends table events, or one table then deltas."""

    def __init__(self, reactor, connection, sampler: Sampler, interval: float, delta: bool):
        self._connection = connection
        self._sampler = sampler
        self.interval, self.delta = interval, delta
        self._last: Snapshot | None = None
        self._due = False
        self._loop = LoopingCall(self.tick)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(self.interval, now=False)
        self._sampler.watch(self, self.interval)
        self._sampler.fresh().addCallbacks(self._send, lambda _: None)

    def stop(self) -> None:
        self._sampler.unwatch(self)
        if self._loop.running:
            self._loop.stop()

    def tick(self) -> None:
        if self._sampler.latest is not None:
            self._send(self._sampler.latest)

    def writable(self) -> None:
        """The client drained its buffer: send the newest table if one was held back."""
        if self._due:
            self.tick()

    def _send(self, snapshot: Snapshot) -> None:
        if not self._loop.running:
            return
        if self._connection.write_blocked:
            self._due = True
            return
        self._due = False
        mode = self._connection.session.mode
        if self.delta and self._last is not None:
            data = snapshot.delta_event(self._last, mode)
        else:
            data = snapshot.table_event(mode)
        self._last = snapshot
        self._connection.session.seen = snapshot
        self._connection.send_bytes(data)
        if snapshot.host is not None:
            self._connection.send_bytes(snapshot.host_event(mode))


def lifecycle_event(event: str, record: ManagedRecord) -> Event:
    """The `started`, `restarted` (by RESTART) or `exited` event for a managed run."""
    if event == "restarted":
        reason = record.restart_reason
        fields = {"pid": record.pid, "program": record.name, "id": record.id, "reason": reason}
        text = f"{record.pid} {record.name or record.id}" + (f": {reason}" if reason else "")
        return Event("restarted", text, fields)
    if event == "started":
        command = " ".join(record.argv)
        return Event(
            "started",
            f"{record.pid} {command}",
            {"pid": record.pid, "cmdline": list(record.argv), "id": record.id},
        )
    if record.exit_signal is not None:
        how = f"signal {signal_name(record.exit_signal)}"
    elif record.exit_known:
        how = f"code {record.exit_code}"
    else:
        how = "status unknown"
    fields = {
        "pid": record.pid,
        "exit_code": record.exit_code,
        "exit_signal": signal_name(record.exit_signal) if record.exit_signal else None,
        "id": record.id,
    }
    return Event("exited", f"{record.pid} {how}", fields)
