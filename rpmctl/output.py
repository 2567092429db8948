"""What rpmctl prints for a person: aligned tables fitted to the terminal, human sizes and
times, colour only on a terminal and never with NO_COLOR, and every character taken from a
process escaped as the server escapes it (pure, but for asking the terminal its width)."""

from __future__ import annotations

import os
import shutil
import time

from rpm.infotext import field_text
from rpm.rows import TEXT_HEADER, row_from_dict, text_row
from rpm.wire import escape_text

BOLD, RESET = "\x1b[1m", "\x1b[0m"


def colour_wanted(stream, environ: dict | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return stream.isatty() and "NO_COLOR" not in environ and environ.get("TERM") != "dumb"


def terminal_width(stream) -> int | None:
    """The width to fit tables to: the terminal's, or None (no limit) when not a terminal."""
    return shutil.get_terminal_size().columns if stream.isatty() else None


def table(hosts_rows: list[tuple[str, list[dict]]], width: int | None, colour: bool) -> list[str]:
    """The process table as LIST prints it, with a HOST column when there are several hosts,
    each line cut to width."""
    several = len(hosts_rows) > 1
    label = max((len(host) for host, _ in hosts_rows), default=4) if several else 0
    header = (f"{'HOST':<{label}} " if several else "") + TEXT_HEADER
    lines = [f"{BOLD}{_fit(header, width)}{RESET}" if colour else _fit(header, width)]
    for host, rows in hosts_rows:
        prefix = f"{escape_text(host):<{label}} " if several else ""
        lines.extend(_fit(prefix + text_row(row_from_dict(row)), width) for row in rows)
    return lines


def _fit(line: str, width: int | None) -> str:
    return line if width is None or len(line) <= width else line[: width - 1] + "+"


def info_lines(details: dict) -> list[str]:
    """INFO as `key: value` lines, values formatted and escaped."""
    return [f"{key}: {escape_text(field_text(key, value))}" for key, value in details.items()]


def history_lines(records: list[dict]) -> list[str]:
    """The audit trail: time, peer, whether authenticated, command, result."""
    return [
        f"{_when(record['time'])}  {escape_text(record['peer'])}  "
        f"{'auth' if record['authenticated'] else 'anon'}  {escape_text(record['command'])}"
        f"  -> {escape_text(record['result'])}"
        for record in records
    ]


def log_line(text: str, when: float | None) -> str:
    """A program's output line as it wrote it (escaped), optionally after a timestamp."""
    line = escape_text(text)
    return f"{_when(when)} {line}" if when is not None else line


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
