"""The TUI's process table as data: rows from every host, sorted, filtered, as a tree, and a
selection that follows a process (host and pid) rather than a row number (pure)."""

from __future__ import annotations

from collections import deque
from collections.abc import KeysView, Sequence
from typing import NamedTuple

from tui.tree import (
    Key,
    Parents,
    depth_first,
    is_kernel_thread,
    parent_positions,
    visible_lines,
    with_ancestors,
)

HISTORY_SECONDS = 60.0
PENDING_UPDATES = 2

# sort name -> (row field, descending by default)
SORTS = {
    "cpu": ("cpu", True),
    "mem": ("rss", True),
    "pid": ("pid", False),
    "start": ("started", True),
}


class LazyLines(Sequence):
    """The lines of a view, each made when asked for: only a screenful ever is, so a table
    of 100,000 rows does not build 100,000 Lines at every sort, filter or tree. Each entry
    is a key, or (key, depth, has children, folded) in the tree."""

    def __init__(self, entries: list, rows: dict[Key, dict], tree: bool = False):
        self._entries, self._rows, self._tree = entries, rows, tree
        self.keys = [entry[0] for entry in entries] if tree else entries

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._line(entry) for entry in self._entries[index]]
        return self._line(self._entries[index])

    def _line(self, entry) -> Line:
        if self._tree:
            return Line(entry[0], self._rows[entry[0]], *entry[1:])
        return Line(entry, self._rows[entry])


class Line(NamedTuple):
    """One visible line of the table: a row, and where it sits in the tree view."""

    key: Key
    row: dict
    depth: int = 0
    has_children: bool = False
    collapsed: bool = False


def row_text(row: dict) -> str:
    """What the filter searches: pid, user, name, program name and command line."""
    command = " ".join(row.get("cmdline") or ())
    program = row.get("program") or ""
    return f"{row['pid']} {row.get('user') or ''} {row.get('name', '')} {program} {command}"


