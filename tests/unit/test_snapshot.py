"""Snapshots: LIST replies and WATCH events rendered once and shared; deltas."""

import json

from rpm.rows import Row
from rpm.server.procs.snapshot import Renderers, Snapshot, TableReply
from rpm.wire import JSON, TEXT


def row(pid, cpu=0.0, managed=False, name="sleep", ppid=1, started=100.0):
    return Row(pid, ppid, "root", name, (name, str(pid)), "sleeping", cpu, 1024, started, managed)


def snapshot(rows, seq=1, renderers=None):
    return Snapshot(seq, 0.0, rows, renderers or Renderers())


def test_list_text_has_count_header_rows_and_terminator():
    lines = snapshot([row(10), row(20, managed=True)]).list_bytes(TEXT).split(b"\r\n")
    assert lines[0] == b"OK 2 processes"
    assert lines[1].split()[0] == b"PID"
    assert lines[2].split()[0] == b"10"
    assert lines[4] == b"." and lines[5] == b""


def test_list_json_has_every_row():
    data = json.loads(snapshot([row(10), row(20)]).list_bytes(JSON))
    assert data["ok"] is True
    assert [process["pid"] for process in data["processes"]] == [10, 20]


def test_unfiltered_list_bytes_are_shared_between_callers():
    shot = snapshot([row(10)])
    assert shot.list_bytes(JSON) is shot.list_bytes(JSON)
    assert TableReply(shot).render(TEXT) is shot.list_bytes(TEXT)


def test_filters_managed_and_pattern():
    shot = snapshot([row(10, name="sleep"), row(20, managed=True, name="yes"), row(30, name="yes")])
    assert b"OK 1 processes" in shot.list_bytes(TEXT, managed_only=True)
    data = json.loads(shot.list_bytes(JSON, pattern="yes"))
    assert [p["pid"] for p in data["processes"]] == [20, 30]
    data = json.loads(shot.list_bytes(JSON, managed_only=True, pattern="sleep"))
    assert data["processes"] == []


def test_unchanged_rows_reuse_their_rendering_across_snapshots():
    renderers = Renderers()
    first = snapshot([row(10), row(20)], 1, renderers)
    second = snapshot([row(10), row(20, cpu=5.0)], 2, renderers)
    a, b = first.rendered_rows(JSON), second.rendered_rows(JSON)
    assert a[0] is b[0]
    assert a[1] is not b[1]


def test_table_event_in_both_modes():
    shot = snapshot([row(10)])
    assert shot.table_event(TEXT).startswith(b"* table 1 processes\r\n")
    assert json.loads(shot.table_event(JSON)) == {
        "event": "table",
        "sampled": 0.0,
        "processes": json.loads(shot.list_bytes(JSON))["processes"],
    }


def test_delta_lists_added_changed_and_removed():
    renderers = Renderers()
    old = snapshot([row(10), row(20), row(30)], 1, renderers)
    new = snapshot([row(10), row(20, cpu=9.0), row(40), row(30, started=200.0)], 2, renderers)
    delta = json.loads(new.delta_event(old, JSON))
    assert delta["event"] == "delta"
    assert sorted(p["pid"] for p in delta["added"]) == [30, 40]  # 30 is a reused pid
    assert [p["pid"] for p in delta["changed"]] == [20]
    assert delta["removed"] == [30]
    text = new.delta_event(old, TEXT).split(b"\r\n")
    assert text[0] == b"* delta 2 added 1 changed 1 removed"
    assert text[-3] == b"- 30" and text[-2] == b"."


def test_descendants_follow_the_parent_tree():
    shot = snapshot([row(10), row(11, ppid=10), row(12, ppid=11), row(13, ppid=1)])
    assert [r.pid for r in shot.descendants_of(10)] == [11, 12]
    assert shot.children_of(1) == [10, 13]


def test_a_row_is_within_the_trees_of_the_pids_it_is_below_or_is():
    shot = snapshot(
        [row(10), row(11, ppid=10), row(12, ppid=11), row(13, ppid=1), row(14, ppid=14)]
    )
    by_pid = shot.by_pid
    assert shot.within(by_pid[12], {10}) and shot.within(by_pid[10], {10})
    assert not shot.within(by_pid[13], {10, 11}) and not shot.within(by_pid[10], {11})
    assert not shot.within(by_pid[14], {10}), "a loop in the parent links ends the walk"
