"""Dialogs over the table: confirm a stop, pick a signal, launch a program, help."""

from __future__ import annotations

import shlex
from collections.abc import Callable

import urwid

from rpm.limits import RESTART_POLICIES
from rpm.wire import escape_text
from tui.keys import help_lines
from tui.launches import Launch

SIGNALS = ("TERM", "KILL", "HUP", "INT", "USR1", "USR2", "STOP", "CONT")


class ConfirmStop(urwid.WidgetWrap):
    """`y` stops the process (or restarts the program); any other key cancels."""

    title = "Stop process"
    question, answer = "Stop pid {pid}?", " stop (SIGTERM, then SIGKILL)    "

    def __init__(
        self, pid: int, command: str, on_yes: Callable[[], None], on_cancel: Callable[[], None]
    ):
        self._on_yes, self._on_cancel = on_yes, on_cancel
        text = urwid.Text(
            [
                self.question.format(pid=pid) + "\n",
                ("dim", escape_text(command)[:300]),
                "\n\n",
                ("key", "y"),
                self.answer,
                ("key", "any other key"),
                " cancel",
            ]
        )
        super().__init__(urwid.Filler(text, valign="top"))

    def selectable(self) -> bool:
        return True

    def keypress(self, size, key):
        (self._on_yes if key == "y" else self._on_cancel)()


class ConfirmRestart(ConfirmStop):
    title = "Restart program"
    question, answer = "Restart pid {pid}?", " restart (stopped, then started the same way)    "


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
    """The command field: Up and Down walk through earlier launches, and fill in the other
    fields of the launch they recall."""

    def __init__(self, caption: str, history: list[Launch], recall: Callable[[Launch], None]):
        super().__init__(caption)
        self._history = history
        self._recall = recall
        self._position = len(history)

    def keypress(self, size, key):
        if key in ("up", "down") and self._history:
            step = -1 if key == "up" else 1
            self._position = max(0, min(len(self._history), self._position + step))
            inside = self._position < len(self._history)
            self._recall(self._history[self._position] if inside else Launch(""))
            return None
        return super().keypress(size, key)


class LaunchDialog(urwid.WidgetWrap):
    """Command line (with history), name, working directory, environment, restart policy;
    Enter starts it."""

    title = "Launch a program"

    def __init__(self, history: list[Launch], host: str, on_submit: Callable[[str, Launch], None]):
        self._on_submit = on_submit
        self.command = HistoryEdit("command:     ", history, self.recall)
        self.name = urwid.Edit("name:        ")
        self.cwd = urwid.Edit("directory:   ")
        self.env = urwid.Edit("environment: ")
        self._group: list[urwid.RadioButton] = []
        buttons = [urwid.RadioButton(self._group, policy) for policy in RESTART_POLICIES]
        self._fields = urwid.Pile(
            [
                urwid.AttrMap(self.command, "edit"),
                urwid.AttrMap(self.name, "edit"),
                urwid.AttrMap(self.cwd, "edit"),
                urwid.AttrMap(self.env, "edit"),
                urwid.Columns(
                    [("pack", urwid.Text("restart:     ")), *[("pack", b) for b in buttons]],
                    dividechars=2,
                ),
            ]
        )
        hint = urwid.Text(
            (
                "dim",
                f"on {host}.  environment: NAME=VALUE ...   Enter: start   Tab: next field   "
                "Up/Down: history   Esc: cancel",
            )
        )
        super().__init__(urwid.Filler(urwid.Pile([self._fields, urwid.Divider(), hint]), "top"))

    @property
    def restart(self) -> str:
        return next(button.label for button in self._group if button.state)

    @property
    def launch(self) -> Launch:
        """What the fields hold now."""
        return Launch(
            self.command.edit_text.strip(),
            self.cwd.edit_text.strip(),
            self.restart,
            self.env.edit_text.strip(),
            self.name.edit_text.strip(),
        )

    def recall(self, launch: Launch) -> None:
        """Fill every field from an earlier launch."""
        self.command.set_edit_text(launch.command)
        self.command.set_edit_pos(len(launch.command))
        self.cwd.set_edit_text(launch.cwd)
        self.env.set_edit_text(launch.env)
        self.name.set_edit_text(launch.name)
        for button in self._group:
            button.set_state(button.label == launch.restart, do_callback=False)

    def start_line(self) -> str | None:
        """The START request for what was typed, or None if there is no command (or the
        environment is not NAME=VALUE words: the dialog then says so)."""
        launch = self.launch
        if not launch.command:
            return None
        words = ["START"]
        if launch.name:
            words += ["--name", shlex.quote(launch.name)]
        if launch.cwd:
            words += ["--cwd", shlex.quote(launch.cwd)]
        for setting in shlex.split(launch.env):
            words += ["--env", shlex.quote(setting)]
        if launch.restart != "no":
            words += ["--restart", launch.restart]
        return " ".join([*words, "--", launch.command])

    def keypress(self, size, key):
        if key == "enter":
            try:
                line = self.start_line()
            except ValueError:  # unbalanced quotes in the environment field
                self.env.set_caption(("error", "environment (check quotes): "))
                return None
            if line:
                self._on_submit(line, self.launch)
            return None
        if key in ("tab", "shift tab"):
            step = 1 if key == "tab" else -1
            self._fields.focus_position = (self._fields.focus_position + step) % len(
                self._fields.contents
            )
            return None
        return super().keypress(size, key)


class HelpView(urwid.WidgetWrap):
    """Every key and what it does."""

    title = "Keys"

    def __init__(self) -> None:
        width = max(len(keys) for keys, _ in help_lines()) + 2
        lines = [  # a long description wraps under itself, not under the keys
            urwid.Columns([(width, urwid.Text(("key", keys))), urwid.Text(text)])
            for keys, text in help_lines()
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
