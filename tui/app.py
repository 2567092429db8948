"""rpm-tui's application: the table, its views and dialogs, and what each key does.

The screen is redrawn when data arrives from a server (urwid only redraws by itself after
its own input and alarms, so network updates ask for a draw explicitly).
"""

from __future__ import annotations

import gc
import time

import urwid
from twisted.internet import defer, task
from twisted.logger import Logger

from rpm.wire import escape_text
from tui.actions import ProcessActions
from tui.detail import DetailView
from tui.dialogs import FilterPrompt, HelpView
from tui.keys import KEYMAP
from tui.launches import LaunchHistory
from tui.link import Link
from tui.logview import LogView
from tui.model import ProcessModel
from tui.statusbar import status_parts
from tui.table import ProcessWalker, TableBox, header_text
from tui.vitals import header_lines

log = Logger()
ANSWER_SECONDS = 3.0  # an answer stays on the message line at least this long
HOST_REDRAW_GAP = 0.2  # seconds at least between redraws for what hosts send,
HOST_REDRAW_SHARE = 0.1  # and longer where they would take more of a core than this

PALETTE = [
    ("row", "default", "default"),
    ("managed", "light cyan", "default"),
    ("paused", "yellow", "default"),
    ("zombie", "dark gray", "default"),
    ("stale", "dark gray", "default"),
    # The fourth field is what a monochrome terminal (or NO_COLOR) shows.
    ("focus", "black", "light gray", "standout"),
    ("header", "black", "dark cyan", "standout"),
    ("title", "white", "dark blue", "bold"),
    ("status", "white", "dark blue", "standout"),
    ("good", "light green", "dark blue", "standout"),
    ("bad", "light red", "dark blue", "standout"),
    ("error", "light red", "default"),
    ("notice", "light green", "default"),
    ("dim", "dark gray", "default"),
    ("key", "yellow", "default"),
    ("edit", "default", "default"),
    ("graph", "light green", "default"),
    ("bar", "light green", "default"),
    ("bold", "default,bold", "default"),
    ("stderr", "light red", "default"),
    ("stdout", "default", "default"),
]


def tune_garbage_collector() -> None:
    """Collect cycles less often. A large table is tens of thousands of objects the cyclic
    collector would otherwise walk every few key presses, for pauses of 40 ms and more;
    the rows themselves hold no cycles, and reference counting frees them."""
    gc.set_threshold(100_000, 50, 100)


class Root(urwid.WidgetWrap):
    """The top widget: the table, a full-screen view, or a dialog over them; keys go to App."""

    def __init__(self, app: App, widget):
        self._app = app
        super().__init__(widget)

    def show(self, widget) -> None:
        self._w = widget

    @property
    def shown(self):
        return self._w

    def keypress(self, size, key):
        try:
            return self._app.keypress(size, key)
        except Exception:
            log.failure("key {key!r} failed", key=key)
            self._app.say_error("internal error (see the log file)")
        return None


