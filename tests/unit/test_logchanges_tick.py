"""The output tracker's tick: told which programs' files changed (logchanges.py), it reads
the files of those and of the followed ones, and every program's now and then."""

from twisted.internet.task import Clock

from rpm.server.managed.logfiles import LogFiles
from rpm.server.managed.outputs import SWEEP_EVERY, OutputTracker


class ToldChanges:
    """What LogChanges says: the ids changed since asked, and whether it still works."""

    def __init__(self):
        self.changed: set[int] = set()
        self.working = True

    def take(self) -> set[int]:
        changed, self.changed = self.changed, set()
        return changed

    def close(self) -> None:
        self.working = False


class Follower:
    write_blocked = False

    def send_event(self, event) -> None:
        pass


def tracker(tmp_path, changes):
    """A tracker of programs 1, 2 and 3 (3 followed), and the ids whose files it reads."""
    clock = Clock()
    logs = LogFiles(str(tmp_path))
    watcher = OutputTracker(clock, logs, changes=changes)
    for managed_id in (1, 2, 3):
        watcher.track(managed_id, new=True)
    watcher.follow(Follower(), 300, 3, logs.sizes(3))
    read = []
    sizes = logs.sizes
    logs.sizes = lambda managed_id: read.append(managed_id) or sizes(managed_id)
    watcher.start()
    return clock, watcher, read


def test_a_tick_reads_the_files_that_changed_and_the_followed_ones(tmp_path):
    changes = ToldChanges()
    clock, watcher, read = tracker(tmp_path, changes)
    clock.advance(0.25)
    assert sorted(read) == [1, 2, 3], "the first tick sweeps them all"
    read.clear()
    changes.changed = {2}
    clock.advance(0.25)
    assert sorted(read) == [2, 3]
    read.clear()
    clock.advance(0.25)
    assert read == [3], "nothing changed: only the follower reads on"
    read.clear()
    clock.advance(SWEEP_EVERY)
    assert set(read) == {1, 2, 3}, "and every few seconds, a sweep of all"
    watcher.stop()
    assert not changes.working


def test_without_word_of_changes_every_tick_reads_every_program(tmp_path):
    changes = ToldChanges()
    changes.working = False  # inotify refused, or its directory removed
    clock, watcher, read = tracker(tmp_path, changes)
    clock.advance(0.25)
    clock.advance(0.25)
    assert sorted(read) == [1, 1, 2, 2, 3, 3]
    watcher.stop()
