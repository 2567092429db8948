"""A check the server makes every second in the background (the registry under foot,
programs over their memory), never two at once: a check still running, its Deferred not
fired, holds the next ones off."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

CHECK_EVERY = 1.0


class PeriodicCheck:
    """Subclasses give `check()`, which returns a Deferred while its work goes on, or None."""

    def __init__(self, reactor):
        self._checking = False
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(CHECK_EVERY, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        if self._checking:
            return
        checking = self.check()
        if isinstance(checking, Deferred):
            self._checking = True
            checking.addBoth(self._done)

    def _done(self, _) -> None:
        self._checking = False

    def check(self) -> Deferred | None:
        raise NotImplementedError
