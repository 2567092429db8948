"""A descriptor the reactor watches for reading, owned by one object: released (no longer
watched, and closed) once, however often that is asked, so a late call never closes a
descriptor number some other file has taken since."""

from __future__ import annotations

import contextlib
import os


class OwnedReader:
    """Subclasses give doRead and logPrefix; connectionLost releases the descriptor."""

    def __init__(self, reactor, fd: int):
        self._reactor, self._fd = reactor, fd
        reactor.addReader(self)

    def fileno(self) -> int:
        return self._fd

    def connectionLost(self, reason) -> None:
        self.release()

    def watch_instead(self, fd: int) -> None:
        """Watch fd from now on; the descriptor held until now is released."""
        self.release()
        self._fd = fd
        self._reactor.addReader(self)

    def release(self) -> None:
        if self._fd >= 0:
            self._reactor.removeReader(self)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
