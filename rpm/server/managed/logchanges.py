"""Which programs' log files changed, told by the kernel (inotify on the log directory), so
that the output tracker stats the files of those programs only, not of every program four
times a second: with a thousand idle programs, that polling cost 7.6% of a core on the
reactor thread, and stalled it 19 ms a tick.

inotify can lose notices (its queue overflowing, which Twisted does not pass on) and stops
with the directory (removed under the server): the tracker still sweeps every program now
and then, and every tick once this stops working."""

from __future__ import annotations

from twisted.internet import inotify
from twisted.logger import Logger
from twisted.python.filepath import FilePath

log = Logger()

# a write (or truncation, or hole punched), a file created, a rotation's rename; and the
# directory's removal, which ends the watch (Twisted then disconnects: see working)
CHANGES = (
    inotify.IN_MODIFY
    | inotify.IN_CREATE
    | inotify.IN_MOVED_TO
    | inotify.IN_MOVED_FROM
    | inotify.IN_DELETE_SELF
)
OWN_JOURNAL = b".idx"  # the server's own writes: no change of a program's output


class LogChanges:
    """The registry ids whose log files changed since the last take()."""

    def __init__(self, reactor, directory: str):
        self._changed: set[int] = set()
        self._notifier: inotify.INotify | None = None
        try:
            notifier = inotify.INotify(reactor)
        except (OSError, inotify.INotifyError) as err:  # no inotify, no descriptor left
            log.info("log files are polled: {error}", error=err)
            return
        try:
            notifier.watch(FilePath(directory), mask=CHANGES, callbacks=[self._told])
        except (OSError, inotify.INotifyError) as err:  # the user's inotify watches used up
            log.info("log files are polled: {error}", error=err)
            notifier.loseConnection()
            return
        notifier.startReading()
        self._notifier = notifier

    @property
    def working(self) -> bool:
        return self._notifier is not None and bool(self._notifier.connected)

    def _told(self, _watch, path: FilePath, _mask: int) -> None:
        name = path.basename()
        managed_id = name.split(b".", 1)[0]
        if managed_id.isdigit() and not name.endswith(OWN_JOURNAL):
            self._changed.add(int(managed_id))

    def take(self) -> set[int]:
        changed, self._changed = self._changed, set()
        return changed

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None
