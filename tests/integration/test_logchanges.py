"""LogChanges with the real inotify: which programs' log files changed, told by the kernel."""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from rpm.server.managed.logchanges import LogChanges

TIMEOUT = 10.0


async def told(changes: LogChanges, wanted) -> set[int]:
    """Everything told until wanted(changes so far) holds (within TIMEOUT)."""
    seen: set[int] = set()
    deadline = reactor.seconds() + TIMEOUT
    while not wanted(seen):
        assert reactor.seconds() < deadline, f"told only {seen}"
        await deferLater(reactor, 0.01, lambda: None)
        seen |= changes.take()
    return seen


@pytest_twisted.ensureDeferred
async def test_writes_new_files_and_renames_are_told_by_program_and_the_journal_is_not(
    tmp_path,
):
    changes = LogChanges(reactor, str(tmp_path))
    try:
        assert changes.working
        (tmp_path / "9.out").write_bytes(b"before\n")
        await told(changes, lambda seen: 9 in seen)
        (tmp_path / "8.idx").write_text("1.0 o 7\n")  # the server's own journal
        with open(tmp_path / "7.err", "ab") as stream:
            stream.write(b"a line\n")
        os.rename(tmp_path / "9.out", tmp_path / "9.out.1")  # a rotation
        assert await told(changes, lambda seen: {7, 9} <= seen) == {7, 9}
    finally:
        changes.close()
    assert not changes.working


@pytest_twisted.ensureDeferred
async def test_it_stops_working_when_its_directory_is_removed(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir()
    changes = LogChanges(reactor, str(directory))
    try:
        directory.rmdir()
        deadline = reactor.seconds() + TIMEOUT
        while changes.working:
            assert reactor.seconds() < deadline, "still said to work"
            await deferLater(reactor, 0.01, lambda: None)
    finally:
        changes.close()


def test_where_it_cannot_watch_it_says_so(tmp_path):
    changes = LogChanges(reactor, str(tmp_path / "missing"))
    assert not changes.working
    assert changes.take() == set()
    changes.close()
