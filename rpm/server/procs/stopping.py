"""STOP's escalation: SIGTERM now, SIGKILL after the grace period, an answer once it is gone.

Time comes from the reactor only, so tests drive it with a Clock. The target is abstract:
a send(signum) function and a gone() predicate; whoever knows of an exit early (Twisted's
processEnded, a pidfd) calls poke() instead of waiting for the next poll.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from twisted.internet.defer import Deferred

from rpm.errors import NoSuchProcess, NotPermitted, RPMError

POLL = 0.05
KILL_TIMEOUT = 5.0


class Escalation:
    """One stop in progress; every caller gets the outcome: the signal that ended it."""

    def __init__(
        self,
        reactor,
        pid: int,
        send: Callable[[int], None],
        gone: Callable[[bool], bool],
        grace: float,
        kill_timeout: float = KILL_TIMEOUT,
        first: int = signal.SIGTERM,
    ):
        self._reactor = reactor
        self.pid = pid
        self._send = send
        self._gone = gone
        self._grace = grace
        self._first = first  # SIGTERM, or a program's own stop signal (programs file)
        self._kill_timeout = kill_timeout
        self._killed = False
        self._deadline = 0.0
        self._timer = None
        self._waiting: list[Deferred] = []
        self._outcome = None

    def start(self) -> None:
        """Send SIGTERM, or the program's stop signal (and SIGCONT, so a paused process can
        act on it), and start watching."""
        self._deadline = self._reactor.seconds() + self._grace
        try:
            self._send(self._first)
            self._send(signal.SIGCONT)
        except NoSuchProcess:
            pass  # it went away by itself: check() reports it gone
        except RPMError as err:
            self._finish(err)
            return
        self.check()

    def result(self) -> Deferred:
        """A Deferred firing with the signal number that ended the process."""
        waiter = Deferred()
        if self._outcome is None:
            self._waiting.append(waiter)
        else:
            self._deliver(waiter, self._outcome)
        return waiter

    def poke(self) -> None:
        """Something suggests the process ended: check now."""
        if self._outcome is None:
            self.check()

    def check(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._gone(self._killed):
            self._finish(signal.SIGKILL if self._killed else self._first)
            return
        now = self._reactor.seconds()
        if now >= self._deadline:
            if self._killed:
                self._finish(
                    NotPermitted(
                        f"pid {self.pid} survived SIGKILL for "
                        f"{self._kill_timeout:g} s (uninterruptible sleep?)"
                    )
                )
                return
            self._kill()
            if self._outcome is not None:
                return
            now = self._reactor.seconds()
        self._timer = self._reactor.callLater(min(POLL, max(self._deadline - now, 0)), self.check)

    def _kill(self) -> None:
        self._killed = True
        self._deadline = self._reactor.seconds() + self._kill_timeout
        try:
            self._send(signal.SIGKILL)
        except NoSuchProcess:
            pass
        except RPMError as err:
            self._finish(err)

    def _finish(self, outcome) -> None:
        if self._outcome is not None:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            self._deliver(waiter, outcome)

    @staticmethod
    def _deliver(waiter: Deferred, outcome) -> None:
        if isinstance(outcome, Exception):
            waiter.errback(outcome)
        else:
            waiter.callback(outcome)

    @property
    def finished(self) -> bool:
        return self._outcome is not None
