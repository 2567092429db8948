"""Process rows: the ROW of the protocol, its text columns and JSON form, and filters (pure)."""

from __future__ import annotations

import shlex
import time
from typing import NamedTuple

from rpm.wire import escape_text, json_bytes


class Row(NamedTuple):
    """One process as the table shows it; a tuple so unchanged rows compare equal."""

    pid: int
    ppid: int
    user: str | None
    name: str
    cmdline: tuple[str, ...] | None
    status: str
    cpu: float
    rss: int
    started: float
    managed: bool
    restart_at: float | None = None  # a managed program waiting to restart: when it will
    program: str | None = None  # a managed program's name (START --name), if it has one

    @property
    def key(self) -> tuple[int, float]:
        """What identifies a process across samples: a pid alone can be reused."""
        return (self.pid, self.started)


RESTARTING = "restarting"  # the status of a managed program between runs

TEXT_HEADER = (
    f"{'PID':>7} {'PPID':>7} {'USER':<10} {'STATUS':<10} {'%CPU':>6} {'RSS':>7} "
    f"{'STARTED':<11} {'M':<1} {'NAME':<15} COMMAND"
)


UNITS = ("B", "K", "M", "G", "T")


def human_bytes(count: int) -> str:
    """Bytes in a short human unit: 512B, 3.4K, 120M, 1.5G."""
    value, unit = float(count), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    if unit == 0 or value >= 100:
        return f"{value:.0f}{UNITS[unit]}"
    return f"{value:.1f}{UNITS[unit]}"


def clip(text: str, width: int) -> str:
    """Escape text and fit it to width, marking a cut with '+' as ps does."""
    text = escape_text(text)
    return text if len(text) <= width else text[: width - 1] + "+"


def command_line(name: str, cmdline) -> str:
    """The command line as one string a shell would split back; [name] when there is none."""
    return shlex.join(cmdline) if cmdline else f"[{name}]"


def command_text(row: Row) -> str:
    return command_line(row.name, row.cmdline)


def started_text(started: float) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(started))


def text_row(row: Row) -> str:
    """Aligned columns under TEXT_HEADER, ending with the full command line (all escaped); a
    named program shows its name under NAME."""
    return (
        f"{row.pid:>7} {row.ppid:>7} {clip(row.user or '?', 10):<10} {clip(row.status, 10):<10} "
        f"{row.cpu:>6.1f} {human_bytes(row.rss):>7} {started_text(row.started):<11} "
        f"{'*' if row.managed else '-'} {clip(row.program or row.name, 15):<15} "
        f"{escape_text(command_text(row))}"
    )


def row_dict(row: Row) -> dict:
    """The protocol's ROW object (plus `restart_at` for a program waiting to restart)."""
    fields = {
        "pid": row.pid,
        "ppid": row.ppid,
        "user": row.user,
        "name": row.name,
        "cmdline": list(row.cmdline) if row.cmdline is not None else None,
        "status": row.status,
        "cpu": row.cpu,
        "rss": row.rss,
        "started": row.started,
        "managed": row.managed,
        "program": row.program,
    }
    if row.restart_at is not None:
        fields["restart_at"] = row.restart_at
    return fields


def row_from_dict(fields: dict) -> Row:
    """A ROW object as a client receives it, back into a Row."""
    cmdline = fields.get("cmdline")
    return Row(
        fields["pid"],
        fields["ppid"],
        fields.get("user"),
        fields["name"],
        tuple(cmdline) if cmdline is not None else None,
        fields["status"],
        fields["cpu"],
        fields["rss"],
        fields["started"],
        fields["managed"],
        fields.get("restart_at"),
        fields.get("program"),
    )


def row_json(row: Row) -> bytes:
    return json_bytes(row_dict(row))


def matches(row: Row, pattern: str) -> bool:
    """LIST's pattern: a substring of the name, of the program's name or of the command line."""
    if pattern in row.name or (row.program is not None and pattern in row.program):
        return True
    return row.cmdline is not None and pattern in " ".join(row.cmdline)
