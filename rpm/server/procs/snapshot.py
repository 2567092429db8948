"""An immutable sample of the process table whose renderings are computed once and shared.

Every client that lists or watches the same snapshot gets the very same bytes; rows that did
not change since the previous snapshot reuse their rendering from it.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

from rpm import hostinfo
from rpm.rows import TEXT_HEADER, Row, matches, row_json, text_row
from rpm.wire import CRLF, JSON, Event, Reply, ok_line, stuffed, text_line

_HEADER = stuffed(TEXT_HEADER)
_END = b"." + CRLF


class RowRenderer:
    """Renders rows to bytes, reusing the bytes of rows unchanged since the last call."""

    def __init__(self, render: Callable[[Row], bytes]):
        self._render = render
        self._cache: dict[Row, bytes] = {}

    def render_all(self, rows: list[Row]) -> list[bytes]:
        previous, current = self._cache, {}
        out = []
        for row in rows:
            data = previous.get(row)
            if data is None:
                data = self._render(row)
            current[row] = data
            out.append(data)
        self._cache = current
        return out


def text_row_bytes(row: Row) -> bytes:
    return stuffed(text_row(row))


class Renderers:
    """The two row renderers shared by all snapshots of one sampler."""

    def __init__(self) -> None:
        self.text = RowRenderer(text_row_bytes)
        self.json = RowRenderer(row_json)


class Snapshot:
    """The process table at one moment: rows sorted by pid, and their shared renderings."""

    def __init__(
        self,
        seq: int,
        taken_at: float,
        rows: list[Row],
        renderers: Renderers,
        host: dict | None = None,
        sampled: float | None = None,
    ):
        """taken_at is the reactor's time of the scan (monotonic in the server); sampled,
        the time of day clients are told (taken_at where the two are the same clock)."""
        self.seq = seq
        self.host = host  # the machine's vitals from the same pass (vitals.py), if read
        self.taken_at = taken_at
        self.rows = rows
        self.by_pid = {row.pid: row for row in rows}
        self._renderers = renderers
        self._rendered: dict[str, list[bytes]] = {}
        self._cache: dict[tuple, bytes] = {}
        self._children: dict[int, list[int]] | None = None
        self.sampled_field = b'"sampled":%.3f,' % (taken_at if sampled is None else sampled)

    def rendered_rows(self, mode: str) -> list[bytes]:
        """Each row's bytes in this mode (JSON object, or a stuffed text line)."""
        rendered = self._rendered.get(mode)
        if rendered is None:
            renderer = self._renderers.json if mode == JSON else self._renderers.text
            rendered = self._rendered[mode] = renderer.render_all(self.rows)
        return rendered

    def _select(self, mode: str, managed_only: bool, pattern: str) -> list[bytes]:
        rendered = self.rendered_rows(mode)
        if not managed_only and not pattern:
            return rendered
        return [
            data
            for row, data in zip(self.rows, rendered, strict=True)
            if (row.managed or not managed_only) and (not pattern or matches(row, pattern))
        ]

    def _cached(self, key: tuple, build) -> bytes:
        data = self._cache.get(key)
        if data is None:
            data = self._cache[key] = build()
        return data

    def _table(self, mode: str, rows: list[bytes], json_opening: bytes, text_head: bytes) -> bytes:
        """Rows as a JSON object's `processes` (after json_opening) or a header and a body."""
        if mode == JSON:
            return b"".join(
                (json_opening, self.sampled_field, b'"processes":[', b",".join(rows), b"]}", CRLF)
            )
        return b"".join((text_head, _HEADER, *rows, _END))

    def list_bytes(self, mode: str, managed_only: bool = False, pattern: str = "") -> bytes:
        """The whole LIST reply; cached when unfiltered, since every client asks for that."""

        def build() -> bytes:
            rows = self._select(mode, managed_only, pattern)
            return self._table(mode, rows, b'{"ok":true,', ok_line(f"{len(rows)} processes"))

        if managed_only or pattern:
            return build()
        return self._cached(("list", mode), build)

    def table_event(self, mode: str) -> bytes:
        """The WATCH `table` event carrying the whole table."""

        def build() -> bytes:
            rows = self.rendered_rows(mode)
            head = text_line(f"* table {len(rows)} processes")
            return self._table(mode, rows, b'{"event":"table",', head)

        return self._cached(("table", mode), build)

    def host_event(self, mode: str) -> bytes:
        """The WATCH `host` event: the machine's vitals read with this table."""
        host = self.host or {}
        return self._cached(
            ("host", mode), lambda: Event("host", hostinfo.summary(host), host).render(mode)
        )

    def delta_event(self, since: Snapshot, mode: str) -> bytes:
        """The WATCH --delta `delta` event: rows added, changed and removed since `since`."""
        return self._cached(("delta", since.seq, mode), lambda: _render_delta(since, self, mode))

    def children_of(self, pid: int) -> list[int]:
        """Pids whose parent is pid, from this snapshot."""
        if self._children is None:
            children: dict[int, list[int]] = defaultdict(list)
            for row in self.rows:
                children[row.ppid].append(row.pid)
            self._children = children
        return self._children.get(pid, [])

    def within(self, row: Row, roots: Collection[int]) -> bool:
        """Whether row is one of roots, or below one in the parent tree."""
        seen = set()
        while row is not None and row.pid not in seen:
            if row.pid in roots:
                return True
            seen.add(row.pid)
            row = self.by_pid.get(row.ppid)
        return False

    def descendants_of(self, pid: int) -> list[Row]:
        """Every row below pid in the parent tree, nearest first."""
        found, seen, queue = [], {pid}, deque(self.children_of(pid))
        while queue:
            child = queue.popleft()
            if child not in seen and child in self.by_pid:
                seen.add(child)
                found.append(self.by_pid[child])
                queue.extend(self.children_of(child))
        return found


def _render_delta(old: Snapshot, new: Snapshot, mode: str) -> bytes:
    old_rows = {row.key: row for row in old.rows}
    new_keys = set()
    added, changed = [], []
    for row, data in zip(new.rows, new.rendered_rows(mode), strict=True):
        new_keys.add(row.key)
        before = old_rows.get(row.key)
        if before is None:
            added.append(data)
        elif before != row:
            changed.append(data)
    removed = sorted(pid for pid, started in old_rows if (pid, started) not in new_keys)
    if mode == JSON:
        return b"".join(
            (
                b'{"event":"delta",',
                new.sampled_field,
                b'"added":[',
                b",".join(added),
                b'],"changed":[',
                b",".join(changed),
                b'],"removed":',
                str(removed).encode(),
                b"}",
                CRLF,
            )
        )
    head = text_line(f"* delta {len(added)} added {len(changed)} changed {len(removed)} removed")
    lines = [b"+ " + data for data in added] + [b"~ " + data for data in changed]
    lines += [f"- {pid}".encode() + CRLF for pid in removed]
    return b"".join((head, *lines, _END))


@dataclass
class TableReply(Reply):
    """LIST's reply: rendered straight from the snapshot's shared bytes."""

    snapshot: Snapshot
    managed_only: bool = False
    pattern: str = ""

    def render(self, mode: str) -> bytes:
        return self.snapshot.list_bytes(mode, self.managed_only, self.pattern)
