"""Telnet IAC sequences are removed, even when split across packets."""

import pytest

from rpm.server.telnet import TelnetFilter

IAC, WILL, DO, DONT, SB, SE, IP, AYT = 255, 251, 253, 254, 250, 240, 244, 246


def feed_all(chunks):
    telnet = TelnetFilter()
    return b"".join(telnet.feed(chunk) for chunk in chunks)


def test_plain_data_passes_untouched():
    assert feed_all([b"PING\r\n"]) == b"PING\r\n"


def test_negotiation_and_commands_are_removed():
    data = bytes([IAC, DO, 1, IAC, WILL, 3]) + b"LI" + bytes([IAC, IP, IAC, AYT]) + b"ST\r\n"
    assert feed_all([data]) == b"LIST\r\n"


def test_subnegotiation_is_removed_including_escaped_iac_inside():
    data = b"PI" + bytes([IAC, SB, 24, 0, IAC, IAC, 1, IAC, SE]) + b"NG\n"
    assert feed_all([data]) == b"PING\n"


def test_iac_iac_is_a_literal_ff_byte():
    assert feed_all([b"a" + bytes([IAC, IAC]) + b"b"]) == b"a\xffb"


@pytest.mark.parametrize("cut", range(1, 12))
def test_sequences_split_across_packets(cut):
    data = bytes([IAC, DONT, 5]) + b"PI" + bytes([IAC, SB, 1, 2, IAC, SE]) + b"NG\n"
    assert feed_all([data[:cut], data[cut:]]) == b"PING\n"


def test_ctrl_c_from_telnet_produces_no_request_bytes():
    assert feed_all([bytes([IAC, IP, IAC, 253, 6])]) == b""


def test_a_line_feed_is_never_swallowed_by_a_telnet_sequence():
    for junk in (b"\xff", b"\xff\xfb", b"\xff\xfa\x18junk"):
        assert feed_all([b"EXIT " + junk + b"\nPING\n"]).split(b"\n")[1:] == [b"PING", b""]


def test_a_stray_iac_before_an_ordinary_byte_drops_only_the_iac():
    assert feed_all([b"PI\xffNG\n"]) == b"PING\n"


def test_a_subnegotiation_is_removed_whole_and_a_stray_se_is_dropped():
    assert TelnetFilter().feed(b"\xff\xfa\x18\x01xterm\xff\xf0PING\n") == b"PING\n"
    assert TelnetFilter().feed(b"A\xff\xf0B\n") == b"AB\n"
