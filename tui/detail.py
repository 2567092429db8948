"""The detail pane: INFO of one process, with sparklines of its CPU and memory."""

from __future__ import annotations

import urwid

from rpm.infotext import field_text
from rpm.rows import human_bytes
from rpm.wire import escape_text
from tui.model import Key, ProcessModel

BLOCKS = " \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
FIELDS = (
    "pid",
    "ppid",
    "user",
    "name",
    "status",
    "started",
    "rss",
    "cwd",
    "threads",
    "children",
    "managed",
    "program",
    "source",
    "restart",
    "restarts",
    "max_memory",
    "limits",
    "stop_grace",
    "exit_code",
    "exit_signal",
    "ended",
    "restart_at",
    "cgroup_cpu",
    "cgroup_memory",
)


def sparkline(values: list[float], width: int) -> str:
    """The last `width` values as block characters, scaled to their maximum."""
    values = values[-width:]
    top = max(values, default=0) or 1
    return "".join(BLOCKS[round(value / top * (len(BLOCKS) - 1))] for value in values)


class DetailView(urwid.WidgetWrap):
    """Fields from INFO (fetched once) and sparklines from the table's history (live)."""

    def __init__(self, model: ProcessModel, key: Key, clock):
        self._model, self.key, self._clock = model, key, clock
        self._info = urwid.Text("loading INFO...")
        self._graphs = urwid.Text("")
        title = urwid.Text(("title", f" pid {key[1]} on {key[0]}   Esc: back to the table"))
        body = urwid.ListBox(
            urwid.SimpleFocusListWalker([self._graphs, urwid.Divider(), self._info])
        )
        super().__init__(urwid.Frame(body, header=title))
        self.refresh()

    def show_info(self, process: dict) -> None:
        lines = [
            ("dim", "command     "),
            escape_text(field_text("cmdline", process.get("cmdline"))),
            "\n",
        ]
        for name in FIELDS:
            if name in process:
                lines += [
                    ("dim", f"{name:<12}"),
                    escape_text(field_text(name, process[name])),
                    "\n",
                ]
        self._info.set_text(lines)

    def show_error(self, message: str) -> None:
        self._info.set_text(("error", message))

    def refresh(self) -> None:
        """Redraw the sparklines from the model's last minute of samples."""
        samples = self._model.samples(self.key, self._clock())
        if not samples:
            self._graphs.set_text(("dim", "no samples yet (the process may have ended)"))
            return
        cpu = [value for value, _ in samples]
        rss = [value for _, value in samples]
        self._graphs.set_text(
            [
                ("dim", "CPU  "),
                ("graph", sparkline(cpu, 60)),
                f"  {cpu[-1]:.1f}%  (max {max(cpu):.1f}%)\n",
                ("dim", "MEM  "),
                ("graph", sparkline(rss, 60)),
                f"  {human_bytes(rss[-1])}  (max {human_bytes(max(rss))})\n",
                ("dim", "     last minute, one mark per second"),
            ]
        )
