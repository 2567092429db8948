"""The status bar: each host's connection state, its rows, when it last reported, the filter."""

from __future__ import annotations

import time

from rpm.wire import escape_text
from tui.model import ProcessModel


def status_parts(links, model: ProcessModel, now: float) -> list:
    """urwid text markup for the status bar."""
    parts: list = []
    for link in links:
        parts += link_status(link, model, now)
    if model.filter:
        parts.append(f"  filter: {escape_text(model.filter)} ({len(model.lines)})")
    return parts or [""]


def link_status(link, model: ProcessModel, now: float) -> list:
    """One host: name, connection state, rows and last update (or why and when it retries)."""
    parts: list = [" ", escape_text(link.label), " "]
    if link.state == "connected":
        updated = time.strftime("%H:%M:%S", time.localtime(link.last_update or 0))
        access = [("bad", " read-only")] if link.read_only else []
        return [
            *parts,
            ("good", "connected"),
            *access,
            f" {model.count(link.label)} processes, updated {updated}",
        ]
    retry = ""
    if link.retry_at is not None:
        retry = f", retry in {max(0.0, link.retry_at - now):.0f} s"
    parts.append(("bad", f"{link.state}{retry}"))
    if link.problem:
        parts.append(f" ({escape_text(link.problem)})")
    if link.label in model.stale_hosts:
        parts.append(("bad", " STALE"))
    return parts
