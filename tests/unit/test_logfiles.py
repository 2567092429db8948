"""Log files: last lines, the order journal that interleaves stdout and stderr, following."""

import math

import pytest
from twisted.internet.task import Clock

from rpm.server.managed.logfiles import LogFiles, last_lines
from rpm.server.managed.outputs import OutputTracker


def write(logs, managed_id, stream, text):
    with open(logs.path(managed_id, stream), "ab") as handle:
        handle.write(text.encode())


def test_last_lines_counts_from_the_end_and_keeps_a_partial_last_line(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"".join(f"line {n}\n".encode() for n in range(10000)) + b"partial")
    lines = last_lines(str(path), 3)
    assert [text for _, text in lines] == ["line 9998", "line 9999", "partial"]
    assert lines[-1][0] == path.stat().st_size
    assert last_lines(str(path), 0) == []
    assert last_lines(str(tmp_path / "missing"), 5) == []


def test_last_lines_of_a_short_file_and_crlf(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"a\r\n\nb\n")
    assert [text for _, text in last_lines(str(path), 10)] == ["a", "", "b"]


@pytest.mark.parametrize("new", [False, True], ids=["a run", "a new program's first run"])
def test_tail_interleaves_streams_in_the_order_they_were_seen(tmp_path, new):
    clock = Clock()
    logs = LogFiles(str(tmp_path))
    watcher = OutputTracker(clock, logs)
    watcher.track(1, new=new)
    for stream, text in [
        ("stderr", "e1\n"),
        ("stdout", "o1\n"),
        ("stderr", "e2\n"),
        ("stdout", "o2\no3\n"),
    ]:
        clock.advance(1)
        write(logs, 1, stream, text)
        watcher.observe(1)
    tail = logs.tail(1, 10)
    assert [(line.stream, line.text) for line in tail] == [
        ("stderr", "e1"),
        ("stdout", "o1"),
        ("stderr", "e2"),
        ("stdout", "o2"),
        ("stdout", "o3"),
    ]
    assert [line.text for line in logs.tail(1, 2)] == ["o2", "o3"]


def test_lines_not_yet_journaled_come_last_stdout_first(tmp_path):
    logs = LogFiles(str(tmp_path))
    write(logs, 2, "stderr", "late error\n")
    write(logs, 2, "stdout", "late output\n")
    tail = logs.tail(2, 10)
    assert [line.text for line in tail] == ["late output", "late error"]
    assert all(math.isinf(line.seen) for line in tail)


def test_journal_survives_restart_and_torn_records(tmp_path):
    clock = Clock()
    logs = LogFiles(str(tmp_path))
    watcher = OutputTracker(clock, logs)
    watcher.track(3)
    write(logs, 3, "stdout", "x\n")
    watcher.observe(3)
    with open(logs.journal_path(3), "a") as journal:
        journal.write("12.5 e 9x\n12.5 o")  # torn records: the server died mid-write
    assert LogFiles(str(tmp_path)).journaled_sizes(3) == {"stdout": 2, "stderr": 0}


def test_followers_get_new_complete_lines_only(tmp_path):
    clock = Clock()
    logs = LogFiles(str(tmp_path))
    watcher = OutputTracker(clock, logs)
    write(logs, 4, "stdout", "old\n")
    events = []

    class Connection:
        write_blocked = False

        def send_event(self, event):
            events.append((event.fields["stream"], event.fields["line"]))

    connection = Connection()
    watcher.follow(connection, 99, 4, logs.sizes(4))
    write(logs, 4, "stdout", "new 1\nnew")
    write(logs, 4, "stderr", "oops\n")
    watcher.observe(4)
    assert events == [("stdout", "new 1"), ("stderr", "oops")]
    connection.write_blocked = True
    write(logs, 4, "stdout", " 2\n")
    watcher.observe(4)
    assert len(events) == 2, "a blocked client is not sent anything"
    connection.write_blocked = False
    watcher.observe(4)
    assert events[-1] == ("stdout", "new 2")
    assert watcher.unfollow(connection, 99)
    assert not watcher.unfollow(connection, 99)


def test_forgetting_programs_removes_all_their_files_and_no_others(tmp_path):
    logs = LogFiles(str(tmp_path))
    kinds = (".out", ".out.1", ".out.cut", ".err", ".idx", ".lock")
    for managed_id in (1, 2, 12, 21):
        for kind in kinds:
            (tmp_path / f"{managed_id}{kind}").write_text("x")
    logs.remove([1, 2])
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{managed_id}{kind}" for managed_id in (12, 21) for kind in kinds
    )
    logs.remove([])
    assert len(list(tmp_path.iterdir())) == 2 * len(kinds)
