"""Dialogs over the table: confirm a stop, pick a signal, launch a program, help."""

from __future__ import annotations

import shlex
from collections.abc import Callable

import urwid

from rpm.commands import RESTART_POLICIES
from rpm.wire import escape_text
from tui.keys import help_lines

SIGNALS = ("TERM", "KILL", "HUP", "INT", "USR1", "USR2", "STOP", "CONT")


class ConfirmStop(urwid.WidgetWrap):
    """`y` stops the process; any other key cancels."""

    title = "Stop process"

    def __init__(
        self, pid: int, command: str, on_yes: Callable[[], None], on_cancel: Callable[[], None]
    ):
        self._on_yes, self._on_cancel = on_yes, on_cancel
        text = urwid.Text(
            [
                f"Stop pid {pid}?\n",
                ("dim", escape_text(command)[:300]),
                "\n\n",
                ("key", "y"),
                " stop (SIGTERM, then SIGKILL)    ",
                ("key", "any other key"),
                " cancel",
            ]
        )
        super().__init__(urwid.Filler(text, valign="top"))

    def selectable(self) -> bool:
        return True

    def keypress(self, size, key):
        (self._on_yes if key == "y" else self._on_cancel)()


class SignalChooser(urwid.WidgetWrap):
    """A list of signals; Enter sends the highlighted one."""

    title = "Send signal"

    def __init__(self, pid: int, on_choose: Callable[[str], None]):
        self._on_choose = on_choose
        items = [
            urwid.AttrMap(urwid.SelectableIcon(f" SIG{name:<6}", 0), "row", "focus")
            for name in SIGNALS
        ]
        self._list = urwid.ListBox(urwid.SimpleFocusListWalker(items))
        body = urwid.Pile([("pack", urwid.Text(f"to pid {pid}:")), self._list])
        super().__init__(body)

    def keypress(self, size, key):
        if key == "enter":
            self._on_choose(SIGNALS[self._list.focus_position])
            return None
        return super().keypress(size, key)


class HistoryEdit(urwid.Edit):
    """A one-line editor whose Up and Down walk through earlier entries."""

    def __init__(self, caption: str, history: list[str]):
        super().__init__(caption)
        self._history = history
        self._position = len(history)

    def keypress(self, size, key):
        if key in ("up", "down") and self._history:
            step = -1 if key == "up" else 1
            self._position = max(0, min(len(self._history), self._position + step))
            text = self._history[self._position] if self._position < len(self._history) else ""
            self.set_edit_text(text)
            self.set_edit_pos(len(text))
            return None
        return super().keypress(size, key)


class LaunchDialog(urwid.WidgetWrap):
    """Command line (with history), working directory, restart policy; Enter starts it."""

    title = "Launch a program"

    def __init__(self, history: list[str], host: str, on_submit: Callable[[str, str], None]):
        self._on_submit = on_submit
        self.command = HistoryEdit("command:   ", history)
        self.cwd = urwid.Edit("directory: ")
        self._group: list[urwid.RadioButton] = []
        buttons = [urwid.RadioButton(self._group, policy) for policy in RESTART_POLICIES]
        self._fields = urwid.Pile(
            [
                urwid.AttrMap(self.command, "edit"),
                urwid.AttrMap(self.cwd, "edit"),
                urwid.Columns(
                    [("pack", urwid.Text("restart:   ")), *[("pack", b) for b in buttons]],
                    dividechars=2,
                ),
            ]
        )
        hint = urwid.Text(
            ("dim", f"on {host}.  Enter: start   Tab: next field   Up/Down: history   Esc: cancel")
        )
        super().__init__(urwid.Filler(urwid.Pile([self._fields, urwid.Divider(), hint]), "top"))

    @property
    def restart(self) -> str:
        return next(button.label for button in self._group if button.state)

    def start_line(self) -> str | None:
        """The START request for what was typed, or None if there is no command."""
        command = self.command.edit_text.strip()
        if not command:
            return None
        words = ["START"]
        if self.cwd.edit_text.strip():
            words += ["--cwd", shlex.quote(self.cwd.edit_text.strip())]
        if self.restart != "no":
            words += ["--restart", self.restart]
        return " ".join([*words, "--", command])

    def keypress(self, size, key):
        if key == "enter":
            line = self.start_line()
            if line:
                self._on_submit(line, self.command.edit_text.strip())
            return None
        if key in ("tab", "shift tab"):
            step = 1 if key == "tab" else -1
            self._fields.focus_position = (self._fields.focus_position + step) % 3
            return None
        return super().keypress(size, key)


class HelpView(urwid.WidgetWrap):
    """Every key and what it does."""

    title = "Keys"

    def __init__(self) -> None:
        width = max(len(keys) for keys, _ in help_lines())
        lines = [
            urwid.Text([("key", f"{keys:<{width}}"), f"  {text}"]) for keys, text in help_lines()
        ]
        lines.append(urwid.Text(("dim", "\nM: managed by the server  P: paused.  Esc closes.")))
        super().__init__(urwid.ListBox(urwid.SimpleFocusListWalker(lines)))


class FilterPrompt(urwid.Edit):
    """The footer's `/` prompt: Enter applies, Esc clears."""

    def __init__(self, text: str, on_done: Callable[[str], None]):
        super().__init__("filter: ", text)
        self.set_edit_pos(len(text))
        self._on_done = on_done

    def keypress(self, size, key):
        if key == "enter":
            self._on_done(self.edit_text)
            return None
        if key == "esc":
            self._on_done("")
            return None
        return super().keypress(size, key)