class App(ProcessActions):
    """The window stack (table, a view, a dialog), key routing and redraws."""

    def __init__(
        self,
        reactor,
        links: list[Link],
        model: ProcessModel,
        launches: LaunchHistory,
        clock=time.time,
    ):
        self.reactor = reactor
        self.links = {link.label: link for link in links}
        self.model = model
        self.launches = launches
        self.clock = clock
        self.walker = ProcessWalker(model, clock)
        self.table = TableBox(self.walker)
        self.header = urwid.Text("", wrap="clip")
        self.vitals = urwid.Pile([])  # the machines' vitals above the table (vitals.py)
        self.show_vitals = True
        self.status = urwid.Text("", wrap="clip")
        self.message = urwid.Text("")  # wraps: a long error is read whole
        self.footer = urwid.Pile([urwid.AttrMap(self.status, "status"), self.message])
        self.frame = urwid.Frame(
            self.table,
            header=urwid.Pile([self.vitals, urwid.AttrMap(self.header, "header")]),
            footer=self.footer,
        )
        self.root = Root(self, self.frame)
        self.view: DetailView | LogView | None = None
        self.dialog = None
        self.prompt: FilterPrompt | None = None
        self.loop: urwid.MainLoop | None = None
        self.finished: defer.Deferred = defer.Deferred()
        self._redraw_call = None
        self._ticker: task.LoopingCall | None = None
        self._answered_at = -1e9
        self._drawn_at = -1e9
        self.timer = time.perf_counter  # what a redraw takes (a CPU's work, not a moment)
        self._redraw_took = 0.0
        for link in links:
            link.set_listener(self.host_changed)
            link.on_notice = self.notice
        self.refresh()

    # -- running ---------------------------------------------------------------------------

    def start(self, screen=None) -> defer.Deferred:
        """Take over the terminal; the Deferred fires with the exit status on quit."""
        event_loop = urwid.TwistedEventLoop(self.reactor, manage_reactor=False)
        self.loop = urwid.MainLoop(
            self.root, PALETTE, screen=screen, event_loop=event_loop, handle_mouse=False
        )
        self.loop.start()
        self._ticker = task.LoopingCall(self.changed)  # countdowns and "updated" times move
        self._ticker.clock = self.reactor
        self._ticker.start(1.0, now=False)
        self.reactor.addSystemEventTrigger("before", "shutdown", self.restore_terminal)
        return self.finished

    def restore_terminal(self) -> None:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        if self.loop is not None and self.loop.screen.started:
            self.loop.stop()

    def changed(self) -> None:
        """Something to show: refresh and redraw now, at the end of this turn (one redraw
        for a burst of events)."""
        self._redraw_after(0.0)

    def host_changed(self) -> None:
        """A host sent rows (or its link changed): redraw after the last redraw, at the
        soonest HOST_REDRAW_GAP later, or as much later as keeps redraws for hosts' rows
        within HOST_REDRAW_SHARE of a core. Each redraw sorts every row shown, and 50 hosts
        each send rows every second: a redraw for each cost a fifth of a core for 100,000
        rows."""
        gap = max(HOST_REDRAW_GAP, self._redraw_took / HOST_REDRAW_SHARE)
        self._redraw_after(self._drawn_at + gap - self.reactor.seconds())

    def _redraw_after(self, delay: float) -> None:
        delay = max(delay, 0.0)
        call = self._redraw_call
        if call is None or not call.active():
            self._redraw_call = self.reactor.callLater(delay, self._redraw)
        elif call.getTime() > self.reactor.seconds() + delay:
            call.reset(delay)

    def _redraw(self) -> None:
        self._drawn_at = self.reactor.seconds()
        began = self.timer()
        self.refresh()
        if self.loop is not None and self.loop.screen.started:
            self.loop.draw_screen()
        self._redraw_took = self.timer() - began

    def refresh(self) -> None:
        """Bring header, table, status bar and any open view up to date with the model."""
        self.header.set_text(header_text(self.model, len(self.links) > 1))
        self._refresh_vitals()
        self.walker.refresh()
        self.status.set_text(self._status_text())
        if isinstance(self.view, DetailView):
            self.view.refresh()

    def _refresh_vitals(self) -> None:
        selected = self.model.selected[0] if self.model.selected else None
        lines = header_lines(self.links.values(), selected) if self.show_vitals else []
        self.vitals.contents[:] = [
            (urwid.Text(line or "", wrap="clip"), ("pack", None)) for line in lines
        ]

    def cmd_vitals(self) -> None:
        self.show_vitals = not self.show_vitals
        self.refresh()

    def _status_text(self) -> list:
        return status_parts(self.links.values(), self.model, self.reactor.seconds())

    def say(self, text: str) -> None:
        """Show the outcome of the operator's action."""
        self._answered_at = self.reactor.seconds()
        self.message.set_text(("notice", escape_text(text)))
        self.changed()

    def say_error(self, text: str) -> None:
        self._answered_at = self.reactor.seconds()
        self.message.set_text(("error", escape_text(text)))
        self.changed()

    def notice(self, text: str) -> None:
        """A server event (a process started or exited): shown unless it would hide the answer
        to what the operator just did."""
        if self.reactor.seconds() - self._answered_at >= ANSWER_SECONDS:
            self.message.set_text(("dim", escape_text(text)))
            self.changed()

    # -- keys ------------------------------------------------------------------------------

    def keypress(self, size, key):
        """Route a key: an open dialog, the filter prompt, a view, then the table."""
        if self.dialog is not None:
            return self._dialog_key(size, key)
        if self.prompt is not None:
            return self.frame.keypress(size, key)
        if key in ("q", "f10", "ctrl c"):
            return self.cmd_quit()
        if self.view is not None:
            return self.close_view() if key == "esc" else self.view.keypress(size, key)
        return self._table_key(size, key)

    def _dialog_key(self, size, key):
        if key == "esc":
            return self.close_dialog()
        return self.root.shown.keypress(size, key)

    def _table_key(self, size, key):
        if key in ("home", "end"):
            self.model.select_index(0 if key == "home" else len(self.model.lines) - 1)
            self.walker.refresh()
            return None
        if key == "esc":
            return self.cmd_filter_done("")
        if self.frame.keypress(size, key) is None:
            return None
        return self.run_command(KEYMAP.get(key))

    def run_command(self, command: str | None):
        if command is None:
            return None
        name, _, argument = command.partition(" ")
        method = getattr(self, f"cmd_{name}")
        if argument:
            method(argument)
        else:
            method()
        return None

    # -- windows ---------------------------------------------------------------------------

    def open_dialog(self, widget, width: int = 70, height: int | tuple = 12) -> None:
        box = urwid.LineBox(widget, title=getattr(widget, "title", ""))
        self.dialog = widget
        base = self.view if self.view is not None else self.frame
        self.root.show(
            urwid.Overlay(
                box, base, "center", ("relative", 90), "middle", height, min_width=min(width, 40)
            )
        )

    def close_dialog(self) -> None:
        self.dialog = None
        self.root.show(self.view if self.view is not None else self.frame)

    def open_view(self, view) -> None:
        self.view = view
        self.root.show(view)

    def close_view(self) -> None:
        view, self.view = self.view, None
        if isinstance(view, LogView):
            link = self.links.get(view.key[0])
            if link is not None:
                link.on_output = link.on_connected = None
                link.command(f"UNFOLLOW {view.key[1]}").addErrback(lambda _: None)
        self.root.show(self.frame)
        self.refresh()

    # -- commands --------------------------------------------------------------------------

    def cmd_quit(self) -> None:
        self.restore_terminal()
        for link in self.links.values():
            link.stop()
        if not self.finished.called:
            self.finished.callback(0)

    def cmd_help(self) -> None:
        self.open_dialog(HelpView(), height=("relative", 95))

    def cmd_sort(self, name: str) -> None:
        self.model.set_sort(name)
        self.refresh()

    def cmd_tree(self) -> None:
        self.model.toggle_tree()
        self.refresh()

    def cmd_kernel(self) -> None:
        self.model.toggle_kernel()
        self.say(f"kernel threads {'shown' if self.model.show_kernel else 'hidden'}")
        self.refresh()

    def cmd_managed(self) -> None:
        self.model.toggle_managed()
        self.say("only managed programs" if self.model.only_managed else "every process")
        self.refresh()

    def cmd_collapse(self) -> None:
        if self.model.tree:
            self.model.toggle_collapse()
            self.refresh()

    def cmd_filter(self) -> None:
        self.prompt = FilterPrompt(self.model.filter, self.cmd_filter_done)
        self.footer.contents[1] = (self.prompt, ("pack", None))
        self.frame.focus_position = "footer"
        self.footer.focus_position = 1

    def cmd_filter_done(self, text: str) -> None:
        self.prompt = None
        self.footer.contents[1] = (self.message, ("pack", None))
        self.frame.focus_position = "body"
        self.model.set_filter(text)
        self.refresh()