class ProcessModel:
    """All rows the TUI knows, and how the operator wants to see them."""

    def __init__(self) -> None:
        self.rows: dict[Key, dict] = {}
        self._kernel: set[Key] = set()  # the rows that are kernel threads, kept as rows come
        self.sort, self.reverse = "cpu", True
        self.filter = ""
        self.show_kernel = False  # kernel threads fill the first screens: hidden until `h`
        self.only_managed = False  # `m`: only the programs the servers manage
        self.tree = False
        self.collapsed: set[Key] = set()
        self.selected: Key | None = None
        self._pending: Key | None = None  # selected before its row arrived (a new process)
        self._pending_waits = 0
        self.stale_hosts: set[str] = set()
        self.usage: dict[Key, deque] = {}  # (time, cpu, rss) samples of each process, a minute
        self._lines: list[Line] | None = None
        self._structure: tuple[bool, list[tuple]] | None = None  # (show_kernel, preorder)
        self._flat: tuple[tuple, LazyLines] | None = None  # (what is shown, its lines)
        self._order: list[Key] | None = None  # every key in host, pid order: till rows come/go
        self._parents: Parents | None = None  # the tree's parents, until new data
        self._last_index = 0

    # -- data from servers -----------------------------------------------------------------

    def replace_host(self, host: str, rows: list[dict], now: float) -> None:
        """A whole table from one host."""
        for key in [key for key in self.rows if key[0] == host]:
            del self.rows[key]
            self._kernel.discard(key)
        self._add(host, rows, now)
        for key in [key for key in self.usage if key[0] == host and key not in self.rows]:
            del self.usage[key]
        self._updated(host)

    def apply_delta(self, host: str, delta: dict, now: float) -> None:
        """Rows added, changed and removed on one host since its last event."""
        known = len(self.rows)
        for pid in delta.get("removed", ()):
            self.rows.pop((host, pid), None)
            self.usage.pop((host, pid), None)
            self._kernel.discard((host, pid))
        self._add(host, delta.get("added", ()), now)
        self._add(host, delta.get("changed", ()), now)
        came_or_went = delta.get("added") or delta.get("removed") or len(self.rows) != known
        self._updated(host, keys_changed=bool(came_or_went))

    def _updated(self, host: str, keys_changed: bool = True) -> None:
        """After new data from a host: a pending selection waits two updates at most; the
        rows in host and pid order are kept where no row came or went."""
        self.stale_hosts.discard(host)
        if self._pending is not None and self._pending[0] == host:
            self._pending_waits += 1
            if self._pending in self.rows or self._pending_waits > PENDING_UPDATES:
                self._pending = None
        if keys_changed:
            self._order = None
        self._parents = None
        self._changed(structure=True)

    def mark_stale(self, host: str) -> None:
        """The host is unreachable: its rows stay, marked as out of date."""
        self.stale_hosts.add(host)
        self._changed()

    def _add(self, host: str, rows, now: float) -> None:
        for row in rows:
            key = (host, row["pid"])
            self.rows[key] = row
            if is_kernel_thread(row):
                self._kernel.add(key)
            else:
                self._kernel.discard(key)
            samples = self.usage.setdefault(key, deque())
            samples.append((now, row.get("cpu", 0.0), row.get("rss", 0)))
            while len(samples) > 1 and samples[1][0] <= now - HISTORY_SECONDS:
                samples.popleft()  # keep one sample from before the window: it still holds

    def samples(self, key: Key, now: float, slots: int = 60) -> list[tuple[float, int]]:
        """(cpu, rss) for each second of the last minute; a value holds until it changes
        (only changes are stored), and seconds before the first sample are left out."""
        usage = self.usage.get(key)
        if not usage:
            return []
        out, index, current = [], 0, None
        for slot in range(slots):
            moment = now - (slots - 1 - slot) * HISTORY_SECONDS / slots
            while index < len(usage) and usage[index][0] <= moment:
                current = usage[index][1:]
                index += 1
            if current is not None:
                out.append(current)
        return out

    # -- how to show it --------------------------------------------------------------------

    def set_sort(self, name: str) -> None:
        """Sort by name; choosing the current sort again reverses it. The selection goes to
        the top row, so the first rows shown are the top of the new order."""
        if name == self.sort:
            self.reverse = not self.reverse
        else:
            self.sort, self.reverse = name, SORTS[name][1]
        self._changed(structure=True)
        self.select_index(0)

    def set_filter(self, text: str) -> None:
        """Show only matching rows, starting from the first match."""
        self.filter = text
        self._changed()
        self.select_index(0)

    def toggle_tree(self) -> None:
        self.tree = not self.tree
        self._changed()

    def toggle_collapse(self, key: Key | None = None) -> None:
        key = key or self.selected
        if key is not None:
            self.collapsed.symmetric_difference_update({key})
            self._changed()

    def _changed(self, structure: bool = False) -> None:
        """What is shown changed; `structure`: so did the rows or their order."""
        self._lines = None
        if structure:
            self._structure = self._flat = None

    @property
    def lines(self) -> Sequence[Line]:
        if self._lines is None:
            self._lines = self._tree_lines() if self.tree else self._flat_lines()
        return self._lines

    def _position(self, key: Key | None) -> int | None:
        """Where a key's line is in the lines shown (a search: a dictionary of 100,000 keys
        would cost more at every sort, filter or tree than searching costs when asked)."""
        try:
            return self.lines.keys.index(key)
        except ValueError:
            return None

    def _sorted(self, keys) -> list[Key]:
        """By the sort column; equal values stay in host and pid order, whatever the direction
        (a stable sort of the keys in that order: it is kept until rows come or go, so a new
        sort or filter sorts plain numbers)."""
        order = self._key_order()
        if len(keys) == len(order):
            ordered = order  # every row: no filter to apply
        else:
            wanted = keys if isinstance(keys, (set, frozenset)) else set(keys)
            ordered = [key for key in order if key in wanted]
        return [ordered[index] for index in self._ranked(ordered)]

    def _key_order(self) -> list[Key]:
        """Every key in host and pid order, kept until rows come or go."""
        if self._order is None:
            self._order = sorted(self.rows)
        return self._order

    def _ranked(self, keys: list[Key]) -> list[int]:
        """The positions of keys in the sort's order (a stable sort, reversed or not)."""
        field = SORTS[self.sort][0]
        values = [row.get(field) or 0 for row in map(self.rows.__getitem__, keys)]
        return sorted(range(len(values)), key=values.__getitem__, reverse=self.reverse)

    @property
    def filtering(self) -> bool:
        """Whether some rows are left out: by the filter, as kernel threads, or as unmanaged."""
        return bool(self.filter) or not self.show_kernel or self.only_managed

    def toggle_kernel(self) -> None:
        self.show_kernel = not self.show_kernel
        self._changed()

    def toggle_managed(self) -> None:
        self.only_managed = not self.only_managed
        self._changed()
        self.select_index(0)

    def _matching(self) -> list[Key] | set[Key] | KeysView[Key]:
        """The keys shown, in one pass over the rows at most (100,000 rows: each pass counts);
        kernel threads are known as their rows arrive, so hiding them alone is a set
        difference."""
        rows, kernel = self.rows, () if self.show_kernel else self._kernel
        if not (self.filter or self.only_managed):
            return rows.keys() - kernel if kernel else rows.keys()
        needle, managed = self.filter.lower(), self.only_managed
        return [
            key
            for key, row in rows.items()
            if (not managed or row.get("managed"))
            and (not kernel or key not in kernel)
            and needle in row_text(row).lower()
        ]

    def _flat_lines(self) -> LazyLines:
        """The rows shown, in sort order; kept until the rows, the sort or what is shown
        change (so leaving the tree view costs nothing)."""
        shown = (self.filter, self.show_kernel, self.only_managed)
        if self._flat is None or self._flat[0] != shown:
            self._flat = shown, LazyLines(self._sorted(self._matching()), self.rows)
        return self._flat[1]

    def _tree_lines(self) -> LazyLines:
        context = bool(self.filter) or self.only_managed  # matches shown with their ancestors
        shown = None
        if context:
            shown = with_ancestors(set(self._matching()), self._key_order(), self._tree())
        collapsed = self.collapsed.intersection(self.rows)
        return LazyLines(visible_lines(self._preorder(), shown, collapsed), self.rows, tree=True)

    def _preorder(self) -> list[tuple]:
        """The whole tree, every branch open, kernel threads as `h` says; kept until the rows
        or the sort change (so showing the tree, folding and filtering are one pass over it)."""
        if self._structure is None or self._structure[0] != self.show_kernel:
            order = self._key_order()
            preorder = depth_first(order, self._tree(), self._ranked(order), self.show_kernel)
            self._structure = self.show_kernel, preorder
        return self._structure[1]

    def _tree(self) -> Parents:
        """tree.parent_positions of the rows, kept until new data."""
        if self._parents is None:
            self._parents = parent_positions(self._key_order(), self.rows)
        return self._parents

    # -- selection -------------------------------------------------------------------------

    def focus_index(self) -> int:
        """Where the selection is now; a selected process that vanished hands over to the
        row that took its place (or the last one)."""
        lines = self.lines
        if not lines:
            return 0
        index = self._position(self.selected) if self.selected is not None else None
        if index is None:
            index = min(self._last_index, len(lines) - 1)
            if self._pending is None:
                self.selected = lines[index].key
        self._last_index = index
        return index

    def select_index(self, index: int) -> None:
        lines = self.lines
        self._pending = None
        if lines:
            index = max(0, min(index, len(lines) - 1))
            self.selected, self._last_index = lines[index].key, index

    def select(self, key: Key) -> None:
        """Select a process, even one whose row has not arrived yet (a process just started)."""
        self.selected = key
        self._pending, self._pending_waits = (None, 0) if key in self.rows else (key, 0)
        index = self._position(key) if self._lines is not None else None
        if index is not None:
            self._last_index = index

    @property
    def selected_row(self) -> dict | None:
        return self.rows.get(self.selected) if self.selected is not None else None

    def count(self, host: str | None = None) -> int:
        return sum(1 for key in self.rows if host is None or key[0] == host)
