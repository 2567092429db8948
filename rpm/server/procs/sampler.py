"""One shared, demand-driven sampler of the process table for every client and watcher.

Scans run one at a time in a worker thread. While anyone is interested (a watcher, or a LIST
within the last `linger` seconds) the table is refreshed every `period` seconds, so requests
are answered from memory with data at most `max_age` seconds old; when nobody asks, nothing
runs. After a START or STOP the sampler is told the table is stale, so the next LIST shows
the change.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from twisted.internet import threads
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from rpm.clock import wall_time
from rpm.rows import Row
from rpm.server.procs.snapshot import Renderers, Snapshot

log = Logger()


class Sampler:
    """Keeps `latest`, a Snapshot no older than max_age whenever someone is asking."""

    def __init__(
        self,
        reactor,
        scan: Callable[[frozenset], list[Row]],
        managed_keys: Callable[[], frozenset],
        run: Callable[..., Deferred] = threads.deferToThread,
        restarting_rows: Callable[[], list[Row]] = list,
        program_names: Callable[[], dict] = dict,
        vitals: Callable[[int, int], dict] | None = None,
        period: float = 0.5,
        max_age: float = 1.0,
        linger: float = 10.0,
    ):
        self._reactor = reactor
        self._scan = scan
        self._managed_keys = managed_keys
        self._run = run
        self._restarting_rows = restarting_rows
        self._program_names = program_names  # (pid, start time) -> a managed program's name
        self._vitals = vitals  # the machine's vitals, read in the same pass (vitals.py)
        self.period, self.max_age, self.linger = period, max_age, linger
        self.latest: Snapshot | None = None
        self._renderers = Renderers()
        self._waiters: list[tuple[float, Deferred]] = []
        self._watchers: dict[object, float] = {}
        self._last_demand = -math.inf
        self._stale_before = -math.inf
        self._scanning = False
        self._scheduled = None
        self._stopped = False
        self._seq = 0

    def fresh(self) -> Deferred:
        """A snapshot taken at most max_age ago and after the last invalidate()."""
        now = self._reactor.seconds()
        self._last_demand = now
        floor = max(now - self.max_age, self._stale_before)
        if self.latest is not None and self.latest.taken_at >= floor:
            self._keep_refreshing()
            return succeed(self.latest)
        waiter = Deferred()
        self._waiters.append((floor, waiter))
        self._scan_soon()
        return waiter

    def invalidate(self) -> None:
        """The table changed (a START or STOP): the next fresh() waits for a newer scan."""
        self._stale_before = self._reactor.seconds()

    def watch(self, token: object, interval: float) -> None:
        """Keep refreshing for a watcher that sends the table every `interval` seconds."""
        self._watchers[token] = interval
        if self.latest is None:
            self._scan_soon()
        else:
            self._keep_refreshing()

    def unwatch(self, token: object) -> None:
        self._watchers.pop(token, None)

    def stop(self) -> None:
        self._stopped = True
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None

    def _refresh_period(self) -> float:
        if not self._watchers:
            return self.period
        return min(max(min(self._watchers.values()), self.period), self.max_age)

    def _wanted(self) -> bool:
        idle_for = self._reactor.seconds() - self._last_demand
        return bool(self._watchers or self._waiters) or idle_for < self.linger

    def _scan_soon(self) -> None:
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        if not self._scanning:
            self._scan_once()

    def _keep_refreshing(self) -> None:
        if self._scanning or self._stopped or self._scheduled is not None:
            return
        age = self._reactor.seconds() - self.latest.taken_at if self.latest else math.inf
        delay = max(0.0, self._refresh_period() - age)
        self._scheduled = self._reactor.callLater(delay, self._scheduled_scan)

    def _scheduled_scan(self) -> None:
        self._scheduled = None
        if self._wanted():
            self._scan_once()

    def _scan_once(self) -> None:
        if self._stopped:
            return
        self._scanning = True
        taken_at, sampled = self._reactor.seconds(), wall_time(self._reactor)
        done = self._run(self._scan_and_measure, self._managed_keys())
        done.addCallbacks(self._scanned, self._failed, callbackArgs=(taken_at, sampled))

    def _scan_and_measure(self, managed_keys: frozenset) -> tuple[list[Row], dict | None]:
        """One pass, in a worker thread: the process table and the machine's vitals."""
        rows = self._scan(managed_keys)
        if self._vitals is None:
            return rows, None
        return rows, self._vitals(len(rows), len(managed_keys))

    def _scanned(
        self, result: tuple[list[Row], dict | None], taken_at: float, sampled: float
    ) -> None:
        rows, host = result
        self._scanning = False
        self._seq += 1
        names = self._program_names()
        if names:
            rows = [
                row._replace(program=names.get(row.key)) if row.managed else row for row in rows
            ]
        restarting = self._restarting_rows()
        if restarting:  # a live process that reused such a pid comes after it, so by_pid has it
            rows = sorted(restarting + rows, key=lambda row: row.pid)
        snapshot = self.latest = Snapshot(self._seq, taken_at, rows, self._renderers, host, sampled)
        ready = [waiter for floor, waiter in self._waiters if floor <= taken_at]
        self._waiters = [(floor, w) for floor, w in self._waiters if floor > taken_at]
        for waiter in ready:
            waiter.callback(snapshot)
        self._after_scan()

    def _failed(self, failure) -> None:
        self._scanning = False
        log.failure("process table scan failed", failure)
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.errback(failure)
        if self._wanted() and not self._stopped:
            self._scheduled = self._reactor.callLater(self.period, self._scheduled_scan)

    def _after_scan(self) -> None:
        if self._waiters:
            self._scan_once()
        elif self._wanted():
            self._keep_refreshing()
