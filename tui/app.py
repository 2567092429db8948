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

from rpm.client import CommandError
from rpm.rows import command_line
from rpm.wire import escape_text
from tui.connection import HostLink, describe_error
from tui.detail import DetailView
from tui.dialogs import ConfirmStop, FilterPrompt, HelpView, LaunchDialog, SignalChooser
from tui.history import History
from tui.keys import KEYMAP
from tui.logview import LogView
from tui.model import ProcessModel
from tui.table import ProcessWalker, TableBox, header_text

log = Logger()
LOG_BACKLOG = 200
ANSWER_SECONDS = 3.0  # an answer stays on the message line at least this long

PALETTE = [
    ("row", "default", "default"),
    ("managed", "light cyan", "default"),
    ("paused", "yellow", "default"),
    ("zombie", "dark gray", "default"),
    ("stale", "dark gray", "default"),
    ("focus", "black", "light gray"),
    ("header", "black", "dark cyan"),
    ("title", "white", "dark blue"),
    ("status", "white", "dark blue"),
    ("good", "light green", "dark blue"),
    ("bad", "light red", "dark blue"),
    ("error", "light red", "default"),
    ("notice", "light green", "default"),
    ("dim", "dark gray", "default"),
    ("key", "yellow", "default"),
    ("edit", "default", "default"),
    ("graph", "light green", "default"),
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


class App:
    def __init__(
        self, reactor, links: list[HostLink], model: ProcessModel, history: History, clock=time.time
    ):
        self.reactor = reactor
        self.links = {link.label: link for link in links}
        self.model = model
        self.history = history
        self.clock = clock
        self.walker = ProcessWalker(model, clock)
        self.table = TableBox(self.walker)
        self.header = urwid.Text("", wrap="clip")
        self.status = urwid.Text("", wrap="clip")
        self.message = urwid.Text("", wrap="clip")
        self.footer = urwid.Pile([urwid.AttrMap(self.status, "status"), self.message])
        self.frame = urwid.Frame(
            self.table, header=urwid.AttrMap(self.header, "header"), footer=self.footer
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
        for link in links:
            link.set_listener(self.changed)
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
        """Data arrived: refresh and redraw soon (one redraw for a burst of events)."""
        if self._redraw_call is None or not self._redraw_call.active():
            self._redraw_call = self.reactor.callLater(0, self._redraw)

    def _redraw(self) -> None:
        self.refresh()
        if self.loop is not None and self.loop.screen.started:
            self.loop.draw_screen()

    def refresh(self) -> None:
        """Bring header, table, status bar and any open view up to date with the model."""
        self.header.set_text(header_text(self.model, len(self.links) > 1))
        self.walker.refresh()
        self.status.set_text(self._status_text())
        if isinstance(self.view, DetailView):
            self.view.refresh()

    def _status_text(self) -> list:
        parts: list = []
        for link in self.links.values():
            parts += self._link_status(link)
        if self.model.filter:
            parts.append(f"  filter: {escape_text(self.model.filter)} ({len(self.model.lines)})")
        return parts or [""]

    def _link_status(self, link: HostLink) -> list:
        """One host in the status bar: name, connection state, rows and last update."""
        parts: list = [" ", escape_text(link.label), " "]
        if link.state == "connected":
            updated = time.strftime("%H:%M:%S", time.localtime(link.last_update or 0))
            count = self.model.count(link.label)
            return [*parts, ("good", "connected"), f" {count} processes, updated {updated}"]
        retry = ""
        if link.retry_at is not None:
            retry = f", retry in {max(0.0, link.retry_at - self.reactor.seconds()):.0f} s"
        parts.append(("bad", f"{link.state}{retry}"))
        if link.problem:
            parts.append(f" ({escape_text(link.problem)})")
        if link.label in self.model.stale_hosts:
            parts.append(("bad", " STALE"))
        return parts

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

    def open_dialog(self, widget, width: int = 70, height: int = 12) -> None:
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

    # -- requests --------------------------------------------------------------------------

    def selection(self):
        """(link, pid, row) of the selected process, or None (with a message)."""
        row = self.model.selected_row
        if row is None:
            self.say_error("no process selected")
            return None
        host, pid = self.model.selected
        return self.links[host], pid, row

    def send(self, link: HostLink, line: str, on_ok) -> defer.Deferred:
        """Send a request; show its outcome (or the server's error code and message)."""
        done = link.command(line)
        done.addCallbacks(on_ok, self._refused)
        return done

    def _refused(self, failure) -> None:
        if failure.check(CommandError):
            self.say_error(f"{failure.value.code}: {failure.value.message}")
        else:
            self.say_error(describe_error(failure.value))

    # -- commands --------------------------------------------------------------------------

    def cmd_quit(self) -> None:
        self.restore_terminal()
        for link in self.links.values():
            link.stop()
        if not self.finished.called:
            self.finished.callback(0)

    def cmd_help(self) -> None:
        self.open_dialog(HelpView(), height=24)

    def cmd_sort(self, name: str) -> None:
        self.model.set_sort(name)
        self.refresh()

    def cmd_tree(self) -> None:
        self.model.toggle_tree()
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

    def cmd_detail(self) -> None:
        selected = self.selection()
        if selected is None:
            return
        link, pid, _ = selected
        view = DetailView(self.model, (link.label, pid), self.clock)
        self.open_view(view)
        link.command(f"INFO {pid}").addCallbacks(
            lambda reply: (view.show_info(reply.get("process", {})), self.changed()),
            lambda failure: (view.show_error(describe_error(failure.value)), self.changed()),
        )

    def cmd_stop(self) -> None:
        selected = self.selection()
        if selected is None:
            return
        link, pid, row = selected
        command = command_line(row.get("name", "?"), row.get("cmdline"))

        def confirmed() -> None:
            self.close_dialog()
            self.say(f"stopping {pid}...")
            self.send(link, f"STOP {pid}", lambda r: self.say(f"{pid} stopped by {r['signal']}"))

        self.open_dialog(ConfirmStop(pid, command, confirmed, self.close_dialog), height=8)

    def cmd_signal(self) -> None:
        selected = self.selection()
        if selected is None:
            return
        link, pid, _ = selected

        def chosen(name: str) -> None:
            self.close_dialog()
            self.send(
                link, f"SIGNAL {pid} {name}", lambda r: self.say(f"{pid}: sent {r['signal']}")
            )

        self.open_dialog(SignalChooser(pid, chosen), width=30, height=13)

    def cmd_pause(self) -> None:
        selected = self.selection()
        if selected is None:
            return
        link, pid, row = selected
        verb = "RESUME" if row.get("status") == "stopped" else "PAUSE"
        self.send(link, f"{verb} {pid}", lambda r: self.say(f"{pid} {r['message']}"))

    def cmd_launch(self) -> None:
        selected = self.model.selected
        link = self.links.get(selected[0]) if selected else None
        link = link or next(iter(self.links.values()))

        def submitted(line: str, command: str) -> None:
            self.history.add(command)
            self.close_dialog()
            self.send(link, line, lambda reply: self._launched(link, reply))

        self.open_dialog(LaunchDialog(self.history.entries, link.label, submitted), height=9)

    def _launched(self, link: HostLink, reply: dict) -> None:
        self.model.select((link.label, reply["pid"]))
        self.say(f"started pid {reply['pid']} on {link.label}")

    def cmd_logs(self) -> None:
        selected = self.selection()
        if selected is None:
            return
        link, pid, _ = selected
        view = LogView((link.label, pid))
        self.open_view(view)

        def output(event: dict) -> None:
            if event.get("pid") == pid and self.view is view:
                view.add(event.get("stream", "stdout"), event.get("line", ""))
                self.changed()

        def follow() -> None:  # also after a reconnection: start over with the backlog
            view.clear()
            view.set_status("following")
            link.command(f"FOLLOW {pid} {LOG_BACKLOG}").addErrback(refused)

        def refused(failure) -> None:
            view.set_status(describe_error(failure.value))
            self._refused(failure)

        link.on_output, link.on_connected = output, follow
        follow()
