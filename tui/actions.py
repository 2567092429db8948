"""What the operator can do to the selected process: details, stop, signal, pause, logs, and
launching a program. A mixin of App: it uses the App's model, links, dialogs and views."""

from __future__ import annotations

from twisted.internet import defer

from rpm.rows import command_line
from tui.connection import describe_error
from tui.detail import DetailView
from tui.dialogs import ConfirmRestart, ConfirmStop, LaunchDialog, SignalChooser
from tui.launches import Launch
from tui.link import Link
from tui.logview import LogView

LOG_BACKLOG = 200
READ_ONLY_HELP = (
    "read-only: no token for {host}. Restart rpm-tui with --token-file FILE or RPM_TOKEN set "
    "(the token is in the server's state directory, e.g. ~/.local/state/rpm/token)"
)


def stop_text(pid: int, reply: dict) -> str:
    """What a STOP did: the signal that ended it, or (for a program waiting to restart) the
    server's message."""
    if reply.get("signal") is None:
        return f"{pid} {reply.get('message', 'stopped')}"
    return f"{pid} stopped by {reply['signal']}"


class ProcessActions:
    """The `cmd_*` commands that send requests to a server, and how their answers show."""

    def selection(self, changing: bool = True):
        """(link, pid, row) of the selected process, or None (with a message). `changing`:
        the action changes something, so its host must have our token."""
        row = self.model.selected_row
        if row is None:
            self.say_error("no process selected")
            return None
        host, pid = self.model.selected
        link = self.links[host]
        if changing and not self.writable(link):
            return None
        return link, pid, row

    def writable(self, link: Link) -> bool:
        """Whether we may change things on link's host; if not, say how to give a token."""
        if link.read_only:
            self.say_error(READ_ONLY_HELP.format(host=link.label))
        return not link.read_only

    def send(self, link: Link, line: str, on_ok) -> defer.Deferred:
        """Send a request; show its outcome (or the server's error code and message)."""
        done = link.command(line)
        done.addCallbacks(on_ok, self._refused)
        return done

    def _refused(self, failure) -> None:
        self.say_error(describe_error(failure.value))  # for a refusal: its code and message

    def cmd_detail(self) -> None:
        selected = self.selection(changing=False)
        if selected is None:
            return
        link, pid, _ = selected
        view = DetailView(self.model, (link.label, pid), self.reactor.seconds)  # as samples
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
            self.send(link, f"STOP {pid}", lambda reply: self.say(stop_text(pid, reply)))

        self.open_dialog(ConfirmStop(pid, command, confirmed, self.close_dialog), height=8)

    def cmd_restart(self) -> None:
        selected = self.selection()
        if selected is None:
            return
        link, pid, row = selected
        if not row.get("managed"):
            self.say_error(f"{pid} is not a managed program: only those restart")
            return

        def confirmed() -> None:
            self.close_dialog()
            self.say(f"restarting {pid}...")
            self.send(link, f"RESTART {pid}", lambda reply: self._restarted(link, pid, reply))

        command = command_line(row.get("name", "?"), row.get("cmdline"))
        self.open_dialog(ConfirmRestart(pid, command, confirmed, self.close_dialog), height=8)

    def _restarted(self, link: Link, pid: int, reply: dict) -> None:
        self.model.select((link.label, reply["pid"]))
        self.say(f"{pid} restarted as {reply['pid']}")

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
        if not self.writable(link):
            return

        def submitted(line: str, launch: Launch) -> None:
            self.launches.add(launch)
            self.close_dialog()
            self.send(link, line, lambda reply: self._launched(link, reply))

        self.open_dialog(LaunchDialog(self.launches.entries, link.label, submitted), height=11)

    def _launched(self, link: Link, reply: dict) -> None:
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
