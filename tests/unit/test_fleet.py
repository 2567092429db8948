"""The fleet file: hosts by name, each with its own address, token and CA."""

from __future__ import annotations

import pytest

from rpm.addresses import Address
from rpm.fleet import FleetError, FleetHost, read_fleet

TOKEN = "a-token-long-enough-to-be-taken-seriously"


def write(tmp_path, text: str) -> str:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return str(path)


def test_each_host_has_its_own_address_token_and_ca(tmp_path):
    (tmp_path / "web1.token").write_text(TOKEN + "\n")
    (tmp_path / "web1.token").chmod(0o600)
    (tmp_path / "ca.pem").write_text("not checked here")
    path = write(
        tmp_path,
        f"""
[hosts.web1]
address = "tls://web1.example:5003"
token_file = "{tmp_path}/web1.token"
ca = "{tmp_path}/ca.pem"

[hosts.db]
address = "unix:/run/rpm.sock"
token_env = "DB_TOKEN"

[hosts.local]
address = "127.0.0.1"
""",
    )
    assert read_fleet(path, {"DB_TOKEN": "db-secret"}) == [
        FleetHost("web1", Address("web1.example", 5003, tls=True), TOKEN, f"{tmp_path}/ca.pem"),
        FleetHost("db", Address(unix="/run/rpm.sock"), "db-secret"),
        FleetHost("local", Address("127.0.0.1", 5002)),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[hosts.a]\naddres = "h"\n', "host 'a': unknown key 'addres' (did you mean 'address'?)"),
        ("[hosts.a]\n", "host 'a': address must be given"),
        ('[hosts.a]\naddress = "h:99999"\n', "host 'a': port 99999 is out of range"),
        (
            '[hosts.a]\naddress = "h"\ntoken_env = "NOPE"\n',
            "token_env NOPE: that variable is not set",
        ),
        (
            '[hosts.a]\naddress = "h"\ntoken_env = "X"\ntoken_file = "f"\n',
            "give token_file or token_env, not both",
        ),
        ('[hosts.a]\naddress = "h"\nca = "/no/such/ca.pem"\n', "ca /no/such/ca.pem: no such file"),
        ('[hosts.a]\naddress = "h"\ntoken_file = "/no/such/token"\n', "host 'a': "),
        ("[servers.a]\n", "it must hold [hosts.NAME] tables"),
        ("hosts = 1\n", "it must hold [hosts.NAME] tables"),
        ('[hosts.a\naddress = "h"\n', "not valid TOML"),
    ],
)
def test_every_mistake_says_where_and_what(tmp_path, text, message):
    with pytest.raises(FleetError) as caught:
        read_fleet(write(tmp_path, text), {})
    assert message in str(caught.value)
