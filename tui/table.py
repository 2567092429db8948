"""The process table widget: a lazy ListWalker over the model's lines, so only the rows on
screen ever become widgets, and the focus is the model's selection."""

from __future__ import annotations

import time

import urwid

from rpm.rows import clip, command_line, human_bytes
from rpm.wire import escape_text
from tui.model import Line, ProcessModel

# (title, width, align, sort name)
COLUMNS = [
    ("PID", 7, ">", "pid"),
    ("USER", 9, "<", None),
    ("STATE", 8, "<", None),
    ("%CPU", 6, ">", "cpu"),
    ("MEM", 7, ">", "mem"),
    ("STARTED", 8, ">", "start"),
    ("NAME", 10, "<", None),  # a managed program's name (START --name, the programs file)
]
HOST_WIDTH = 15


def started_text(started: float, now: float) -> str:
    """Time of day for processes started today, the date otherwise."""
    local = time.localtime(started)
    if time.localtime(now)[:3] == local[:3]:
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%b %d", local)


def _fit(text: str, width: int, align: str) -> str:
    return f"{clip(text, width):{align}{width}}"


def tree_prefix(line: Line) -> str:
    """Indentation for the tree view; [+] marks a folded branch, [-] an open one."""
    if line.collapsed:
        marker = "[+] "
    elif line.has_children:
        marker = "[-] "
    else:
        marker = "`- " if line.depth else ""
    return "  " * line.depth + marker


def flags(row: dict) -> str:
    """Two characters: M for a managed process, P for a paused (stopped) one."""
    return ("M" if row.get("managed") else " ") + ("P" if row.get("status") == "stopped" else " ")


def format_line(line: Line, now: float, hosts: bool) -> str:
    """One table row as text, every value escaped so nothing raw reaches the terminal."""
    row = line.row
    cells = [
        _fit(str(row["pid"]), 7, ">"),
        _fit(escape_text(row.get("user") or "?"), 9, "<"),
        _fit(escape_text(row.get("status", "?")), 8, "<"),
        _fit(f"{row.get('cpu', 0.0):.1f}", 6, ">"),
        _fit(human_bytes(row.get("rss", 0)), 7, ">"),
        _fit(started_text(row.get("started", 0.0), now), 8, ">"),
        _fit(escape_text(row.get("program") or ""), 10, "<"),
        flags(row),
    ]
    if hosts:
        cells.insert(0, _fit(escape_text(line.key[0]), HOST_WIDTH, "<"))
    command = escape_text(command_line(row.get("name", "?"), row.get("cmdline")))
    return " ".join(cells) + " " + tree_prefix(line) + command


def header_text(model: ProcessModel, hosts: bool) -> str:
    """Column titles, the sort column marked with its direction."""
    cells = []
    for title, width, align, sort in COLUMNS:
        arrow = ("\u25bc" if model.reverse else "\u25b2") if sort == model.sort else ""
        cells.append(_fit(title + arrow, width, align))
    cells.append("  ")
    if hosts:
        cells.insert(0, _fit("HOST", HOST_WIDTH, "<"))
    return " ".join(cells) + " COMMAND" + ("  [tree]" if model.tree else "")


def row_attribute(line: Line, stale: bool) -> str:
    row = line.row
    if stale:
        return "stale"
    if row.get("status") == "stopped":
        return "paused"
    if row.get("status") == "zombie":
        return "zombie"
    return "managed" if row.get("managed") else "row"


class RowWidget(urwid.Text):
    """A selectable line of text (ListBox moves its focus only between selectable rows)."""

    _selectable = True

    def keypress(self, size, key):
        return key


class ProcessWalker(urwid.ListWalker):
    """Positions are indexes into model.lines; widgets are built only for rows on screen."""

    def __init__(self, model: ProcessModel, clock=time.time):
        self.model = model
        self._clock = clock
        self._cache: dict = {}
        self._hosts = False

    def refresh(self) -> None:
        """The model changed: drop cached widgets and tell the ListBox."""
        self._cache = {}
        self._hosts = len({host for host, _ in self.model.rows}) > 1
        self._modified()

    def _widget(self, position: int):
        line = self.model.lines[position]
        widget = self._cache.get(line.key)
        if widget is None or widget.line is not line:
            text = format_line(line, self._clock(), self._hosts)
            attribute = row_attribute(line, line.key[0] in self.model.stale_hosts)
            # The focus map applies to the row's own (unset) attribute, so "focus" as a
            # string: a map keyed by "row", "managed", ... would never match and leave the
            # selection without any highlight.
            widget = urwid.AttrMap(RowWidget(text, wrap="clip"), attribute, "focus")
            widget.line = line
            self._cache[line.key] = widget
        return widget

    def get_focus(self):
        if not self.model.lines:
            return None, None
        position = self.model.focus_index()
        return self._widget(position), position

    def set_focus(self, position) -> None:
        self.model.select_index(position)
        self._modified()

    def get_next(self, position):
        if position is None or position + 1 >= len(self.model.lines):
            return None, None
        return self._widget(position + 1), position + 1

    def get_prev(self, position):
        if position is None or position <= 0:
            return None, None
        return self._widget(position - 1), position - 1

    def positions(self, reverse: bool = False):
        count = len(self.model.lines)
        return range(count - 1, -1, -1) if reverse else range(count)


class TableBox(urwid.ListBox):
    """A ListBox that never hides rows above the selection when they would fit on screen
    (after a re-sort or a filter the selection moves, and a plain ListBox keeps it at the
    same screen row, scrolling the top of the table out of sight)."""

    def render(self, size, focus=False):
        if len(size) == 2 and self.body.positions():
            _, rows = size
            index = self.focus_position
            if index < rows and self.offset_rows != index:
                self.shift_focus(size, index)
            elif self.offset_rows > index:
                self.shift_focus(size, min(index, rows - 1))
        return super().render(size, focus)
