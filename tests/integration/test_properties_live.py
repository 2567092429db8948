"""Hostile input against a live server (a real twistd process).

The server runs with --signal-scope managed and a PATH holding only `recorder`, a script
that writes down the argv it was given: whatever the fuzzer sends can neither signal the
machine's processes nor start a real program.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpm.commands import ALIASES
from rpm.server.telnet import TelnetFilter
from tests.hostile import VERB_WORDS, request_bytes, words
from tests.servers import ServerRunner
from tests.support import wait_until

ERROR_CODES = {
    "unknown-command",
    "bad-argument",
    "no-such-process",
    "protected",
    "not-permitted",
    "not-found",
    "spawn-failed",
    "not-managed",
    "auth-required",
    "auth-failed",
    "line-too-long",
    "bad-encoding",
    "limit",
}
NOT_START = [word for word in VERB_WORDS if ALIASES.get(word.upper(), word.upper()) != "START"]
LIVE = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PONG = {"ok": True, "message": "pong"}
RECORDER = """#!/bin/sh
for arg in "$@"; do printf '%s\\0' "$arg"; done > "$RPM_RECORDS/$$.tmp"
/bin/mv "$RPM_RECORDS/$$.tmp" "$RPM_RECORDS/$$"
"""


@pytest.fixture(scope="module")
def confined(tmp_path_factory):
    """A server that can only run `recorder` and only signal what it started."""
    root = tmp_path_factory.mktemp("confined")
    (root / "bin").mkdir()
    (root / "records").mkdir()
    recorder = root / "bin/recorder"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    environment = {**os.environ, "PATH": str(root / "bin"), "RPM_RECORDS": str(root / "records")}
    runner = ServerRunner(root)
    server = runner.run("--signal-scope", "managed", env=environment)
    yield server, root / "records"
    runner.stop_all()


class Session:
    """A blocking JSON-mode client that reconnects after the server closes on it."""

    def __init__(self, server):
        self.server = server
        self.sock = None

    def open(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"OK rpm ")
        self.sock.sendall(f"MODE json\nAUTH {self.server.token}\n".encode())
        assert json.loads(self.file.readline()) == {"ok": True, "mode": "json"}
        assert json.loads(self.file.readline())["ok"] is True

    def exchange(self, raw: bytes, expected: int) -> list[dict] | None:
        """Send raw then PING; return the `expected` replies raw got (None: closed on us).
        A second PING must be answered next, so an extra reply cannot go unnoticed."""
        if self.sock is None:
            self.open()
        try:
            self.sock.sendall(raw + b"\nPING\n")
            replies = self._replies(expected + 1)
            if replies is None:
                return None
            assert replies[-1] == PONG, f"{len(replies) - 1} replies were expected: {replies}"
            self.sock.sendall(b"PING\n")
            assert self._replies(1) == [PONG], "a request got more than one reply"
            return replies[:-1]
        except BaseException:
            self.sock.close()  # leave no half-read conversation to the next example
            self.sock = None
            raise

    def _replies(self, count: int) -> list[dict] | None:
        replies = []
        while len(replies) < count:
            line = self.file.readline()
            if not line:
                self.sock.close()
                self.sock = None
                return None
            message = json.loads(line)
            if "event" not in message:
                replies.append(message)
        return replies


@pytest.fixture(scope="module")
def session(confined):
    return Session(confined[0])


def expected_replies(raw: bytes) -> int:
    """A request line gets one reply unless it is blank once telnet sequences are removed."""
    text = TelnetFilter().feed(raw).removesuffix(b"\r")
    return 0 if not text.strip(b" \t") else 1


@LIVE
@given(request_bytes(NOT_START).map(lambda raw: raw.replace(b"\n", b" ")))
def test_every_request_gets_one_reply_or_a_clean_close(confined, session, raw):
    records = confined[1]
    before = set(os.listdir(records))
    replies = session.exchange(raw, expected_replies(raw))
    if replies is None:
        return  # EXIT, or the third wrong AUTH: a clean close is an answer too
    for reply in replies:
        assert reply["ok"] is True or reply["error"] in ERROR_CODES, reply
    assert set(os.listdir(records)) == before, "nothing but START may start anything"


def recorded(records: Path, pid: int) -> list[str]:
    def the_recorder_ran() -> bool:
        return (records / str(pid)).exists()

    wait_until(the_recorder_ran, timeout=10, interval=0.02)
    data = (records / str(pid)).read_bytes()
    return [part.decode("utf-8", "surrogateescape") for part in data.split(b"\0")[:-1]]


@LIVE
@given(st.lists(words(), max_size=6).map(" ".join))
def test_start_runs_exactly_the_argv_it_parsed(confined, session, arguments):
    records = confined[1]
    line = f"START recorder {arguments}".encode("utf-8", "surrogatepass").replace(b"\n", b" ")
    replies = session.exchange(line, 1)
    assert replies is not None
    reply = replies[0]
    try:
        expected = shlex.split(line.decode("utf-8").removesuffix("\r"))[2:]  # CR before LF goes
    except (ValueError, UnicodeDecodeError):
        assert reply["error"] in ("bad-argument", "bad-encoding"), reply
        return
    if any("\0" in argument for argument in expected):
        assert reply["error"] == "bad-argument"
        return
    assert reply["ok"] is True, reply
    assert recorded(records, reply["pid"]) == expected
