"""The framer alone: bytes in, request lines and framing errors out (no transport at all)."""

import pytest

from rpm.server.framing import MAX_LINE, TOO_LONG, Framer, FramingError


def feed_all(*chunks: bytes) -> list:
    framer = Framer()
    out = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def test_lf_and_crlf_end_a_line_and_the_cr_is_dropped():
    assert feed_all(b"PING\nLIST\r\n") == ["PING", "LIST"]


@pytest.mark.parametrize("cut", range(1, 14))
def test_a_stream_split_anywhere_gives_the_same_lines(cut):
    data = b"PING\r\nLIST x\nHELP\n"
    assert feed_all(data[:cut], data[cut:]) == ["PING", "LIST x", "HELP"]


def test_byte_by_byte_is_the_same_as_all_at_once():
    data = b"START sleep 5\r\n\r\nSTOP 7\n"
    assert feed_all(*(data[i : i + 1] for i in range(len(data)))) == feed_all(data)


def test_blank_lines_are_no_requests():
    assert feed_all(b"\n \t\r\n\nPING\n") == ["PING"]


def test_a_line_of_exactly_the_limit_is_a_request_and_one_byte_more_is_not():
    assert feed_all(b"X" * MAX_LINE + b"\r\n") == ["X" * MAX_LINE]
    assert feed_all(b"X" * (MAX_LINE + 1) + b"\nPING\n") == [TOO_LONG, "PING"]


def test_a_too_long_line_is_answered_once_and_discarded_up_to_its_lf():
    framer = Framer()
    assert framer.feed(b"X" * (MAX_LINE + 2)) == [TOO_LONG]
    assert framer.feed(b"Y" * 500_000) == []
    assert framer.feed(b"Z\nPING\n") == ["PING"]


def test_invalid_utf8_is_an_error_that_names_the_byte():
    (error,) = feed_all(b"LIST \xc3\x28\n")
    assert isinstance(error, FramingError) and error.code == "bad-encoding"
    assert "byte 5" in error.message


def test_telnet_commands_are_removed_before_lines_are_split():
    assert feed_all(b"PI\xff\xfb\x01NG\r\n\xff\xf4\xff\xfd\x06") == ["PING"]


def test_the_end_of_input_makes_the_last_line_a_request():
    framer = Framer()
    assert framer.feed(b"PING\nLIST") == ["PING"]
    assert framer.finish() == ["LIST"]
    assert framer.finish() == []


def test_the_end_of_input_inside_a_too_long_line_gives_nothing_more():
    framer = Framer()
    framer.feed(b"X" * (MAX_LINE + 5))
    assert framer.finish() == []


def test_a_line_held_back_at_the_limit_waits_for_its_lf_with_room_for_a_cr():
    framer = Framer(max_line=10)
    assert framer.feed(b"X" * 10 + b"\r") == []  # the limit, and telnet's CR: still a line
    assert framer.feed(b"\n") == ["X" * 10]
    assert framer.feed(b"Y" * 11) == []  # one more than the limit: its CR may follow
    assert framer.feed(b"Y") == [TOO_LONG]


def test_discarding_ends_at_an_lf_that_starts_the_next_chunk():
    framer = Framer(max_line=10)
    assert framer.feed(b"X" * 20) == [TOO_LONG]
    assert framer.feed(b"\nPING\n") == ["PING"]


def test_only_spaces_and_tabs_make_a_line_blank():
    assert feed_all(b" \t \n\x0c\n") == ["\x0c"]  # a form feed is a (bad) request, not blank


def test_the_limit_given_applies_to_a_whole_line_too():
    assert Framer(max_line=10).feed(b"X" * 11 + b"\n") == [TOO_LONG]
    assert Framer(max_line=10).feed(b"X" * 10 + b"\n") == ["X" * 10]
