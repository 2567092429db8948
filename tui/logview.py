"""The log view: a managed process's output, following new lines as they come."""

from __future__ import annotations

import urwid

from rpm.wire import escape_text

MAX_LINES = 5000


class LogView(urwid.WidgetWrap):
    """Lines from FOLLOW (stderr highlighted); stays at the bottom unless scrolled up."""

    def __init__(self, key: tuple[str, int]):
        self.key = key
        self._lines = urwid.SimpleFocusListWalker([])
        self._list = urwid.ListBox(self._lines)
        self._title = urwid.Text("")
        self._status = "following"
        self._set_title()
        super().__init__(urwid.Frame(self._list, header=self._title))

    def _set_title(self) -> None:
        host, pid = self.key
        self._title.set_text(
            ("title", f" output of pid {pid} on {host} ({self._status})   Esc: back to the table")
        )

    def set_status(self, status: str) -> None:
        self._status = status
        self._set_title()

    def clear(self) -> None:
        del self._lines[:]

    def add(self, stream: str, text: str) -> None:
        at_end = not self._lines or self._list.focus_position == len(self._lines) - 1
        attribute = "stderr" if stream == "stderr" else "stdout"
        self._lines.append(urwid.Text((attribute, escape_text(text))))
        if len(self._lines) > MAX_LINES:
            del self._lines[: len(self._lines) - MAX_LINES]
        if at_end:
            self._list.set_focus(len(self._lines) - 1)

    @property
    def texts(self) -> list[str]:
        return [widget.text for widget in self._lines]
