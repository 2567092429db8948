"""INFO's text form shows values the way LIST does."""

import time

from rpm.infotext import text_lines
from rpm.server.managed import runinfo
from rpm.server.managed.records import ManagedRecord


def test_text_info_shows_times_as_dates_and_memory_in_human_units():
    started = time.mktime((2026, 11, 30, 13, 45, 7, 0, 0, -1))
    details = {"pid": 7, "rss": 3 * 1024 * 1024, "started": started, "ended": None, "cpu": 1.5}
    assert text_lines(details) == [
        "pid: 7",
        "rss: 3.0M",
        "started: 2026-11-30 13:45:07",
        "ended: -",
        "cpu: 1.5",
    ]


def test_a_program_waiting_to_restart_says_when():
    record = ManagedRecord(id=1, argv=("true",), cwd=None, env={}, restart="always", created=0.0)
    record.pid, record.started = 42, 100.0
    details = runinfo.from_record(record, restart_at=200.0)
    assert details["status"] == "restarting" and details["restart_at"] == 200.0
    assert runinfo.from_record(record)["status"] == "dead"
