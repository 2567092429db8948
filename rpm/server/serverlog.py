"""The server's own log in a file that rotates at a size and keeps a bounded number of old
files (`--server-log`), under `twistd` and `twist` alike: twistd's own `-l` file keeps every
rotated file forever, and `twist --log-file` never rotates."""

from __future__ import annotations

import os

from twisted.logger import ILogObserver, globalLogPublisher, textFileLogObserver
from twisted.python.logfile import LogFile
from zope.interface import implementer


@implementer(ILogObserver)
class ServerLog:
    """Writes log events as text to PATH, PATH.1, ... PATH.<keep> (the oldest dropped)."""

    def __init__(self, path: str, size: int, keep: int):
        directory, name = os.path.split(os.path.abspath(path))
        self.file = LogFile(
            name, directory, rotateLength=size, maxRotatedFiles=keep, defaultMode=0o600
        )
        self._write = textFileLogObserver(self.file)
        self.attached = False

    def __call__(self, event: dict) -> None:
        self.attached = True
        self._write(event)

    def offer(self, application) -> None:
        """Be twistd's log observer (in place of its `-l` file): twistd takes an application's
        ILogObserver component when it begins logging, which is after the service is made."""
        application.setComponent(ILogObserver, self)

    def attach(self) -> None:
        """Once the service starts: if twistd did not take us (`twist` does not look for the
        component), log alongside whatever else is logging."""
        if not self.attached:
            globalLogPublisher.addObserver(self)
