"""What the app needs from its connection to one host: a small typed Protocol, so the real
HostLink (connection.py) and the tests' and benchmarks' fake (tests/fakes.py) agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import Deferred


class Link(Protocol):
    """One host: how its connection stands, requests to it, and who hears from it."""

    label: str  # the host as the operator wrote it (or its fleet file's name): HOST column
    state: str  # connecting, connected, disconnected, auth failed, ...
    problem: str  # why it is not connected, if it is not
    retry_at: float | None  # when the next connection attempt is due, if one is
    last_update: float | None  # when its last table or delta arrived
    vitals: dict | None  # the machine's vitals, from its latest host event (the header)
    on_output: Callable[[dict], None] | None  # FOLLOW's output events
    on_connected: Callable[[], None] | None  # after each (re)connection
    on_notice: Callable[[str], None] | None  # started/exited events, as text

    @property
    def read_only(self) -> bool:
        """Connected without the token the server wants: it can look, not change."""

    def set_listener(self, on_change: Callable[[], None]) -> None:
        """Who to tell when anything shown about this host changed."""

    def command(self, line: str) -> Deferred:
        """Send one request; fires with the reply object, or fails with its error."""

    def stop(self) -> None:
        """Disconnect for good."""
