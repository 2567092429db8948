"""The status bar: for one host its connection state, rows and last report; for a fleet a
summary (18/20 connected · 2 stale · 41,230 processes); and the filter."""

from __future__ import annotations

import time

from rpm.wire import escape_text
from tui.model import ProcessModel


def status_parts(links, model: ProcessModel, now: float) -> list:
    """urwid text markup for the status bar."""
    links = list(links)
    parts = fleet_status(links, model) if len(links) > 1 else link_status(links[0], model, now)
    if model.filter:
        parts.append(f"  filter: {escape_text(model.filter)} ({len(model.lines)})")
    return parts or [""]


def fleet_status(links, model: ProcessModel) -> list:
    """Several hosts in one line: how many are connected, stale, refused our token."""
    up = sum(link.state in ("connected", "auth failed") for link in links)
    parts: list = [" ", ("good" if up == len(links) else "bad", f"{up}/{len(links)} connected")]
    for count, what in (
        (sum(link.state == "auth failed" for link in links), "auth failed"),
        (len(model.stale_hosts), "stale"),
    ):
        if count:
            parts += [" \u00b7 ", ("bad", f"{count} {what}")]
    return [*parts, f" \u00b7 {len(model.rows):,} processes"]


def link_status(link, model: ProcessModel, now: float) -> list:
    """One host: name, connection state, rows and last update (or why and when it retries)."""
    parts: list = [" ", escape_text(link.label), " "]
    if link.state in ("connected", "auth failed"):
        updated = time.strftime("%H:%M:%S", time.localtime(link.last_update or 0))
        refused = "auth failed: read-only" if link.state == "auth failed" else "read-only"
        access = [("bad", f" {refused}")] if link.read_only else []
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
