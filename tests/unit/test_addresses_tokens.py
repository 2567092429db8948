"""Addresses as clients write them, what counts as this machine, and reading token files."""

import os

import pytest

from rpm.addresses import Address, is_loopback, parse_address
from rpm.tokens import TokenError, default_token, read_token

TOKEN = "x" * 43


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("10.0.0.1", False),
        ("192.0.2.7", False),
        ("::ffff:192.0.2.7", False),
        ("web1.example", False),
        ("", False),
    ],
)
def test_loopback_is_all_of_127_slash_8_and_1(host, local):
    assert is_loopback(host) is local


def test_addresses_parse_and_print_back():
    for text in ("127.0.0.1:5002", "tls://web1.example:5003", "[::1]:7000", "unix:/run/r.sock"):
        assert str(parse_address(text)) == text
    assert parse_address("127.0.0.2").is_local and not parse_address("web1:1").is_local


def test_a_token_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    assert read_token(str(path)) == TOKEN
    path.chmod(0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        read_token(str(path))


def test_the_default_token_is_rpm_token_then_the_local_servers_file(tmp_path):
    state = tmp_path / "rpm"
    state.mkdir()
    (state / "token").write_text(TOKEN)
    os.chmod(state / "token", 0o600)
    environ = {"XDG_STATE_HOME": str(tmp_path)}
    assert default_token(Address(), environ) == TOKEN
    assert default_token(Address(), {**environ, "RPM_TOKEN": "from-env"}) == "from-env"
    assert default_token(Address("web1.example"), environ) is None
    assert default_token(Address(), {"XDG_STATE_HOME": str(tmp_path / "none")}) is None
