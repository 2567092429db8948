"""The fleet file (`rpm-tui --hosts FILE`, `rpmctl --hosts FILE`): the machines to watch,
each by the name shown for it, with its own address, token and CA (TOML).

    [hosts.web1]
    address = "tls://web1.example:5003"     # the forms -H takes
    token_file = "~/.config/rpm/web1.token"  # or token_env = "WEB1_TOKEN"
    ca = "~/.config/rpm/ca.pem"
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass

from rpm.addresses import Address, parse_address
from rpm.tokens import TokenError, read_token

KEYS = ("address", "token_file", "token_env", "ca")


class FleetError(Exception):
    """The fleet file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class FleetHost:
    name: str
    address: Address
    token: str | None = None
    ca: str | None = None


def read_fleet(path: str, environ: dict | None = None) -> list[FleetHost]:
    """The file's hosts in order, or FleetError saying what is wrong."""
    try:
        with open(os.path.expanduser(path), "rb") as handle:
            document = tomllib.load(handle)
    except OSError as err:
        raise FleetError(f"cannot read {path}: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise FleetError(f"{path}: not valid TOML: {err}") from err
    hosts = document.get("hosts")
    if set(document) - {"hosts"} or not isinstance(hosts, dict) or not hosts:
        raise FleetError(f"{path}: it must hold [hosts.NAME] tables, and nothing else")
    environ = os.environ if environ is None else environ
    return [_host(name, table, path, environ) for name, table in hosts.items()]


def _host(name: str, table, path: str, environ) -> FleetHost:
    def fail(message: str) -> FleetError:
        return FleetError(f"{path}: host {name!r}: {message}")

    if not isinstance(table, dict):
        raise fail("must be a table with an address")
    for key in table:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(f"unknown key {key!r}{hint}; keys: {', '.join(KEYS)}")
    if not isinstance(table.get("address"), str):
        raise fail("address must be given, as HOST[:PORT], tls://HOST:PORT or unix:/PATH")
    try:
        address = parse_address(table["address"])
    except ValueError as err:
        raise fail(str(err)) from err
    if "token_file" in table and "token_env" in table:
        raise fail("give token_file or token_env, not both")
    try:
        token = _token(table, environ)
    except TokenError as err:
        raise fail(str(err)) from err
    ca = os.path.expanduser(table["ca"]) if "ca" in table else None
    if ca is not None and not os.path.isfile(ca):
        raise fail(f"ca {ca}: no such file")
    return FleetHost(name, address, token, ca)


def _token(table: dict, environ) -> str | None:
    if "token_file" in table:
        return read_token(os.path.expanduser(str(table["token_file"])))
    if "token_env" in table:
        value = environ.get(str(table["token_env"]))
        if not value:
            raise TokenError(f"token_env {table['token_env']}: that variable is not set")
        return value
    return None
