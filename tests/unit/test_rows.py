"""Process rows: the ROW object, the text columns, filters."""

import time

from rpm.rows import TEXT_HEADER, Row, command_text, human_bytes, matches, row_dict, text_row

ROW = Row(
    4242, 1, "alice", "sleep", ("sleep", "30"), "sleeping", 1.5, 2_500_000, 1_700_000_000.0, True
)
ROW_KEYS = {"pid", "ppid", "user", "name", "cmdline", "status", "cpu", "rss", "started", "managed"}


def test_row_dict_has_every_protocol_key_with_its_type():
    data = row_dict(ROW)
    assert set(data) >= ROW_KEYS
    assert data["cmdline"] == ["sleep", "30"]
    assert isinstance(data["cpu"], float)
    assert isinstance(data["rss"], int)
    assert data["managed"] is True


def test_text_row_starts_with_pid_and_ends_with_the_full_command_line():
    line = text_row(ROW._replace(cmdline=("python3", "-c", "print('hi there')")))
    assert TEXT_HEADER.split()[0] == "PID"
    assert line.split()[0] == "4242"
    assert line.endswith("python3 -c 'print('\"'\"'hi there'\"'\"')'")
    assert " * " in line
    assert time.strftime("%m-%d", time.localtime(ROW.started)) in line


def test_text_rows_align_with_the_header():
    line = text_row(ROW)
    assert line.index("sleep ") == TEXT_HEADER.index("NAME")
    assert len(line.split()[0]) <= 7


def test_control_characters_in_names_and_arguments_are_escaped():
    row = ROW._replace(name="evil\x1b[2J", cmdline=("evil\x1b]0;pwned\x07", "a\nb"))
    line = text_row(row)
    assert "\x1b" not in line and "\n" not in line and "\x07" not in line
    assert "\\x1b" in line


def test_processes_without_a_command_line_show_their_name_in_brackets():
    assert command_text(ROW._replace(cmdline=None, name="kworker/0:1")) == "[kworker/0:1]"
    assert command_text(ROW._replace(cmdline=())) == "[sleep]"


def test_human_bytes():
    assert human_bytes(0) == "0B"
    assert human_bytes(1023) == "1023B"
    assert human_bytes(1536) == "1.5K"
    assert human_bytes(150 * 1024 * 1024) == "150M"
    assert human_bytes(3 * 1024**5) == "3072T"


def test_pattern_matches_name_or_command_line_case_sensitively():
    assert matches(ROW, "sle")
    assert matches(ROW, "ep 30")
    assert not matches(ROW, "Sleep")
    assert not matches(ROW._replace(cmdline=None), "30")
