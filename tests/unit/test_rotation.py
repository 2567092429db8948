"""Log rotation: capped files, nothing lost under a writer that keeps appending, followers
reading across a cut."""

import os
import threading

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from rpm.server.managed import rotation
from rpm.server.managed.logfiles import LogFiles
from rpm.server.managed.outputs import OutputTracker


def numbered(start, stop):
    return b"".join(f"line {n:06d}\n".encode() for n in range(start, stop))


def live_bytes(path):
    """The data still in the live file (after its cut)."""
    with open(path, "rb") as handle:
        handle.seek(rotation.live_start(path))
        return handle.read()


def test_nothing_happens_under_the_cap(tmp_path):
    path = tmp_path / "1.out"
    path.write_bytes(numbered(0, 100))
    assert rotation.rotate(str(path), 1 << 20) is None
    assert not (tmp_path / "1.out.1").exists()


def test_rotation_keeps_the_newest_half_and_moves_the_rest_at_a_line_boundary(tmp_path):
    path = tmp_path / "1.out"
    data = numbered(0, 100_000)  # 1.2 MB
    path.write_bytes(data)
    cut = rotation.rotate(str(path), 256 * 1024)
    assert cut is not None and not cut.truncated
    assert path.stat().st_size == len(data), "offsets do not move"
    assert cut.end - cut.first <= 256 * 1024, "the older generation is capped too"
    assert data[cut.first - 1 : cut.first] == b"\n"
    assert (tmp_path / "1.out.1").read_bytes() == data[cut.first : cut.end]
    assert live_bytes(str(path)) == data[cut.end :]
    assert data[cut.end - 1 : cut.end] == b"\n"
    assert len(data) - cut.end <= 128 * 1024 + len(b"line 000000\n")
    assert path.stat().st_blocks * 512 < 200 * 1024, "the rotated part no longer takes disk space"


def test_successive_rotations_keep_one_older_generation(tmp_path):
    path = str(tmp_path / "1.out")
    with open(path, "ab") as out:
        out.write(numbered(0, 50_000))
    first = rotation.rotate(path, 128 * 1024)
    with open(path, "ab") as out:
        out.write(numbered(50_000, 100_000))
    second = rotation.rotate(path, 128 * 1024)
    assert second.first >= first.end
    assert rotation.read_from(path, 0, 20)[0] == second.first, "what is older is gone"
    offset, data = rotation.read_from(path, second.first, 12)
    assert (offset, data) == (second.first, numbered(0, 100_000)[second.first : second.first + 12])


def test_a_writer_appending_during_rotations_loses_nothing(tmp_path):
    path = str(tmp_path / "1.out")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    stop = threading.Event()
    written = []

    def writer():
        number = 0
        while not stop.is_set() or number < 20_000:
            chunk = numbered(number, number + 50)
            os.write(fd, chunk)
            written.append(chunk)
            number += 50

    thread = threading.Thread(target=writer)
    thread.start()
    cuts = []
    try:
        while len(cuts) < 1:
            cut = rotation.rotate(path, 200 * 1024)
            if cut:
                cuts.append(cut)
    finally:
        stop.set()
        thread.join()
        os.close(fd)
    everything = b"".join(written)
    cut = cuts[-1]
    rotated = (tmp_path / "1.out.1").read_bytes()
    assert rotated == everything[cut.first : cut.end]
    assert live_bytes(path) == everything[cut.end :], "nothing written meanwhile was lost"


def test_without_hole_punching_rotation_copies_and_truncates(tmp_path, monkeypatch):
    monkeypatch.setattr(rotation, "punch_hole", lambda fd, offset, length: False)
    path = tmp_path / "1.out"
    data = numbered(0, 30_000)
    path.write_bytes(data)
    cut = rotation.rotate(str(path), 64 * 1024)
    assert cut.truncated and cut.end == len(data)
    assert path.stat().st_size == 0
    assert (tmp_path / "1.out.1").read_bytes() == data[cut.first :]
    assert cut.end - cut.first <= 64 * 1024 + 32 * 1024 + len(b"line 000000\n")
    assert rotation.live_start(str(path)) == 0


def synchronous(function, *args):
    return defer.maybeDeferred(function, *args)


class Connection:
    write_blocked = False

    def __init__(self):
        self.lines = []

    def send_event(self, event):
        self.lines.append(event.fields["line"])


@pytest.mark.parametrize("punch", [True, False])
def test_a_follower_gets_every_line_across_rotations(tmp_path, monkeypatch, punch):
    if not punch:
        monkeypatch.setattr(rotation, "punch_hole", lambda fd, offset, length: False)
    logs = LogFiles(str(tmp_path))
    watcher = OutputTracker(Clock(), logs, max_bytes=64 * 1024, run=synchronous)
    watcher.track(1)
    connection = Connection()
    watcher.follow(connection, 42, 1, logs.sizes(1))
    with open(logs.path(1, "stdout"), "ab", buffering=0) as out:
        for start in range(0, 40_000, 2_000):
            out.write(numbered(start, start + 2_000))
            watcher.observe(1)
            watcher.observe(1)
    watcher.observe(1)
    assert connection.lines == [f"line {n:06d}" for n in range(40_000)]
    size = os.stat(logs.path(1, "stdout")).st_size
    assert size - logs.live_start(1, "stdout") <= 64 * 1024 + 24_000


def test_journal_records_of_rotated_data_are_dropped(tmp_path):
    logs = LogFiles(str(tmp_path))
    watcher = OutputTracker(Clock(), logs, max_bytes=64 * 1024, run=synchronous)
    watcher.track(1)
    with open(logs.path(1, "stdout"), "ab") as out:
        for start in range(0, 30_000, 1_000):
            out.write(numbered(start, start + 1_000))
            out.flush()
            watcher.observe(1)
    with open(logs.journal_path(1)) as journal:
        ends = [int(line.split()[2]) for line in journal]
    assert min(ends) > logs.live_start(1, "stdout")
    assert [line.text for line in logs.tail(1, 2)] == ["line 029998", "line 029999"]


class RecordingConnection(Connection):
    """Keeps every event, output and gap alike."""

    def send_event(self, event):
        self.lines.append((event.name, event.fields))


def test_a_follower_too_slow_for_the_cap_is_told_what_it_missed(tmp_path):
    logs = LogFiles(str(tmp_path))
    watcher = OutputTracker(Clock(), logs, max_bytes=64 * 1024, run=synchronous)
    watcher.track(1)
    connection = RecordingConnection()
    watcher.follow(connection, 42, 1, logs.sizes(1))
    connection.write_blocked = True  # the client stops reading while the program writes on
    with open(logs.path(1, "stdout"), "ab", buffering=0) as out:
        for start in range(0, 40_000, 2_000):
            out.write(numbered(start, start + 2_000))
            watcher.observe(1)
    connection.write_blocked = False
    watcher.observe(1)
    gaps = [fields for name, fields in connection.lines if name == "gap"]
    numbers = [int(f["line"].split()[1]) for name, f in connection.lines if name == "output"]
    assert len(gaps) == 1 and gaps[0]["bytes"] > 0 and gaps[0]["stream"] == "stdout"
    assert numbers == list(range(numbers[0], 40_000)), "after the gap, every line in order"
    assert numbers[0] * len(b"line 000000\n") == gaps[0]["bytes"], "the gap says how much"
