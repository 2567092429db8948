"""One fake of the TUI's host link (tui.link.Link), for the tests and the benchmarks."""

from __future__ import annotations

import time

from twisted.internet import defer

NOW = time.time()


class FakeLink:
    """A connected host that records requests and answers from a script (an Exception
    answer makes the request fail with it); by default every request answers {"ok": true}."""

    def __init__(self, label: str = "127.0.0.1:5002", answers: dict | None = None):
        self.label = label
        self.state, self.problem, self.retry_at, self.last_update = "connected", "", None, NOW
        self.sent: list[str] = []
        self.answers = answers or {}
        self.on_output = self.on_connected = self.on_notice = None
        self.on_change = None
        self.read_only = False
        self.vitals: dict | None = None  # as a host event left them

    def set_listener(self, on_change) -> None:
        self.on_change = on_change

    def command(self, line: str) -> defer.Deferred:
        self.sent.append(line)
        answer = self.answers.get(line.split(maxsplit=1)[0], {"ok": True})
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)

    def stop(self) -> None:
        self.state = "stopped"
